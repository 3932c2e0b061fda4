"""The simulated host sysfs (tests/lab/fleet/simsysfs.py) answers as the kernel does; the host tests rely on it."""
from __future__ import annotations

import errno
import os
import signal
import time

import pytest

from ansible_collections.kvm.hotplug.tests.unit.plugins.sysfs_trees import (
    Kernel, add_edac_controller, control, sim_state, two_node_host,
)


def read(root, rel):
    with open(os.path.join(root, rel)) as handle:
        return handle.read()


def write(root, rel, text):
    """One write(2) without O_TRUNC, as the modules write (and as `echo` would after its truncate)."""
    fd = os.open(os.path.join(root, rel), os.O_WRONLY)
    try:
        os.write(fd, text.encode('ascii'))
    finally:
        os.close(fd)


@pytest.fixture
def root(simsysfs):
    return two_node_host(simsysfs)


def test_a_write_replaces_the_value_no_trailing_bytes(root):
    state = 'devices/system/memory/memory32/state'
    write(root, state, 'offline')
    write(root, state, 'online')         # shorter than "offline": a plain file would read "onlinee"
    assert read(root, state) == 'online\n'


def test_online_movable_reads_back_online_in_the_movable_zone(root):
    write(root, 'devices/system/memory/memory33/state', 'offline')
    assert read(root, 'devices/system/memory/memory33/valid_zones') == 'Movable Normal\n'
    write(root, 'devices/system/memory/memory33/state', 'online_movable\n')
    assert read(root, 'devices/system/memory/memory33/state') == 'online\n'
    assert read(root, 'devices/system/memory/memory33/valid_zones') == 'Movable\n'
    assert read(root, 'devices/system/memory/memory33/online') == '1\n'


@pytest.mark.parametrize('rel, text, code', [
    ('devices/system/memory/memory32/state', 'bogus', errno.EINVAL),
    ('devices/system/memory/memory32/state', 'online', errno.EINVAL),      # already online: device_online() says 1
    ('devices/system/memory/memory0/state', 'offline', errno.EINVAL),      # valid_zones "none"
    ('devices/system/cpu/cpu1/online', '2', errno.EINVAL),
    ('devices/system/memory/block_size_bytes', '0', errno.EACCES),
])
def test_invalid_writes_answer_as_the_kernel(root, rel, text, code):
    with pytest.raises(OSError) as exc:
        write(root, rel, text)
    assert exc.value.errno == code


def test_cpu0_has_no_online_file_and_the_lists_follow_a_cpu(root):
    assert not os.path.exists(os.path.join(root, 'devices/system/cpu/cpu0/online'))
    write(root, 'devices/system/cpu/cpu2/online', '0')
    assert read(root, 'devices/system/cpu/online') == '0-1,3\n'
    assert read(root, 'devices/system/cpu/offline') == '2\n'
    assert read(root, 'devices/system/node/node1/cpulist') == '3\n'
    assert not os.path.exists(os.path.join(root, 'devices/system/cpu/cpu2/topology'))
    write(root, 'devices/system/cpu/cpu2/online', '1')
    assert read(root, 'devices/system/cpu/online') == '0-3\n' and read(root, 'devices/system/cpu/offline') == '\n'
    assert read(root, 'devices/system/cpu/cpu2/topology/physical_package_id') == '1\n'


def test_nothing_can_be_created_or_removed(root):
    with pytest.raises(OSError):
        open(os.path.join(root, 'devices/system/cpu/cpu0/online'), 'w').close()
    with pytest.raises(OSError):
        os.unlink(os.path.join(root, 'devices/system/cpu/cpu1/online'))


def test_busy_block_answers_ebusy_then_goes(root):
    kernel = Kernel(root, busy={32}, busy_times=2)
    for _attempt in range(2):
        with pytest.raises(OSError) as exc:
            write(root, 'devices/system/memory/memory32/state', 'offline')
        assert exc.value.errno == errno.EBUSY
    write(root, 'devices/system/memory/memory32/state', 'offline')
    assert kernel.state(32) == 'offline' and kernel.busy_count == {32: 2}


def _interrupted(_signum, _frame):
    # os.write retries on EINTR unless the signal handler raises (PEP 475): this one raises
    raise InterruptedError(errno.EINTR, 'interrupted')


def test_a_hanging_write_returns_eintr_on_a_signal_and_changes_nothing(root):
    Kernel(root, hang={33: 30})
    previous = signal.signal(signal.SIGALRM, _interrupted)
    fd = os.open(os.path.join(root, 'devices/system/memory/memory33/state'), os.O_WRONLY)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(InterruptedError):
            os.write(fd, b'offline')
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.close(fd)
    assert 0.25 < time.monotonic() - started < 5
    assert read(root, 'devices/system/memory/memory33/state') == 'online\n'
    assert sim_state(root)['writes'][-1] == ['devices/system/memory/memory33/state', 'offline', 'EINTR']


def test_edac_counters_are_raised_through_the_control_file_and_reset_by_the_kernel(root):
    mc = add_edac_controller(root, 0, 'Sim Socket#0', dimms=[dict(label='A1', location='channel 0 slot 0')], ce=1)
    control(root, 'edac mc0/dimm0/dimm_ce_count +5')
    control(root, 'edac mc0/ue_count 2')
    assert read(root, os.path.join(mc, 'dimm0', 'dimm_ce_count')) == '5\n'
    assert read(root, os.path.join(mc, 'ue_count')) == '2\n' and read(root, os.path.join(mc, 'ce_count')) == '1\n'
    with pytest.raises(OSError):
        write(root, os.path.join(mc, 'dimm0', 'dimm_ce_count'), '0')     # counters are read-only
    write(root, os.path.join(mc, 'reset_counters'), '1')
    assert read(root, os.path.join(mc, 'dimm0', 'dimm_ce_count')) == '0\n'
    with pytest.raises(OSError) as exc:
        control(root, 'edac mc0/dimm7/dimm_ce_count +1')
    assert exc.value.errno == errno.EINVAL
