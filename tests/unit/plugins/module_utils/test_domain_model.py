from __future__ import annotations

import os

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import DomainXMLError, parse_domain_xml

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


@pytest.fixture
def numa_live():
    return parse_domain_xml(fixture('numa-live.xml'))


def test_vcpus(numa_live):
    assert numa_live.vcpu_max == 8
    assert numa_live.vcpu_current == 3
    assert numa_live.domain_type == 'qemu' and numa_live.is_tcg
    assert numa_live.enabled_vcpu_ids == (0, 1, 4)
    vcpu0, vcpu1, vcpu2 = numa_live.vcpus[:3]
    assert (vcpu0.enabled, vcpu0.hotpluggable, vcpu0.order) == (True, False, 1)
    assert (vcpu1.enabled, vcpu1.hotpluggable, vcpu1.order) == (True, True, 2)
    assert (vcpu2.enabled, vcpu2.hotpluggable, vcpu2.order) == (False, True, None)


def test_topology_and_cells(numa_live):
    assert (numa_live.topology.sockets, numa_live.topology.cores, numa_live.topology.threads) == (2, 4, 1)
    assert [(c.id, c.cpus, c.memory_kib) for c in numa_live.numa_cells] == [
        (0, (0, 1, 2, 3), 262144), (1, (4, 5, 6, 7), 262144)]
    assert numa_live.cell_of_vcpu(5) == 1
    assert numa_live.cell_of_vcpu(9) is None


def test_pinning(numa_live):
    pinning = numa_live.pinning
    assert pinning.vcpupin == {0: (0,), 1: (0, 1)}
    assert pinning.emulatorpin == (0, 1)
    assert pinning.iothreadpin == {1: (1,)}
    assert pinning.numa_memory_mode == 'strict'
    assert pinning.numa_memory_nodeset == (0,)
    assert pinning.numa_memnodes == {1: (0,)}


def test_memory(numa_live):
    assert numa_live.memory_kib == 655360
    assert numa_live.max_memory_kib == 4 * 1024 * 1024
    assert numa_live.max_memory_slots == 8
    dimm, vmem = numa_live.memory_devices
    assert (dimm.model, dimm.alias, dimm.size_kib, dimm.node, dimm.slot, dimm.base) == (
        'dimm', 'dimm0', 131072, 0, 0, '0x100000000')
    assert (vmem.model, vmem.requested_kib, vmem.current_kib, vmem.block_kib, vmem.slot) == (
        'virtio-mem', 262144, 131072, 2048, None)
    # a DIMM gives its whole size; virtio-mem gives what the guest has plugged so far
    assert numa_live.hotplugged_memory_kib == 131072 + 131072
    assert numa_live.slots_used == 1
    assert numa_live.balloon_model == 'virtio'


def test_guest_agent_channel(numa_live):
    assert numa_live.has_guest_agent_channel is True
    assert numa_live.guest_agent_connected is True


def test_to_dict_is_json_friendly(numa_live):
    import json
    data = numa_live.to_dict()
    json.dumps(data)
    assert data['vcpus']['enabled'] == [0, 1, 4]
    assert data['memory']['total_mib'] == 640
    assert data['memory']['slots'] == dict(total=8, used=1, free=7)
    assert data['numa_cells'][1]['vcpus_enabled'] == [4]
    assert data['pinning']['vcpupin'][1] == dict(vcpu=1, cpus=[0, 1], cpuset='0-1')
    assert data['memory']['devices'][1]['requested_mib'] == 256


def test_minimal_inactive_defaults():
    model = parse_domain_xml(fixture('minimal-inactive.xml'))
    assert model.memory_kib == 1024 * 1024
    assert model.current_memory_kib == model.memory_kib
    assert model.enabled_vcpu_ids == (0, 1)
    assert all(v.hotpluggable is None for v in model.vcpus)
    assert model.numa_cells == ()
    assert model.max_memory_kib is None and model.max_memory_slots is None
    assert model.topology is None
    assert model.has_guest_agent_channel is True
    assert model.guest_agent_connected is None  # inactive XML has no channel state
    assert model.to_dict()['memory']['slots']['free'] is None


@pytest.mark.parametrize('text, message', [
    ('<domain', 'cannot be parsed'),
    ('<network><name>x</name></network>', 'expected a <domain>'),
])
def test_bad_xml(text, message):
    with pytest.raises(DomainXMLError, match=message):
        parse_domain_xml(text)
