"""serviceability_plan's reading of the part (_placement/isolation_run.py) on simulated host trees (simsysfs)."""
from __future__ import annotations

import time

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._host.edac import analyze, read_edac, read_edac_cpus
from ansible_collections.kvm.hotplug.plugins.module_utils._host.edac_rate import components_from_edac, plan_detection
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import SysfsTree, read_host
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.isolation_run import (
    named_part, read_state, shrink_changes, with_siblings, write_state,
)
from ansible_collections.kvm.hotplug.tests.unit.plugins.sysfs_trees import (
    Block, Cpu, add_edac_controller, add_edac_cpus, build_tree, control, two_node_host,
)


@pytest.fixture
def failing_host(simsysfs):
    """two_node_host (node 1: CPUs 2-3, blocks 4-5 and 34-35) with a DIMM on node 1 and the cpu EDAC device."""
    root = two_node_host(simsysfs)
    add_edac_controller(root, 1, 'Socket#1 IMC', node=1, dimms=[dict(label='CPU1_DIMM_A1', location='channel 0 slot 0')])
    add_edac_cpus(root, [dict(id=c, ce=0, ue=0) for c in range(4)])
    return root


def components(root, now=None):
    tree = SysfsTree(root)
    host = read_host(tree)
    edac = read_edac(tree)
    analyze(host, edac, dict(available=False))
    return host, components_from_edac(edac, read_edac_cpus(tree), now=now)


def test_a_part_named_by_dimm_label_or_edac_key_covers_the_dimms_node(failing_host):
    host, found = components(failing_host)
    by_label, notes = named_part(host, dict(dimm='CPU1_DIMM_A1'), found)
    by_key, _notes = named_part(host, dict(edac='mc1/dimm0'), found)
    assert by_label == by_key == dict(cpus=[], memory_blocks=[4, 5, 34, 35])
    assert 'node-level' in notes[0]


def test_a_part_named_by_ids_and_node(failing_host):
    host, found = components(failing_host)
    part, _notes = named_part(host, dict(cpus='1', numa_nodes='1', memory_blocks=[32]), found)
    assert part == dict(cpus=[1, 2, 3], memory_blocks=[4, 5, 32, 34, 35])


@pytest.mark.parametrize('named, words', [
    (dict(dimm='NO_SUCH_DIMM'), "no EDAC component has the label 'NO_SUCH_DIMM'"),
    (dict(cpus='9'), 'unknown CPU 9'),
    (dict(numa_nodes='5'), 'unknown NUMA node 5'),
    (dict(cpu='1'), 'unknown component key cpu'),
    (dict(cpus='../cpu0'), 'CPU'),
])
def test_a_bad_part_is_refused(failing_host, named, words):
    host, found = components(failing_host)
    with pytest.raises(HotplugError, match=words):
        named_part(host, named, found)


def test_an_unknown_dimm_label_lists_only_the_labels_there(failing_host):
    """The cpu EDAC device's components have no label: the refusal lists the DIMMs' labels, never None."""
    host, found = components(failing_host)
    with pytest.raises(HotplugError) as refused:
        named_part(host, dict(dimm='NO_SUCH_DIMM'), found)
    assert 'None' not in refused.value.msg and 'CPU1_DIMM_A1' in refused.value.msg


def test_cpu_siblings_are_the_cores_threads(simsysfs):
    root = build_tree(simsysfs, [Cpu(0, hotpluggable=False, core=0), Cpu(1, core=1), Cpu(2, core=0), Cpu(3, core=1)],
                      [Block(0)])
    host = read_host(SysfsTree(root))
    assert with_siblings(host, [1]) == [1, 3]
    assert with_siblings(host, [2]) == [0, 2]


def test_a_cpu_crosses_after_a_first_reading_and_a_dimm_at_once(failing_host, tmp_path):
    state_file = str(tmp_path / 'state.json')
    now = time.time()
    _host, found = components(failing_host, now)
    first = plan_detection(found, read_state(state_file), now, 50, 24)
    write_state(state_file, first['state'])
    control(failing_host, 'edac cpu3/ce_count +60')
    control(failing_host, 'edac mc1/dimm0/dimm_ce_count +60')
    _host, found = components(failing_host, now + 60)
    second = plan_detection(found, read_state(state_file), now + 60, 50, 24)
    assert [f['key'] for f in second['findings']] == ['cpu3', 'mc1/dimm0']
    assert second['findings'][0]['covers']['cpus'] == [3]


def test_shrink_changes_are_one_per_resource():
    changes = shrink_changes([dict(name='a', vcpus=1, memory_mib=512, before=dict(vcpus=2, memory_mib=768))])
    assert [(c['name'], c['change']['kind'], c['change']['delta']) for c in changes] == [
        ('a', 'vcpu', -1), ('a', 'memory', -256)]
    assert all(c['change']['action'] == 'unplug' for c in changes)


def test_an_unreadable_state_starts_afresh(tmp_path):
    bad = tmp_path / 'state.json'
    bad.write_text('{not json')
    assert read_state(str(bad)) == [] and read_state(str(tmp_path / 'absent.json')) == []
