from __future__ import annotations

import errno
import os

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._host import run as _host_resource_task
from ansible_collections.kvm.hotplug.plugins.module_utils._host import zone_record as _memory_zone_record
from ansible_collections.kvm.hotplug.plugins.modules import host_resource_offline
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_runner import run_main
from ansible_collections.kvm.hotplug.tests.unit.plugins.fake_hypervisor import CONFIG, LIVE, PinnableDomain
from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import FakeConnection
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_utils.domain_xml import pinned_xml
from ansible_collections.kvm.hotplug.tests.unit.plugins.sysfs_trees import Kernel, two_node_host


@pytest.fixture(autouse=True)
def zone_record_dir(tmp_path, mocker):
    mocker.patch.object(_memory_zone_record, 'RECORD_DIRS', (str(tmp_path / 'run'),))


@pytest.fixture
def host(simsysfs):
    root = two_node_host(simsysfs)
    return root, Kernel(root)


@pytest.fixture
def libvirt_conn(hypervisor):
    conn = FakeConnection([
        PinnableDomain('pinned', pinned_xml('pinned', vcpus=2, vcpupin={0: '0', 1: '3'}, emulatorpin='2-3')),
        PinnableDomain('free', pinned_xml('free')),
    ], host_cpus=4)
    return hypervisor.add_host(conn)


def tree_snapshot(root):
    snap = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name)) as handle:
                snap[os.path.join(dirpath, name)] = handle.read()
    return snap


def run(capsys, root, check=False, diff=False, **args):
    args = dict(args, sysfs_root=root)
    if check:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    return run_main(host_resource_offline.main, args, capsys)


def test_memory_blocks_offline_check_mode_real_run_and_idempotence(host, capsys):
    root, kernel = host
    before = tree_snapshot(root)
    result, failed = run(capsys, root, check=True, diff=True, memory_blocks=['32-33', '34'], evacuate=False)
    assert not failed and result['changed'] and result['memory_blocks_changed'] == [34, 33, 32]
    assert result['diff']['after']['memory_blocks'] == {'32': 'offline', '33': 'offline', '34': 'offline'}
    assert 'check mode' in result['note']
    assert tree_snapshot(root) == before and kernel.writes == []

    result, failed = run(capsys, root, memory_blocks=['32-33', '34'], evacuate=False)
    assert not failed and result['changed'] and result['after']['memory_blocks'] == {
        '32': 'offline', '33': 'offline', '34': 'offline'}
    assert [kernel.state(b) for b in (32, 33, 34)] == ['offline'] * 3
    assert [a['block'] for a in result['memory_attempts']] == [34, 33, 32]

    result, failed = run(capsys, root, memory_blocks=['32-34'], evacuate=False)
    assert not failed and not result['changed'] and result['memory_blocks_already'] == [32, 33, 34]
    result, failed = run(capsys, root, check=True, memory_blocks=['32-34'], evacuate=False)
    assert not failed and not result['changed']

    result, failed = run(capsys, root, memory_blocks=['32-34'], state='online')
    assert not failed and result['changed'] and result['memory_online_state'] == {
        '32': 'online_movable', '33': 'online_movable', '34': 'online_movable'}
    assert kernel.zones(32) == 'Movable' and result['domains_checked'] is False


def test_block_that_stays_busy_fails_and_rolls_back(simsysfs, capsys):
    root = two_node_host(simsysfs)
    kernel = Kernel(root, busy={3})
    result, failed = run(capsys, root, memory_blocks=['3', '32', '33'], timeout=1, evacuate=False)
    assert failed and result['changed'] is False
    assert result['msg'].startswith('memory block 3 did not go offline within 1 s')
    assert 'brought memory blocks 32, 33 back online' in result['msg']
    assert result['failed_block'] == 3 and result['rolled_back_memory_blocks'] == [32, 33]
    assert all(kernel.state(b) == 'online' for b in (3, 32, 33))


