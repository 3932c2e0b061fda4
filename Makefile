# kvm.hotplug: the two commands a user needs are `make demo` and `make test`.
# Both install what they need (Debian packages, a Python venv) on a fresh Debian 12 machine as root.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-test.txt | md5sum | cut -c1-12)

.PHONY: help demo test sanity units integration lab-up lab-down lab-status lab-qemu fleet-up fleet-down fleet-status \
	system-packages venv clean

help:
	@echo "make demo         bring up the local lab and run playbooks/demo.yml on it"
	@echo "make test         run every test: sanity, units, integration against the lab"
	@echo "make sanity | units | integration [TARGETS='a b']"
	@echo "make lab-up | lab-down | lab-status"
	@echo "make fleet-up | fleet-down | fleet-status   the fleet lab: hypervisors hv1..hv3 on this machine"
	@echo "make lab-qemu     build Debian's QEMU with the TCG vCPU-unplug fix the vCPU tests use (about 5 min)"

system-packages:
	tests/lab/install-packages

$(VENV_STAMP): requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	rm -f $(VENV)/.installed-*
	touch $@

venv: system-packages $(VENV_STAMP)

lab-up: venv
	$(VPY) tests/lab/labctl up

# Debian's QEMU under TCG never finalizes an unplugged vCPU (tests/lab/qemu-tcg-fix/README.md);
# the vCPU hotplug tests run lab-vcpu on Debian's QEMU with a fix, built once and kept.
lab-qemu: system-packages
	tests/lab/qemu-tcg-fix/build

lab-down: venv
	$(VPY) tests/lab/labctl down

lab-status: venv
	$(VPY) tests/lab/labctl status

# The fleet lab (tests/lab/README.md, "Fleet lab"): hv1..hv3, each its own libvirtd and sshd, on 127.0.1.N.
fleet-up: venv
	$(VPY) tests/lab/labctl fleet up

fleet-down: venv
	$(VPY) tests/lab/labctl fleet down

fleet-status: venv
	$(VPY) tests/lab/labctl fleet status

demo: lab-up
	$(VPY) tests/lab/labctl reset lab-numa
	$(VPY) tests/harness/suite.py demo

test: lab-qemu
	$(MAKE) lab-up
	$(MAKE) fleet-up
	$(VPY) tests/harness/suite.py all

sanity: venv
	$(VPY) tests/harness/suite.py sanity

units: venv
	$(VPY) tests/harness/suite.py units

integration: lab-qemu
	$(MAKE) lab-up
	$(MAKE) fleet-up
	$(VPY) tests/harness/suite.py integration $(TARGETS)

clean:
	rm -rf .tmp tests/output
