"""The lab's choice of QEMU (tests/lab/lab_qemu.py): what the build step does, which emulator the vCPU-unplug guests
get, and whether the targets that need a completed TCG vCPU unplug run or are skipped."""
from __future__ import annotations

import importlib.util
import os
import subprocess

import pytest

# suite.py copies the lab's lab_qemu.py into the test tree at the same place.
LAB_QEMU = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'lab',
                                         'lab_qemu.py'))

if not os.path.exists(LAB_QEMU):
    pytest.skip('tests/lab/lab_qemu.py is not in this tree', allow_module_level=True)

_spec = importlib.util.spec_from_file_location('lab_qemu', LAB_QEMU)
lab_qemu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lab_qemu)

DEBIAN_12 = '1:7.2+dfsg-7+deb12u18'
BACKPORTS = '1:10.0.2+ds-2+deb13u1~bpo12+1'
DEBIAN_13 = '1:10.0.2+ds-2+deb13u1'


@pytest.mark.parametrize('version, built, action, fix', [
    (DEBIAN_12, True, lab_qemu.BUILD, True),
    (DEBIAN_12, False, lab_qemu.BUILD, False),
    ('1:7.2+dfsg-7+deb12u6', False, lab_qemu.BUILD, False),     # an older bookworm point release
    (BACKPORTS, True, lab_qemu.USE_BUILT, True),
    (BACKPORTS, False, lab_qemu.NONE, False),
    (DEBIAN_13, True, lab_qemu.USE_BUILT, True),
    (DEBIAN_13, False, lab_qemu.NONE, False),
    ('1:7.20+dfsg-1', False, lab_qemu.NONE, False),             # not 7.2
    ('1:8.2.2+ds-0ubuntu1', True, lab_qemu.USE_BUILT, True),    # not Debian's 7.2 source
    (None, True, lab_qemu.USE_BUILT, True),                      # QEMU not installed: nothing to build for
    (None, False, lab_qemu.NONE, False),
])
def test_only_debian_12s_qemu_is_built_for_and_the_fix_is_there_when_built(version, built, action, fix):
    decision = lab_qemu.decide(version, built)
    assert decision.action == action
    assert decision.unplug_fix is fix
    assert decision.emulator == (lab_qemu.PATCHED_QEMU if fix else lab_qemu.STOCK_QEMU)


@pytest.mark.parametrize('version, built', [(DEBIAN_12, True), (DEBIAN_12, False), (BACKPORTS, True),
                                            (BACKPORTS, False)])
def test_the_reason_names_the_installed_qemu_and_the_emulator(version, built):
    reason = lab_qemu.decide(version, built).reason
    assert version in reason
    assert lab_qemu.PATCHED_QEMU in reason if built else lab_qemu.STOCK_QEMU in reason
    assert ('unavailable' in reason) is not built


def test_without_a_build_on_backports_the_reason_says_nothing_is_built():
    reason = lab_qemu.decide(BACKPORTS, False).reason
    assert "not Debian 12's 7.2" in reason and 'nothing is built' in reason
    assert 'make lab-qemu builds it' not in reason      # it would not: only Debian 12's 7.2 is built


def test_on_debian_12_without_a_build_the_reason_says_how_to_get_it():
    assert 'make lab-qemu builds it' in lab_qemu.decide(DEBIAN_12, False).reason


def fake_dpkg_query(monkeypatch, stdout=b'', error=None):
    def run(args, **_kwargs):
        assert args[:2] == ['dpkg-query', '-W'] and args[-1] == 'qemu-system-x86'
        if error:
            raise error
        return subprocess.CompletedProcess(args, 0 if stdout else 1, stdout=stdout)
    monkeypatch.setattr(lab_qemu.subprocess, 'run', run)


@pytest.mark.parametrize('stdout, version', [
    (b'installed 1:7.2+dfsg-7+deb12u18', DEBIAN_12),
    (('installed %s' % BACKPORTS).encode(), BACKPORTS),
    (b'config-files 1:7.2+dfsg-7+deb12u18', None),       # removed, its configuration kept
    (b'', None),                                           # never installed (dpkg-query exits 1)
])
def test_the_installed_version_is_that_of_an_installed_package_only(monkeypatch, stdout, version):
    fake_dpkg_query(monkeypatch, stdout)
    assert lab_qemu.installed_qemu_version() == version


def test_no_dpkg_means_no_installed_version(monkeypatch):
    fake_dpkg_query(monkeypatch, error=FileNotFoundError('dpkg-query'))
    assert lab_qemu.installed_qemu_version() is None


@pytest.mark.parametrize('mode, fix', [(0o755, True), (0o644, False), (None, False)])
def test_the_built_binary_counts_only_when_it_can_be_run(monkeypatch, tmp_path, mode, fix):
    binary = tmp_path / 'qemu-system-x86_64'
    if mode is not None:
        binary.write_text('#!/bin/sh\n')
        binary.chmod(mode)
    monkeypatch.setattr(lab_qemu, 'PATCHED_QEMU', str(binary))
    fake_dpkg_query(monkeypatch, ('installed %s' % BACKPORTS).encode())
    decision = lab_qemu.current()
    assert decision.unplug_fix is fix
    assert decision.action == (lab_qemu.USE_BUILT if fix else lab_qemu.NONE)


def test_the_build_step_reads_the_action_on_stdout_and_the_reason_on_stderr(monkeypatch, capsys):
    monkeypatch.setattr(lab_qemu, 'current', lambda: lab_qemu.decide(BACKPORTS, False))
    lab_qemu.main(['lab_qemu.py', 'action'])
    out, err = capsys.readouterr()
    assert out == 'none\n'
    assert err.startswith('[lab-qemu] installed QEMU is %s' % BACKPORTS)