def test_cpu0_without_online_file_and_bad_ids_are_refused_before_any_write(host, capsys):
    root, kernel = host
    result, failed = run(capsys, root, cpus=['0-1'], evacuate=False)
    assert failed and 'the kernel marks CPU 0 not hotpluggable' in result['msg']
    result, failed = run(capsys, root, cpus=['1', '../../memory/memory3'], evacuate=False)
    assert failed and 'is not a number' in result['msg']
    result, failed = run(capsys, root, memory_blocks=['0'], evacuate=False)
    assert failed and 'spans several zones' in result['msg']
    result, failed = run(capsys, root, memory_blocks=['77'], cpus=['9'], evacuate=False)
    assert failed and 'unknown CPU 9' in result['msg'] and 'unknown memory block 77' in result['msg']
    assert kernel.writes == []


def test_numa_node_as_one_unit_without_libvirt(host, capsys):
    root, kernel = host
    result, failed = run(capsys, root, numa_node=1, evacuate=False, timeout=0)
    # blocks 35, 34 go, then block 5 (DMA32 boot memory in this fake kernel) goes too: all offline
    assert not failed and result['cpus_changed'] == [2, 3] and result['memory_blocks_changed'] == [35, 34, 5, 4]
    assert not kernel.cpu_online(2) and not kernel.cpu_online(3)
    result, failed = run(capsys, root, numa_node=1, state='online')
    assert not failed and result['cpus_changed'] == [2, 3] and kernel.cpu_online(3)
    # each block back into the zone it came from (DMA32 through online_kernel), not all into Movable
    assert result['memory_online_state'] == {'4': 'online_kernel', '5': 'online_kernel', '34': 'online_movable',
                                             '35': 'online_movable'}
    assert [kernel.zones(b) for b in (4, 5, 34, 35)] == ['DMA32', 'DMA32', 'Movable', 'Movable']


def test_numa_node_with_an_unmovable_block_rolls_back(simsysfs, capsys):
    root = two_node_host(simsysfs)
    kernel = Kernel(root, final={5: errno.EINVAL})
    result, failed = run(capsys, root, numa_node=1, evacuate=False)
    assert failed and 'memory block 5 cannot go offline: EINVAL' in result['msg']
    assert all(kernel.state(b) == 'online' for b in (4, 5, 34, 35))
    assert kernel.cpu_online(2) and kernel.cpu_online(3)  # CPUs come after memory: never touched
    assert not any('cpu' in w[0] for w in kernel.writes)


def test_evacuation_then_repin(host, capsys, libvirt_conn):
    root, kernel = host
    dom = libvirt_conn.domains['pinned']
    result, failed = run(capsys, root, check=True, cpus=['2-3'])
    assert not failed and result['changed'] and result['domains_repinned'][0]['name'] == 'pinned'
    assert dom.pin_calls == [] and kernel.writes == [] and dom.meta == {}

    result, failed = run(capsys, root, diff=True, cpus=['2-3'])
    assert not failed and result['changed'], result
    assert result['cpus_changed'] == [2, 3] and result['domains_unpinned'] == ['free']
    assert dom.pins(LIVE) == dom.pins(CONFIG) == {'vcpu 0': '0', 'vcpu 1': '0-1', 'emulator': '0-1'}
    assert result['after']['domains']['pinned']['live'] == {'vcpu 0': '0', 'vcpu 1': '0-1', 'emulator': '0-1'}
    assert result['diff']['before']['domains']['pinned']['config']['vcpu 1'] == '3'
    assert not kernel.cpu_online(2) and not kernel.cpu_online(3)

    result, failed = run(capsys, root, cpus=['2-3'])
    assert not failed and not result['changed']

    result, failed = run(capsys, root, cpus=['2-3'], state='online')     # no repin unless asked
    assert not failed and result['changed'] and result['domains_repinned'] == [] and dom.pins(LIVE)['vcpu 1'] == '0-1'
    result, failed = run(capsys, root, cpus=['2-3'], state='online', repin_on_online=True)
    assert not failed and result['changed'] and result['cpus_changed'] == []
    assert dom.pins(LIVE) == dom.pins(CONFIG) == {'vcpu 0': '0', 'vcpu 1': '3', 'emulator': '2-3'}
    result, failed = run(capsys, root, cpus=['2-3'], state='online', repin_on_online=True)
    assert not failed and not result['changed']


