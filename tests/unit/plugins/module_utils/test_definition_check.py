"""The persistent-definition check, on domain capabilities XML captured from the lab (libvirt 9.0, QEMU 7.2)."""
from __future__ import annotations

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_check import (
    definition_differences, definition_problems, parse_domain_capabilities,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_edit import (
    with_enabled_vcpus, with_memory_device, with_requested_size, with_vcpu_maximum, without_memory_device,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import NumaCell, Topology, parse_domain_xml
from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import domain_capabilities
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_utils.domain_xml import domain_xml

IOMMU_EIM = ("<iommu model='intel'><driver intremap='on' eim='on'/></iommu>")
DIMM = "<memory model='dimm'><target><size unit='KiB'>%d</size><node>%d</node></target></memory>"
VIRTIO_MEM = ("<memory model='virtio-mem'><target><size unit='KiB'>1048576</size><node>0</node>"
              "<block unit='KiB'>2048</block><requested unit='KiB'>%d</requested></target></memory>")


def caps(machine='q35', virt_type='qemu'):
    return parse_domain_capabilities(domain_capabilities(machine, virt_type))


def cells_for(maximum, split=4):
    return ((0, '0-%d' % (split - 1), 262144), (1, '%d-%d' % (split, maximum - 1), 262144))


@pytest.mark.parametrize('machine, virt_type, vcpu_max, machine_name', [
    ('pc', 'qemu', 255, 'pc-i440fx-7.2'),
    ('pc', 'kvm', 255, 'pc-i440fx-7.2'),
    ('q35', 'qemu', 288, 'pc-q35-7.2'),
    ('q35', 'kvm', 288, 'pc-q35-7.2'),
])
def test_domain_capabilities_from_the_lab(machine, virt_type, vcpu_max, machine_name):
    parsed = caps(machine, virt_type)
    assert parsed.vcpu_max == vcpu_max and parsed.machine == machine_name and parsed.arch == 'x86_64'
    assert parsed.virt_type == virt_type and parsed.memory_backing is True


def problems(maximum=8, machine='q35', virt_type='qemu', topology=None, cells=None, devices='', **xml):
    text = domain_xml(maximum=maximum, topology=topology, devices=devices,
                      cells=cells if cells is not None else cells_for(maximum), **xml)
    return definition_problems(text, caps(machine, virt_type))


def test_a_definition_within_every_limit_has_no_problems():
    assert problems(maximum=12, topology=(3, 1, 4, 1)) == []


def test_machine_type_vcpu_limit():
    found = problems(maximum=288 + 4, devices=IOMMU_EIM)
    assert found == ["292 vCPUs are above the limit of 288 vCPUs of machine type pc-q35-7.2, qemu virtualization, "
                     "emulator /opt/kvm-hotplug-lab/qemu/bin/qemu-system-x86_64 (the hypervisor's domain capabilities)"]


def test_machine_type_vcpu_limit_passes_at_the_limit():
    assert problems(maximum=288, devices=IOMMU_EIM) == []


def test_pc_limit_is_255():
    found = problems(maximum=256, machine='pc', devices=IOMMU_EIM)
    assert len(found) == 1 and 'above the limit of 255 vCPUs of machine type pc-i440fx-7.2' in found[0]


def test_more_than_255_vcpus_need_extended_interrupt_mode():
    found = problems(maximum=256)
    assert found == ["more than 255 vCPUs (256) on x86 need an <iommu model='intel'> with <driver intremap='on' "
                     "eim='on'/> (and <ioapic driver='qemu'/>)"]


def test_an_iommu_without_eim_is_not_enough():
    assert len(problems(maximum=256, devices="<iommu model='intel'><driver intremap='on'/></iommu>")) == 1


def test_255_vcpus_need_no_iommu():
    assert problems(maximum=255) == []


def test_topology_must_give_the_maximum():
    assert problems(maximum=12, topology=(2, 1, 4, 1)) == [
        'the CPU topology sockets=2 x dies=1 x cores=4 x threads=1 gives 8 vCPUs, not the maximum of 12']


def test_new_vcpus_in_no_numa_cell_are_refused_naming_the_cells():
    assert problems(maximum=12, cells=cells_for(8)) == ['vCPUs 8-11 are in no guest NUMA cell (cells: 0: 0-3, 1: 4-7)']


def test_numa_cells_beyond_the_maximum_and_twice():
    found = problems(maximum=6, cells=((0, '0-3', 262144), (1, '3-7', 262144)))
    assert 'guest NUMA cells place vCPUs 6-7 beyond the maximum of 6 (cells: 0: 0-3, 1: 3-7)' in found
    assert 'vCPUs 3 are in more than one guest NUMA cell (cells: 0: 0-3, 1: 3-7)' in found


def test_enabled_vcpus_must_match_current():
    text = domain_xml().replace("current='2'", "current='3'")
    assert definition_problems(text, caps()) == ['2 vCPUs are enabled but <vcpu current> says 3']


def test_dimm_on_a_cell_the_domain_lacks():
    assert problems(devices=DIMM % (131072, 2)) == [
        'a dimm memory device of 128 MiB is on guest NUMA cell 2, which the domain does not have (cells: 0, 1)']


def test_more_dimms_than_slots():
    assert problems(devices=DIMM % (131072, 0) * 3, slots=2) == ['3 DIMMs need more than the 2 memory slots of <maxMemory>']


def test_memory_above_max_memory():
    assert problems(devices=DIMM % (4194304, 0)) == [
        'the guest NUMA cells and memory devices add up to 4608 MiB, above <maxMemory> of 4 GiB']


def test_memory_devices_need_cells_and_max_memory():
    text = domain_xml(cells=(), devices=DIMM % (131072, 0)).replace("<maxMemory slots='8' unit='KiB'>4194304</maxMemory>", '')
    found = definition_problems(text, caps())
    assert 'memory devices need at least one guest NUMA cell' in found and 'memory devices need <maxMemory>' in found


@pytest.mark.parametrize('requested, problem', [
    (1048576, None),
    (2097152, 'a virtio-mem memory device of 1 GiB is asked to plug 2 GiB, more than its size'),
    (3072, 'a virtio-mem memory device of 1 GiB is asked to plug 3 MiB, not a multiple of its block size 2 MiB'),
])
def test_virtio_mem_requested_size(requested, problem):
    assert problems(devices=VIRTIO_MEM % requested) == ([problem] if problem else [])


def test_memory_models_the_hypervisor_does_not_offer():
    text = domain_capabilities('q35', 'qemu').replace(
        '<devices>', "<devices><memory supported='yes'><enum name='model'><value>dimm</value></enum></memory>")
    found = definition_problems(domain_xml(devices=VIRTIO_MEM % 0), parse_domain_capabilities(text))
    assert found == ['virtio-mem memory devices are not offered by machine type pc-q35-7.2, qemu virtualization, '
                     'emulator /opt/kvm-hotplug-lab/qemu/bin/qemu-system-x86_64 (it offers: dimm)']
    assert definition_problems(domain_xml(devices=DIMM % (131072, 0)), parse_domain_capabilities(text)) == []


def test_memory_backing_the_hypervisor_does_not_offer():
    text = domain_capabilities('q35', 'qemu').replace("<memoryBacking supported='yes'>",
                                                      "<memoryBacking supported='no'>")
    xml = domain_xml().replace('</vcpu>', '</vcpu><memoryBacking><hugepages/></memoryBacking>', 1)
    assert definition_problems(xml, parse_domain_capabilities(text)) == [
        '<memoryBacking> is not supported by machine type pc-q35-7.2, qemu virtualization, '
        'emulator /opt/kvm-hotplug-lab/qemu/bin/qemu-system-x86_64']


# --- the edits that predict the definition, and the comparison with what libvirt wrote ----------------

def test_a_new_maximum_adds_disabled_hotpluggable_vcpus_in_the_named_cell():
    cells = (NumaCell(0, (0, 1, 2, 3), 262144), NumaCell(1, tuple(range(4, 12)), 262144))
    text = with_vcpu_maximum(domain_xml(), 12, Topology(3, 1, 4, 1), cells)
    model = parse_domain_xml(text)
    assert model.vcpu_max == 12 and model.vcpu_current == 2 and model.enabled_vcpu_ids == (0, 1)
    assert [(v.id, v.enabled, v.hotpluggable) for v in model.vcpus[8:]] == [(i, False, True) for i in range(8, 12)]
    assert model.topology == Topology(3, 1, 4, 1)
    assert [c.cpus for c in model.numa_cells] == [(0, 1, 2, 3), tuple(range(4, 12))]
    assert definition_problems(text, caps()) == []


def test_a_lower_maximum_drops_the_vcpus_above_it():
    text = with_vcpu_maximum(domain_xml(cells=()), 4, Topology(1, 1, 4, 1))
    assert [v.id for v in parse_domain_xml(text).vcpus] == [0, 1, 2, 3]


def test_enabled_vcpus_without_a_vcpus_list():
    full = domain_xml(cells=())
    bare = full.replace(full[full.index('<vcpus>'):full.index('</vcpus>') + len('</vcpus>')], '')
    assert parse_domain_xml(with_enabled_vcpus(bare, (0, 1, 2))).enabled_vcpu_ids == (0, 1, 2)
    assert parse_domain_xml(with_enabled_vcpus(bare, (0, 5))).enabled_vcpu_ids == (0, 5)


def test_memory_edits():
    text = with_memory_device(domain_xml(devices=VIRTIO_MEM % 0), DIMM % (131072, 1))
    assert [d.model for d in parse_domain_xml(text).memory_devices] == ['virtio-mem', 'dimm']
    text = with_requested_size(text, 0, 262144)
    assert parse_domain_xml(text).memory_devices[0].requested_kib == 262144
    assert [d.model for d in parse_domain_xml(without_memory_device(text, 0)).memory_devices] == ['dimm']


def test_libvirt_rewriting_a_cell_is_a_difference():
    planned = with_vcpu_maximum(domain_xml(), 12, Topology(3, 1, 4, 1),
                                (NumaCell(0, (0, 1, 2, 3), 262144), NumaCell(1, tuple(range(4, 12)), 262144)))
    written = planned.replace('cpus="0-3"', 'cpus="0-3,8-11"').replace('cpus="4-11"', 'cpus="4-7"')
    assert definition_differences(planned, written) == [
        'numa cells: planned 0: 0-3, 1: 4-11, written 0: 0-3,8-11, 1: 4-7']
    assert definition_differences(planned, planned) == []
