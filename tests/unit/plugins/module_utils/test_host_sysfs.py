from __future__ import annotations

import os

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import (
    SysfsTree, cpu_summary, memory_summary, read_host,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.tests.unit.plugins.sysfs_trees import (
    BLOCK_SIZE, Block, Cpu, build_tree, two_node_host,
)


def test_cpu0_without_online_file_is_online_and_not_hotpluggable(simsysfs):
    host = read_host(SysfsTree(two_node_host(simsysfs)))
    cpu0 = host.cpus[0]
    assert cpu0.online and not cpu0.hotpluggable
    assert host.cpus[1].hotpluggable
    assert host.online_cpus == (0, 1, 2, 3)


def test_offline_cpu_keeps_its_node_link_but_loses_topology(simsysfs):
    root = build_tree(simsysfs, [Cpu(0, hotpluggable=False), Cpu(1), Cpu(2, node=1, online=False)],
                      [Block(0, 0), Block(1, 1)])
    host = read_host(SysfsTree(root))
    cpu2 = host.cpus[2]
    assert not cpu2.online and cpu2.node == 1
    assert cpu2.core_id is None and cpu2.package_id is None and cpu2.thread_siblings is None
    # the kernel drops an offline CPU from nodeN/cpulist; the node still owns it through the cpu's link
    assert host.nodes[1].cpus == (2,) and host.nodes[1].online_cpus == ()
    summary = cpu_summary(host)
    assert summary['online'] == '0-1' and summary['offline'] == '2'


def test_memory_blocks(simsysfs):
    host = read_host(SysfsTree(two_node_host(simsysfs)))
    memory = host.memory
    assert memory.block_size == BLOCK_SIZE
    block = memory.blocks[34]
    assert block.online and block.node == 1 and block.valid_zones == ('Movable',) and block.removable is True
    assert block.start == 34 * BLOCK_SIZE and block.end == 35 * BLOCK_SIZE - 1
    assert not memory.blocks[0].offlinable_zone and memory.blocks[1].offlinable_zone
    assert memory.block_of_address(34 * BLOCK_SIZE + 4096) == 34
    assert memory.block_of_address(100 * BLOCK_SIZE) is None
    assert host.nodes[1].memory_blocks == (4, 5, 34, 35)
    assert host.nodes[0].mem_total_kib == 6 * BLOCK_SIZE // 1024
    summary = memory_summary(memory)
    assert summary['movable'] == [32, 33, 34, 35] and summary['offline'] == [] and summary['block_size_mib'] == 128


def test_phys_index_need_not_equal_the_block_id(simsysfs):
    root = build_tree(simsysfs, [Cpu(0)], [Block(7, 0, phys_index=0x20)])
    memory = read_host(SysfsTree(root)).memory
    assert memory.blocks[7].start == 0x20 * BLOCK_SIZE
    assert memory.block_of_address(0x20 * BLOCK_SIZE + 1) == 7


def test_not_a_sysfs_tree(tmp_path):
    with pytest.raises(HotplugError, match='is not a sysfs tree'):
        read_host(SysfsTree(str(tmp_path)))


@pytest.mark.parametrize('bad', ['1; rm -rf /', '../cpu0', 'cpu1', None])
def test_paths_are_built_from_integers_only(tmp_path, bad):
    tree = SysfsTree(str(tmp_path))
    with pytest.raises((TypeError, ValueError)):
        tree.cpu_path(bad, 'online')
    with pytest.raises((TypeError, ValueError)):
        tree.memory_path(bad, 'state')


def test_paths(tmp_path):
    tree = SysfsTree(str(tmp_path))
    assert tree.cpu_path(3, 'online') == os.path.join(str(tmp_path), 'devices/system/cpu/cpu3/online')
    assert tree.memory_path(12, 'state') == os.path.join(str(tmp_path), 'devices/system/memory/memory12/state')


def test_invalid_memory_state_word(tmp_path):
    with pytest.raises(ValueError):
        SysfsTree(str(tmp_path)).set_memory_state(1, 'offline; echo')


def test_no_memory_hotplug_support(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, 'devices', 'system', 'cpu', 'cpu0'))
    host = read_host(SysfsTree(root))
    assert host.memory.available is False and host.memory.blocks == {}
    assert memory_summary(host.memory) == dict(available=False)
    assert host.cpus[0].online  # no online list and no online file: the kernel shows it, so it runs