def test_cpu_offline_failure_puts_pins_back(simsysfs, capsys, libvirt_conn):
    root = two_node_host(simsysfs)
    kernel = Kernel(root, cpu_errors={3: errno.EBUSY})
    dom = libvirt_conn.domains['pinned']
    result, failed = run(capsys, root, cpus=['2-3'], memory_blocks=['34'])
    assert failed and 'CPU 3 cannot go offline: EBUSY' in result['msg']
    assert 'put 4 domain pin(s) back' in result['msg'] and 'brought memory block 34 back online' in result['msg']
    assert dom.pins(LIVE) == dom.pins(CONFIG) == {'vcpu 0': '0', 'vcpu 1': '3', 'emulator': '2-3'}
    assert kernel.cpu_online(2) and kernel.cpu_online(3) and kernel.state(34) == 'online'
    assert dom.meta == {}


def test_domain_with_no_cpu_left_is_refused(host, capsys, libvirt_conn):
    root, kernel = host
    libvirt_conn.domains['boxed'] = PinnableDomain('boxed', pinned_xml('boxed', cpuset='2-3'))
    result, failed = run(capsys, root, cpus=['2-3'])
    assert failed and "domain boxed (live): its <vcpu cpuset> 2-3 has no CPU left" in result['msg']
    assert kernel.writes == [] and libvirt_conn.domains['pinned'].pin_calls == []


def test_node_bound_by_a_domain_keeps_its_last_cpu(host, capsys, libvirt_conn):
    root, kernel = host
    libvirt_conn.domains['db'] = PinnableDomain('db', pinned_xml('db', numatune=('strict', '1')))
    result, failed = run(capsys, root, cpus=['2-3'])
    assert failed and 'last online CPU of NUMA node 1' in result['msg'] and 'db' in result['msg']
    assert kernel.writes == []
    result, failed = run(capsys, root, cpus=['3'])
    assert not failed and result['changed']


def test_missing_libvirt_is_reported_when_needed(host, capsys, mocker):
    root, kernel = host
    mocker.patch.object(_host_resource_task, 'libvirt', None)
    result, failed = run(capsys, root, cpus=['3'])
    assert failed and 'libvirt-python is needed' in result['msg'] and kernel.writes == []
    result, failed = run(capsys, root, memory_blocks=['35'])   # memory only: no domain needed
    assert not failed and result['changed']


def test_options_validation(host, capsys):
    root, _kernel = host
    result, failed = run(capsys, root)
    assert failed and 'one of the following is required' in result['msg']
    result, failed = run(capsys, root, cpus=['1'], timeout=-1)
    assert failed and 'timeout' in result['msg']


def test_online_without_a_record_follows_the_host_policy(simsysfs, capsys):
    from ansible_collections.kvm.hotplug.tests.unit.plugins.sysfs_trees import Block, Cpu, build_tree
    for policy, expected in (('online_movable', 'online_movable'), ('offline', 'online'),
                             ('online_kernel', 'online_kernel')):
        root = build_tree(simsysfs, [Cpu(0, hotpluggable=False)],
                          [Block(0), Block(1, state='offline', zones='Normal Movable')], auto_online=policy)
        Kernel(root)
        result, failed = run(capsys, root, memory_blocks=['1'], state='online')
        assert not failed and result['memory_online_state'] == {'1': expected}, policy


def test_zone_record_is_per_boot(tmp_path, capsys, mocker, host):
    root, kernel = host
    run(capsys, root, memory_blocks=['34'], evacuate=False)
    assert _memory_zone_record.recorded_zones(root) == {34: 'Movable'}
    mocker.patch.object(_memory_zone_record, '_boot_id', return_value='another-boot')
    assert _memory_zone_record.recorded_zones(root) == {}


def test_unwritable_sysfs_is_refused_before_any_change(host, capsys, mocker):
    root, kernel = host
    real_access = os.access
    mocker.patch.object(_host_resource_task.os, 'access',
                        side_effect=lambda p, m: False if p.endswith('memory35/state') else real_access(p, m))
    result, failed = run(capsys, root, memory_blocks=['34-35'], evacuate=False)
    assert failed and 'memory35/state' in result['msg'] and 'become: true' in result['msg']
    assert kernel.writes == []
