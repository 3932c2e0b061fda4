"""Fixtures every unit test of the collection shares: the domain lock, libvirt.open, the clock and the simulated host sysfs."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._common import lock, waiting
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt import connection
from ansible_collections.kvm.hotplug.plugins.module_utils._memory import apply as memory_apply
from ansible_collections.kvm.hotplug.plugins.module_utils._memory import run as memory_run
from ansible_collections.kvm.hotplug.tests.unit.plugins.fake_clock import FakeClock
from ansible_collections.kvm.hotplug.tests.unit.plugins.fake_hypervisor import FakeHypervisor

# The lab's simulated host sysfs (a FUSE filesystem with the kernel's write semantics).  suite.py copies it
# into the test tree at the same place.
SIMSYSFS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'lab', 'fleet',
                                         'simsysfs.py'))


class SimsysfsMounts(object):
    """Mounts simsysfs servers under a test's tmp_path and ends them after the test."""

    def __init__(self, base):
        self.base = str(base)
        self.mounted = []       # (mountpoint, process)

    def mount(self, layout, name=None):
        mnt = os.path.join(self.base, name or 'sys%d' % len(self.mounted))
        os.makedirs(mnt)
        layout_path = mnt + '.layout.json'
        with open(layout_path, 'w') as handle:
            json.dump(layout, handle)
        log = open(mnt + '.log', 'wb')
        proc = subprocess.Popen([sys.executable, SIMSYSFS, 'serve', mnt, layout_path], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, FUSE_LIBRARY_NAME='fuse3'))
        log.close()
        self.mounted.append((mnt, proc))
        deadline = time.monotonic() + 20
        while not os.path.ismount(mnt):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(mnt + '.log') as handle:
                    pytest.fail('simsysfs did not mount %s: %s' % (mnt, handle.read()[-2000:]))
            time.sleep(0.01)
        return SimHost(mnt)

    def unmount_all(self):
        for mnt, proc in reversed(self.mounted):
            # lazy: a write a test left hanging must not keep the mount busy
            subprocess.run(['umount', '-l', mnt] if os.geteuid() == 0 else ['fusermount3', '-u', '-z', mnt],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class SimHost(object):
    def __init__(self, root):
        self.root = root


def _simsysfs_unavailable():
    if not os.path.exists('/dev/fuse'):
        return '/dev/fuse is absent: the simulated host sysfs (tests/lab/fleet/simsysfs.py) is a FUSE filesystem'
    if not os.path.exists(SIMSYSFS):
        return 'tests/lab/fleet/simsysfs.py is not in this tree'
    try:
        import mfusepy  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    except (ImportError, OSError) as exc:
        return 'mfusepy (requirements-test.txt) with libfuse3 is needed for the simulated host sysfs: %s' % exc
    return None


@pytest.fixture
def simsysfs(tmp_path):
    """Factory: simsysfs.mount(layout) mounts a simulated host sysfs (see sysfs_trees.py) and returns it."""
    reason = _simsysfs_unavailable()
    if reason:
        pytest.skip(reason)
    mounts = SimsysfsMounts(tmp_path / 'simsysfs')
    os.makedirs(mounts.base)
    yield mounts
    mounts.unmount_all()


@pytest.fixture(autouse=True)
def lock_dirs(tmp_path, mocker):
    """Domain and host locks in the test's own directory, never in /run/lock."""
    directory = tmp_path / 'locks'
    mocker.patch.object(lock, 'LOCK_DIRS', (str(directory),))
    return directory


@pytest.fixture
def hypervisor(mocker):
    """libvirt.open reaches a FakeHypervisor (add hosts with hypervisor.add_host(FakeConnection(...)));
    QEMU monitor and guest agent commands go to the domain's qmp() and agent()."""
    fake = FakeHypervisor()
    mocker.patch.object(connection.libvirt, 'open', side_effect=fake.open)
    mocker.patch.object(connection.libvirt, 'openReadOnly', side_effect=fake.open)
    mocker.patch.object(connection.libvirt_qemu, 'qemuMonitorCommand', side_effect=lambda dom, cmd, flags: dom.qmp(cmd))
    mocker.patch.object(connection.libvirt_qemu, 'qemuAgentCommand',
                        side_effect=lambda dom, cmd, timeout, flags: dom.agent(cmd))
    return fake


@pytest.fixture
def fake_clock(mocker):
    """The memory waits run on a FakeClock: sleeping advances it at once."""
    clock = FakeClock()
    fake_wait = functools.partial(waiting.wait_for, sleep=clock.sleep, clock=clock)
    mocker.patch.object(memory_apply, 'wait_for', fake_wait)
    mocker.patch.object(memory_run, 'wait_for', fake_wait)
    return clock
