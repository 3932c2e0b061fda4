# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Can the domain boot with this persistent definition?  Checks against the hypervisor's own limits.

libvirt accepts persistent changes that the domain cannot start with: a vCPU
maximum above the machine type's limit, or above 255 on x86 without an IOMMU
in extended interrupt mode, is refused only at the next start.  A module that
reported success would leave a VM that does not boot after its next shutdown.
So every new persistent definition is checked here against the domain
capabilities of its emulator, arch, machine and virt type before it is
written, and the definition libvirt kept is compared with the one planned.

Pure: no libvirt calls.  Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import etree, parse_domain_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import format_kib

X86_ARCHES = ('x86_64', 'i686')
# x86 APIC ids above 254 need x2APIC, which QEMU offers only with interrupt remapping in extended mode.
X86_VCPUS_WITHOUT_EIM = 255


@dataclass(frozen=True)
class DomainCapabilities:
    """What virConnectGetDomainCapabilities says about one emulator, arch, machine and virt type."""
    emulator: str | None
    arch: str | None
    machine: str | None
    virt_type: str | None
    vcpu_max: int | None
    memory_backing: bool | None         # None: the hypervisor does not say
    memory_models: tuple | None         # memory device models offered, None: not listed

    def describe(self):
        known = (('machine type %s', self.machine), ('%s virtualization', self.virt_type), ('emulator %s', self.emulator))
        parts = [text % value for text, value in known if value is not None]
        return ', '.join(parts) or 'the hypervisor'


def _root(xml_text):
    return etree.fromstring(xml_text.encode('utf-8') if isinstance(xml_text, str) else xml_text)


def parse_domain_capabilities(xml_text):
    root = _root(xml_text)
    vcpu = root.find('vcpu')
    backing = root.find('memoryBacking')
    memory = root.find('devices/memory')
    models = None
    if memory is not None:
        models = tuple(v.text for v in memory.findall("enum[@name='model']/value")) if memory.get(
            'supported') == 'yes' else ()
    return DomainCapabilities(
        emulator=root.findtext('path'),
        arch=root.findtext('arch'),
        machine=root.findtext('machine'),
        virt_type=root.findtext('domain'),
        vcpu_max=int(vcpu.get('max')) if vcpu is not None and vcpu.get('max') else None,
        memory_backing=None if backing is None else backing.get('supported') == 'yes',
        memory_models=models,
    )


def capabilities_query(xml_text):
    """(emulator, arch, machine, virt type) of a domain XML: the arguments of getDomainCapabilities."""
    root = _root(xml_text)
    os_type = root.find('os/type')
    return (root.findtext('devices/emulator'), os_type.get('arch') if os_type is not None else None,
            os_type.get('machine') if os_type is not None else None, root.get('type'))


def _has_extended_interrupts(root):
    for iommu in root.findall('devices/iommu'):
        driver = iommu.find('driver')
        if iommu.get('model') == 'intel' and driver is not None and driver.get('eim') == 'on' \
                and driver.get('intremap') == 'on':
            return True
    return False


def _cells_text(cells):
    return ', '.join('%d: %s' % (c.id, format_cpulist(c.cpus) or 'none') for c in cells) or 'none'


def vcpu_max_problem(maximum, caps):
    """The reason a domain with `maximum` vCPUs cannot start under caps' vCPU limit, or None (also _placement)."""
    if caps.vcpu_max is not None and maximum > caps.vcpu_max:
        return ('%d vCPUs are above the limit of %d vCPUs of %s (the hypervisor\'s domain capabilities)'
                % (maximum, caps.vcpu_max, caps.describe()))
    return None


def definition_problems(xml_text, caps):
    """Every reason the domain could not start with this definition, each one line naming the limit."""
    root = _root(xml_text)
    model = parse_domain_xml(xml_text)
    problems = []
    maximum = model.vcpu_max
    too_many = vcpu_max_problem(maximum, caps)
    if too_many:
        problems.append(too_many)
    arch = caps.arch or capabilities_query(xml_text)[1]
    if arch in X86_ARCHES and maximum > X86_VCPUS_WITHOUT_EIM and not _has_extended_interrupts(root):
        problems.append("more than %d vCPUs (%d) on x86 need an <iommu model='intel'> with <driver intremap='on' "
                        "eim='on'/> (and <ioapic driver='qemu'/>)" % (X86_VCPUS_WITHOUT_EIM, maximum))
    problems.extend(_vcpu_problems(model))
    problems.extend(_memory_problems(model, caps))
    if root.find('memoryBacking') is not None and caps.memory_backing is False:
        problems.append('<memoryBacking> is not supported by %s' % caps.describe())
    return problems


