# kvm.hotplug: the two commands a user needs are `make demo` and `make test`.
# Both install what they need (Debian packages, a Python venv) on a fresh Debian 12 machine as root.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-test.txt | md5sum | cut -c1-12)

.PHONY: help demo test sanity units gates integration molecule eda lab-up lab-down lab-status lab-qemu fleet-up fleet-down \
	fleet-status system-packages venv ee-context docs awx bench chaos clean

help:
	@echo "make demo         bring up the lab and the fleet lab; run playbooks/demo.yml, then every scenario across the fleet"
	@echo "make test         run every test: sanity, gates, units, integration, molecule and AWX jobs against the lab"
	@echo "make sanity | units | integration [TARGETS='a b']"
	@echo "make gates [GATES='ansible-lint ...']  ansible-lint, galaxy-importer, antsibull-docs, ansible-doc, changelog, EE"
	@echo "make molecule [TARGETS='rebalance']  the roles' molecule scenarios (extensions/molecule) on the fleet lab"
	@echo "make eda          the event source and rulebook under a real ansible-rulebook (own venv .tmp/eda-venv) on the fleet lab"
	@echo "make awx          run each playbook in playbooks/ as an AWX job template does (ansible-runner), on the lab"
	@echo "make chaos [CASES='bad_input sysfs_ebusy']  real faults on the lab, bounded; writes docs/reliability.md"
	@echo "make docs         the documentation site (antsibull-docs + Sphinx) in .tmp/docs/html"
	@echo "make ee-context   build the collection tarball and the execution environment's build context"
	@echo "make lab-up | lab-down | lab-status"
	@echo "make fleet-up | fleet-down | fleet-status   the fleet lab: hypervisors hv1..hv3 on this machine"
	@echo "make bench        by hand, never in make test: the benchmarks (lab parts under the lab lock), then"
	@echo "                  docs/performance.md and its plots from bench/results/*.json [BENCH_ARGS='--quick']"
	@echo "make lab-qemu     build Debian 12's QEMU 7.2 with the TCG vCPU-unplug fix the vCPU tests use (about 5 min)"

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

# Stock QEMU under TCG never finalizes an unplugged vCPU (tests/lab/qemu-tcg-fix/README.md); the vCPU
# hotplug tests run lab-vcpu on Debian 12's QEMU 7.2 with a fix, built once and kept.  On another QEMU
# nothing is built (tests/lab/lab_qemu.py decides, and says which QEMU the lab uses).
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

# The single-host demo (playbooks/demo.yml on the lab), then each scenario's playbook across the fleet lab, in check
# mode and for real, with the fleet's state before and after (tests/harness/fleet_demo.py).
demo: lab-up
	$(MAKE) fleet-up
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

gates: venv
	$(VPY) tests/harness/suite.py gates $(GATES)

docs: venv
	$(VPY) tests/harness/suite.py docs

ee-context: venv
	$(VPY) tests/harness/suite.py ee-context

integration: lab-qemu
	$(MAKE) lab-up
	$(MAKE) fleet-up
	$(VPY) tests/harness/suite.py integration $(TARGETS)

molecule: venv
	$(MAKE) fleet-up
	$(VPY) tests/harness/suite.py molecule $(TARGETS)

# ansible-rulebook lives in its own venv, .tmp/eda-venv (tests/harness/requirements-eda.txt), made by the harness.
eda: venv
	$(MAKE) fleet-up
	$(VPY) tests/harness/suite.py eda

awx: lab-qemu
	$(MAKE) lab-up
	$(MAKE) fleet-up
	$(VPY) tests/harness/suite.py awx $(PLAYBOOKS)

# By hand only (not part of make test): bench/run.py runs each lab part under the lab lock and writes
# bench/results/*.json, docs/performance.md and docs/images/perf-*.png.
bench: venv
	$(VPY) bench/run.py $(BENCH_ARGS)

# Real faults on the lab (tests/chaos/chaos.py), bounded by CHAOS_BUDGET seconds; not part of `make test`
# (docs/testing.md says why).  Writes docs/reliability.md and .tmp/chaos/results.json.
CHAOS_BUDGET ?= 900
chaos: lab-qemu
	$(MAKE) lab-up
	$(MAKE) fleet-up
	$(VPY) tests/chaos/chaos.py --budget $(CHAOS_BUDGET) $(CASES)

clean:
	rm -rf .tmp tests/output execution-environment/context execution-environment/context-collections
