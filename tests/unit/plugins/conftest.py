"""Fixtures every unit test of the collection shares: the domain lock, libvirt.open and the clock."""
from __future__ import annotations

import functools

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._common import lock, waiting
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt import connection
from ansible_collections.kvm.hotplug.plugins.module_utils._memory import apply as memory_apply
from ansible_collections.kvm.hotplug.plugins.module_utils._memory import run as memory_run
from ansible_collections.kvm.hotplug.tests.unit.plugins.fake_clock import FakeClock
from ansible_collections.kvm.hotplug.tests.unit.plugins.fake_hypervisor import FakeHypervisor


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