def _vcpu_problems(model):
    problems = []
    maximum = model.vcpu_max
    topology = model.topology
    if topology is not None:
        slots = topology.sockets * topology.dies * topology.cores * topology.threads
        if slots != maximum:
            problems.append('the CPU topology sockets=%d x dies=%d x cores=%d x threads=%d gives %d vCPUs, not the '
                            'maximum of %d' % (topology.sockets, topology.dies, topology.cores, topology.threads,
                                               slots, maximum))
    if model.numa_cells:
        placed = [cpu for cell in model.numa_cells for cpu in cell.cpus]
        beyond = sorted(set(c for c in placed if c >= maximum))
        twice = sorted(set(c for c in placed if placed.count(c) > 1))
        homeless = sorted(set(range(maximum)) - set(placed))
        cells = _cells_text(model.numa_cells)
        if beyond:
            problems.append('guest NUMA cells place vCPUs %s beyond the maximum of %d (cells: %s)'
                            % (format_cpulist(beyond), maximum, cells))
        if twice:
            problems.append('vCPUs %s are in more than one guest NUMA cell (cells: %s)' % (format_cpulist(twice), cells))
        if homeless:
            problems.append('vCPUs %s are in no guest NUMA cell (cells: %s)' % (format_cpulist(homeless), cells))
    enabled = model.enabled_vcpu_ids
    if len(enabled) != model.vcpu_current:
        problems.append('%d vCPUs are enabled but <vcpu current> says %d' % (len(enabled), model.vcpu_current))
    if 0 not in enabled:
        problems.append('vCPU 0 is not enabled')
    return problems


def _memory_problems(model, caps):
    problems = []
    devices = model.memory_devices
    if not devices:
        return problems
    cell_ids = [c.id for c in model.numa_cells]
    if not cell_ids:
        problems.append('memory devices need at least one guest NUMA cell')
    if model.max_memory_kib is None:
        problems.append('memory devices need <maxMemory>')
    for device in devices:
        label = '%s memory device of %s' % (device.model, format_kib(device.size_kib))
        if cell_ids and device.node not in cell_ids:
            problems.append('a %s is on guest NUMA cell %s, which the domain does not have (cells: %s)'
                            % (label, device.node, ', '.join(str(c) for c in cell_ids)))
        if caps.memory_models is not None and device.model not in caps.memory_models:
            problems.append('%s memory devices are not offered by %s (it offers: %s)'
                            % (device.model, caps.describe(), ', '.join(caps.memory_models) or 'none'))
        if device.model == 'virtio-mem' and device.requested_kib is not None:
            if device.requested_kib > device.size_kib:
                problems.append('a %s is asked to plug %s, more than its size'
                                % (label, format_kib(device.requested_kib)))
            if device.block_kib and device.requested_kib % device.block_kib:
                problems.append('a %s is asked to plug %s, not a multiple of its block size %s'
                                % (label, format_kib(device.requested_kib), format_kib(device.block_kib)))
    if model.max_memory_slots is not None and model.slots_used > model.max_memory_slots:
        problems.append('%d DIMMs need more than the %d memory slots of <maxMemory>'
                        % (model.slots_used, model.max_memory_slots))
    total = model.numa_memory_kib + sum(d.size_kib for d in devices)
    if model.max_memory_kib is not None and total > model.max_memory_kib:
        problems.append('the guest NUMA cells and memory devices add up to %s, above <maxMemory> of %s'
                        % (format_kib(total), format_kib(model.max_memory_kib)))
    return problems


def definition_facts(xml_text):
    """The parts of a definition a hotplug change plans, to compare what was planned with what libvirt kept."""
    model = parse_domain_xml(xml_text)
    topology = model.topology
    return dict(
        vcpu_maximum=model.vcpu_max,
        vcpu_current=model.vcpu_current,
        vcpus_enabled=format_cpulist(model.enabled_vcpu_ids),
        topology=None if topology is None else '%d/%d/%d/%d' % (
            topology.sockets, topology.dies, topology.cores, topology.threads),
        numa_cells=_cells_text(model.numa_cells),
        numa_cell_memory=', '.join('%d: %s' % (c.id, format_kib(c.memory_kib)) for c in model.numa_cells) or 'none',
        max_memory='%s, %s slots' % (format_kib(model.max_memory_kib) if model.max_memory_kib else 'none',
                                     model.max_memory_slots),
        memory_devices='; '.join(_device_text(d) for d in model.memory_devices) or 'none',
    )


def _device_text(device):
    requested = '' if device.requested_kib is None else ' requested %s' % format_kib(device.requested_kib)
    return '%s %s on %s%s' % (device.model, format_kib(device.size_kib), device.node, requested)


def definition_differences(planned_xml, written_xml):
    """One 'what: planned X, written Y' line for every planned part that libvirt wrote differently."""
    planned = definition_facts(planned_xml)
    written = definition_facts(written_xml)
    return ['%s: planned %s, written %s' % (key.replace('_', ' '), planned[key], written[key])
            for key in planned if planned[key] != written[key]]
