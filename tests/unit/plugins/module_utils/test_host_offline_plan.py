from __future__ import annotations

import errno
import time

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._host import plan as hp
from ansible_collections.kvm.hotplug.plugins.module_utils._host import apply as ha
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import SysfsTree, read_host
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.tests.unit.plugins.sysfs_trees import (
    Block, Cpu, Kernel, build_tree, two_node_host,
)


@pytest.fixture
def host_root(simsysfs):
    return two_node_host(simsysfs)


@pytest.fixture
def host(host_root):
    return read_host(SysfsTree(host_root))


@pytest.mark.parametrize('value, ids', [
    ('2-5,8', (2, 3, 4, 5, 8)),
    (['1', '3'], (1, 3)),
    ([1, 3, 3], (1, 3)),
    (' 2 ', (2,)),
    (['2-3', '8'], (2, 3, 8)),
    ([], ()),
    (None, ()),
])
def test_parse_ids(value, ids):
    assert hp.parse_ids(value, 'CPU', 100) == (ids, '')


@pytest.mark.parametrize('value', ['../cpu1', 'cpu1', '-1', '1.5', '3 4', '0x2', '1;2', '²', '\u0663', [True], [1.0], [{}],
                                   ['1', '/sys/devices'], '5-2'])
def test_parse_ids_refuses_anything_but_plain_numbers(value):
    with pytest.raises(HotplugError) as exc:
        hp.parse_ids(value, 'CPU', 100)
    assert 'nothing was changed' in exc.value.msg


def test_huge_ranges_are_not_expanded():
    started = time.monotonic()
    ids, unknown = hp.parse_ids('2-999999999999', 'memory block', 4)
    assert ids == (2, 3) and unknown == '4-999999999999'
    assert time.monotonic() - started < 0.5


def test_unknown_ids_are_refused(host):
    with pytest.raises(HotplugError) as exc:
        hp.resolve_request(host, ['3', '9'], ['34', '40-41'], None)
    assert 'unknown CPU 9' in exc.value.msg and 'unknown memory block 40-41' in exc.value.msg
    with pytest.raises(HotplugError, match='unknown memory block 6'):  # a gap between existing ids
        hp.resolve_request(host, None, ['6'], None)


def test_numa_node_expands_to_all_its_cpus_and_blocks(simsysfs):
    root = build_tree(simsysfs, [Cpu(0, hotpluggable=False), Cpu(1, node=1, online=False), Cpu(2, node=1)],
                      [Block(0, 0), Block(1, 1, zones='Movable'), Block(2, 1, zones='Movable')])
    host = read_host(SysfsTree(root))
    cpus, blocks, node = hp.resolve_request(host, None, None, 1)
    assert (cpus, blocks, node) == ((1, 2), (1, 2), 1)  # the offline CPU 1 belongs to the node too
    with pytest.raises(HotplugError, match='unknown NUMA node 5'):
        hp.resolve_request(host, None, None, 5)
    with pytest.raises(HotplugError, match='not a number'):
        hp.resolve_request(host, None, None, '../node1')


def test_plan_offline_sorts_blocks_highest_first_and_splits_already(host_root, host):
    plan = hp.plan_host_change(host, 'offline', (2, 3), (1, 32, 33), bound_nodes={})
    assert plan.blocks_change == (33, 32, 1)
    assert plan.cpus_change == (2, 3) and plan.online_cpus_after == (0, 1)
    assert plan.nodes_losing_cpus == (1,) and plan.nodes_losing_memory == ()
    assert plan.block_zone_before == {1: 'DMA32', 32: 'Movable', 33: 'Movable'}


def test_refusals_are_all_listed_before_any_change(simsysfs):
    root = build_tree(simsysfs, [Cpu(0, hotpluggable=False), Cpu(1)],
                      [Block(0, zones='none'), Block(1, zones='Normal', removable=0), Block(2, zones='Movable')])
    host = read_host(SysfsTree(root))
    with pytest.raises(HotplugError) as exc:
        hp.plan_host_change(host, 'offline', (0, 1), (0, 1, 2))
    refusals = exc.value.details['refusals']
    assert any('CPU 0 not hotpluggable' in r for r in refusals)
    assert any('memory block 1 not removable' in r for r in refusals)
    assert any('memory block 0 spans several zones' in r for r in refusals)
    assert exc.value.msg.endswith('nothing was changed')


def test_last_online_cpu_of_the_host(simsysfs):
    root = build_tree(simsysfs, [Cpu(0, hotpluggable=True), Cpu(1, online=False)], [Block(0)])
    host = read_host(SysfsTree(root))
    with pytest.raises(HotplugError, match='without an online CPU'):
        hp.plan_host_change(host, 'offline', (0,), ())


@pytest.mark.parametrize('cpus, blocks, refused', [
    ((2, 3), (), 'last online CPU of NUMA node 1'),
    ((3,), (), None),                                      # CPU 2 stays online in node 1
    ((), (34, 35), None),                                  # blocks 4 and 5 stay online in node 1
    ((), (4, 5, 34, 35), 'last online memory block of NUMA node 1'),
    ((2, 3), (4, 5, 34, 35), 'last online CPU and memory block of NUMA node 1'),
])
def test_node_used_by_pinned_domains_keeps_a_cpu_and_memory(host, cpus, blocks, refused):
    bound = {1: ['db01', 'web02']}
    if refused:
        with pytest.raises(HotplugError) as exc:
            hp.plan_host_change(host, 'offline', cpus, blocks, bound_nodes=bound)
        assert refused in exc.value.msg and 'db01, web02' in exc.value.msg
    else:
        hp.plan_host_change(host, 'offline', cpus, blocks, bound_nodes=bound)
    # the same node without bound domains can go
    hp.plan_host_change(host, 'offline', cpus, blocks, bound_nodes={0: ['other']})


def test_plan_online_types(simsysfs):
    root = build_tree(simsysfs, [Cpu(0, hotpluggable=False), Cpu(1, online=False)],
                      [Block(0), Block(1, state='offline', zones='Normal Movable'),
                       Block(2, state='offline', zones='Normal')])
    host = read_host(SysfsTree(root))
    plan = hp.plan_host_change(host, 'online', (0, 1), (0, 1, 2), 'auto')
    assert plan.cpus_change == (1,) and plan.cpus_already == (0,)
    assert plan.blocks_change == (1, 2) and plan.blocks_already == (0,)
    # no record and the host onlines new memory "offline": the kernel's default zone
    assert plan.block_online_state == {1: 'online', 2: 'online'}
    # recorded zones win when the kernel still offers them; a zone it does not offer falls back
    plan = hp.plan_host_change(host, 'online', (), (1, 2), 'auto', recorded_zones={1: 'Movable', 2: 'Movable'})
    assert plan.block_online_state == {1: 'online_movable', 2: 'online'}
    with pytest.raises(HotplugError, match='memory block 2 cannot be onlined movable'):
        hp.plan_host_change(host, 'online', (), (1, 2), 'online_movable')
    assert hp.plan_host_change(host, 'online', (), (1, 2), 'online').block_online_state == {1: 'online', 2: 'online'}


def test_going_offline_block_is_refused(simsysfs):
    root = build_tree(simsysfs, [Cpu(0)], [Block(0, state='going-offline')])
    with pytest.raises(HotplugError, match='going offline right now'):
        hp.plan_host_change(read_host(SysfsTree(root)), 'offline', (), (0,))


# ---- carrying out

def _plan(host_root, blocks, state='offline'):
    host = read_host(SysfsTree(host_root))
    return SysfsTree(host_root), hp.plan_host_change(host, state, (), blocks)


def test_block_that_stays_busy_rolls_everything_back(host_root):
    kernel = Kernel(host_root, busy={3})
    tree, plan = _plan(host_root, (3, 32, 33))
    with pytest.raises(HotplugError) as exc:
        ha.offline_memory_blocks(tree, plan, timeout=0.3,
                                 offline_one=lambda t, b, timeout: ha.offline_one_block(t, b, timeout, interval=0.05))
    msg = exc.value.msg
    assert 'memory block 3 did not go offline within 0.3 s' in msg and 'EBUSY' in msg
    assert 'brought memory blocks 32, 33 back online' in msg and 'the host is as it was before' in msg
    assert exc.value.details['failed_block'] == 3
    assert [kernel.state(b) for b in (3, 32, 33)] == ['online'] * 3
    # they came back into the zone they were in
    assert kernel.zones(32) == 'Movable' and kernel.zones(33) == 'Movable'
    attempts = {a['block']: a['attempts'] for a in exc.value.details['attempts']}
    assert attempts[33] == 1 and attempts[3] > 2


def test_busy_then_free_block_goes_offline(host_root):
    kernel = Kernel(host_root, busy={32}, busy_times=2)
    tree, plan = _plan(host_root, (32,))
    sleeps = []
    attempt = ha.offline_one_block(tree, 32, 10, interval=0.5, sleep=sleeps.append)
    assert attempt.attempts == 3 and kernel.state(32) == 'offline' and sleeps == [0.5, 0.5]


def test_final_error_is_not_retried(host_root):
    kernel = Kernel(host_root, final={5: errno.EINVAL})
    tree, plan = _plan(host_root, (5, 35))
    with pytest.raises(HotplugError) as exc:
        ha.offline_memory_blocks(tree, plan, timeout=30)
    assert 'memory block 5 cannot go offline: EINVAL' in exc.value.msg
    assert 'brought memory block 35 back online' in exc.value.msg
    assert kernel.busy_count == {} and kernel.state(35) == 'online'
    writes = [w for w in kernel.writes if w[0].endswith('memory5/state')]
    assert writes == [('devices/system/memory/memory5/state', 'offline')]


def test_rollback_that_fails_says_so(host_root):
    kernel = Kernel(host_root, busy={3}, online_errors={33: errno.ENOMEM})
    tree, plan = _plan(host_root, (3, 33))
    with pytest.raises(HotplugError) as exc:
        ha.offline_memory_blocks(tree, plan, timeout=0)
    assert 'ROLLBACK INCOMPLETE: memory block 33 stayed offline' in exc.value.msg
    assert exc.value.details['rollback_failed'] == {33: 'ENOMEM (Cannot allocate memory)'}
    assert kernel.state(33) == 'offline'


def test_a_write_the_kernel_keeps_blocking_is_interrupted_at_the_deadline(host_root):
    kernel = Kernel(host_root, hang={33: 5})
    tree, plan = _plan(host_root, (33,))
    started = time.monotonic()
    with pytest.raises(HotplugError) as exc:
        ha.offline_one_block(tree, 33, 0.3)
    assert time.monotonic() - started < 2
    assert 'did not go offline within 0.3 s' in exc.value.msg and 'still migrating' in exc.value.msg
    assert kernel.state(33) == 'online'


def test_cpu_failure_undoes_the_cpus_done(host_root):
    kernel = Kernel(host_root, cpu_errors={3: errno.EBUSY})
    with pytest.raises(HotplugError) as exc:
        ha.set_cpus(SysfsTree(host_root), (1, 2, 3), online=False)
    assert 'CPU 3 cannot go offline: EBUSY' in exc.value.msg and 'set CPU 1-2 online again' in exc.value.msg
    assert all(kernel.cpu_online(c) for c in (1, 2, 3))


def test_cpu_online_failure_keeps_what_came_online(simsysfs):
    root = build_tree(simsysfs, [Cpu(0, hotpluggable=False), Cpu(1, online=False), Cpu(2, online=False)],
                      [Block(0)])
    kernel = Kernel(root, cpu_errors={2: errno.EIO})
    with pytest.raises(HotplugError) as exc:
        ha.set_cpus(SysfsTree(root), (1, 2), online=True, rollback=False)
    assert 'CPU 2 cannot go online' in exc.value.msg and exc.value.details['changed_cpus'] == [1]
    assert kernel.cpu_online(1) and not kernel.cpu_online(2)
