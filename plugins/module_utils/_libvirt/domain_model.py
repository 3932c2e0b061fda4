# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small typed model of the hotplug-relevant parts of a libvirt domain XML.

Parsed with lxml.  Covers vCPUs (maximum, current, each vCPU's enabled,
hotpluggable and order), topology, pinning (cputune and numatune), guest NUMA
cells, memory (total, balloon target, maxMemory and its slots), memory devices
and the balloon.  Sizes are KiB, as libvirt reports them.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import kib_to_mib, xml_size_kib

try:
    from lxml import etree
except ImportError:
    etree = None

GUEST_AGENT_CHANNEL = 'org.qemu.guest_agent.0'


@dataclass(frozen=True)
class Vcpu:
    id: int
    enabled: bool
    hotpluggable: bool | None  # None: the XML does not say (no <vcpus> element)
    order: int | None


@dataclass(frozen=True)
class NumaCell:
    id: int
    cpus: tuple
    memory_kib: int


@dataclass(frozen=True)
class MemoryDevice:
    model: str
    alias: str | None
    size_kib: int
    node: int | None
    slot: int | None
    base: str | None
    # virtio-mem only: the size the guest was asked to plug, what it has plugged, block size
    requested_kib: int | None = None
    current_kib: int | None = None
    block_kib: int | None = None

    @property
    def plugged_kib(self):
        """Memory the device gives the guest: for virtio-mem what is plugged now, else its size."""
        if self.model == 'virtio-mem':
            return self.current_kib if self.current_kib is not None else (self.requested_kib or 0)
        return self.size_kib


@dataclass(frozen=True)
class Pinning:
    vcpupin: dict = field(default_factory=dict)       # vCPU id -> tuple of host CPUs
    emulatorpin: tuple | None = None
    iothreadpin: dict = field(default_factory=dict)   # iothread id -> tuple of host CPUs
    vcpu_cpuset: tuple | None = None                  # <vcpu cpuset=...>: default for unpinned vCPUs
    numa_memory_mode: str | None = None               # <numatune><memory mode>
    numa_memory_nodeset: tuple | None = None          # host NUMA nodes for guest memory
    numa_memnodes: dict = field(default_factory=dict)  # guest cell id -> tuple of host nodes


@dataclass(frozen=True)
class Topology:
    sockets: int
    dies: int
    cores: int
    threads: int


@dataclass(frozen=True)
class DomainModel:
    name: str
    uuid: str
    domain_type: str  # 'kvm', or 'qemu' for TCG software emulation
    vcpu_max: int
    vcpu_current: int
    vcpu_placement: str
    vcpus: tuple
    topology: Topology | None
    pinning: Pinning
    numa_cells: tuple
    memory_kib: int
    current_memory_kib: int
    max_memory_kib: int | None
    max_memory_slots: int | None
    memory_devices: tuple
    balloon_model: str | None
    has_guest_agent_channel: bool
    guest_agent_connected: bool | None  # live XML only: the guest opened the channel

    @property
    def enabled_vcpu_ids(self):
        return tuple(v.id for v in self.vcpus if v.enabled)

    @property
    def hotplugged_memory_kib(self):
        return sum(d.plugged_kib for d in self.memory_devices)

    @property
    def slots_used(self):
        """Slots taken by memory devices; virtio-mem and virtio-pmem take a PCI slot, not a DIMM slot."""
        return sum(1 for d in self.memory_devices if d.model in ('dimm', 'nvdimm'))

    @property
    def numa_memory_kib(self):
        return sum(c.memory_kib for c in self.numa_cells)

    @property
    def is_tcg(self):
        return self.domain_type == 'qemu'

    def vcpu(self, vcpu_id):
        for vcpu in self.vcpus:
            if vcpu.id == vcpu_id:
                return vcpu
        return None

    def cell_by_id(self, cell_id):
        for cell in self.numa_cells:
            if cell.id == cell_id:
                return cell
        return None

    def cell_of_vcpu(self, vcpu_id):
        for cell in self.numa_cells:
            if vcpu_id in cell.cpus:
                return cell.id
        return None

    def to_dict(self):
        """JSON-friendly summary used in module results (sizes in MiB)."""
        return dict(
            name=self.name,
            uuid=self.uuid,
            domain_type=self.domain_type,
            vcpus=dict(
                maximum=self.vcpu_max,
                current=self.vcpu_current,
                enabled=list(self.enabled_vcpu_ids),
                placement=self.vcpu_placement,
                details=[dict(id=v.id, enabled=v.enabled, hotpluggable=v.hotpluggable, order=v.order)
                         for v in self.vcpus],
                topology=None if self.topology is None else dict(
                    sockets=self.topology.sockets, dies=self.topology.dies,
                    cores=self.topology.cores, threads=self.topology.threads),
            ),
            numa_cells=[dict(id=c.id, cpus=list(c.cpus), cpuset=format_cpulist(c.cpus),
                             memory_mib=kib_to_mib(c.memory_kib),
                             vcpus_enabled=[v for v in self.enabled_vcpu_ids if v in c.cpus])
                        for c in self.numa_cells],
            pinning=_pinning_dict(self.pinning),
            memory=dict(
                total_mib=kib_to_mib(self.memory_kib),
                current_mib=kib_to_mib(self.current_memory_kib),
                max_mib=kib_to_mib(self.max_memory_kib),
                hotplugged_mib=kib_to_mib(self.hotplugged_memory_kib),
                slots=dict(total=self.max_memory_slots, used=self.slots_used,
                           free=None if self.max_memory_slots is None
                           else self.max_memory_slots - self.slots_used),
                devices=[_memory_device_dict(d) for d in self.memory_devices],
                balloon=self.balloon_model,
            ),
            guest_agent_channel=dict(defined=self.has_guest_agent_channel,
                                     connected=self.guest_agent_connected),
        )


def _pinning_dict(pinning):
    def cpus(value):
        return None if value is None else dict(cpus=list(value), cpuset=format_cpulist(value))
    return dict(
        vcpupin=[dict(vcpu=k, **cpus(v)) for k, v in sorted(pinning.vcpupin.items())],
        emulatorpin=cpus(pinning.emulatorpin),
        iothreadpin=[dict(iothread=k, **cpus(v)) for k, v in sorted(pinning.iothreadpin.items())],
        vcpu_cpuset=cpus(pinning.vcpu_cpuset),
        numatune=dict(
            mode=pinning.numa_memory_mode,
            nodeset=None if pinning.numa_memory_nodeset is None else format_cpulist(pinning.numa_memory_nodeset),
            memnodes=[dict(cell=k, nodeset=format_cpulist(v)) for k, v in sorted(pinning.numa_memnodes.items())],
        ),
    )


def _memory_device_dict(device):
    result = dict(model=device.model, alias=device.alias, size_mib=kib_to_mib(device.size_kib),
                  node=device.node, slot=device.slot, base=device.base)
    if device.model == 'virtio-mem':
        result.update(requested_mib=kib_to_mib(device.requested_kib), current_mib=kib_to_mib(device.current_kib),
                      block_mib=kib_to_mib(device.block_kib))
    return result


class DomainXMLError(ValueError):
    """The XML is not a libvirt domain definition this model can read."""


def parse_domain_xml(xml_text):
    """Build a DomainModel from the text of virDomainGetXMLDesc."""
    if etree is None:
        raise DomainXMLError('the lxml Python library is required to read domain XML')
    try:
        root = etree.fromstring(xml_text.encode('utf-8') if isinstance(xml_text, str) else xml_text)
    except etree.XMLSyntaxError as exc:
        raise DomainXMLError('domain XML cannot be parsed: %s' % exc)
    if root.tag != 'domain':
        raise DomainXMLError('expected a <domain> document, got <%s>' % root.tag)

    vcpu_el = root.find('vcpu')
    vcpu_max = int(vcpu_el.text) if vcpu_el is not None else 1
    vcpu_current = int(vcpu_el.get('current', vcpu_max)) if vcpu_el is not None else vcpu_max
    vcpu_cpuset = vcpu_el.get('cpuset') if vcpu_el is not None else None
    memory_kib = _size(root.find('memory')) or 0
    current_memory_kib = _size(root.find('currentMemory'))
    max_memory_el = root.find('maxMemory')

    return DomainModel(
        name=root.findtext('name') or '',
        uuid=root.findtext('uuid') or '',
        domain_type=root.get('type', ''),
        vcpu_max=vcpu_max,
        vcpu_current=vcpu_current,
        vcpu_placement=(vcpu_el.get('placement', 'static') if vcpu_el is not None else 'static'),
        vcpus=_parse_vcpus(root, vcpu_max, vcpu_current),
        topology=_parse_topology(root),
        pinning=_parse_pinning(root, vcpu_cpuset),
        numa_cells=tuple(_parse_cell(cell) for cell in root.findall('cpu/numa/cell')),
        memory_kib=memory_kib,
        current_memory_kib=current_memory_kib if current_memory_kib is not None else memory_kib,
        max_memory_kib=_size(max_memory_el),
        max_memory_slots=int(max_memory_el.get('slots')) if max_memory_el is not None and max_memory_el.get('slots') else None,
        memory_devices=tuple(_parse_memory_device(el) for el in root.findall('devices/memory')),
        balloon_model=root.find('devices/memballoon').get('model') if root.find('devices/memballoon') is not None else None,
        has_guest_agent_channel=_agent_target(root) is not None,
        guest_agent_connected=_agent_connected(root),
    )


def _size(element):
    if element is None or element.text is None:
        return None
    return xml_size_kib(element.text.strip(), element.get('unit', 'KiB'))


def _yes(value):
    return None if value is None else value == 'yes'


def _parse_vcpus(root, vcpu_max, vcpu_current):
    listed = root.findall('vcpus/vcpu')
    if not listed:
        # Without <vcpus>, libvirt enables the first `current` vCPUs and says nothing about hotplug.
        return tuple(Vcpu(id=i, enabled=i < vcpu_current, hotpluggable=None, order=None) for i in range(vcpu_max))
    vcpus = []
    for el in listed:
        order = el.get('order')
        vcpus.append(Vcpu(id=int(el.get('id')), enabled=el.get('enabled') == 'yes',
                          hotpluggable=_yes(el.get('hotpluggable')), order=int(order) if order else None))
    return tuple(sorted(vcpus, key=lambda v: v.id))


def _parse_topology(root):
    el = root.find('cpu/topology')
    if el is None:
        return None
    return Topology(sockets=int(el.get('sockets', 1)), dies=int(el.get('dies', 1)),
                    cores=int(el.get('cores', 1)), threads=int(el.get('threads', 1)))


def _parse_pinning(root, vcpu_cpuset):
    emulator = root.find('cputune/emulatorpin')
    memory = root.find('numatune/memory')
    return Pinning(
        vcpupin={int(el.get('vcpu')): parse_cpulist(el.get('cpuset')) for el in root.findall('cputune/vcpupin')},
        emulatorpin=parse_cpulist(emulator.get('cpuset')) if emulator is not None else None,
        iothreadpin={int(el.get('iothread')): parse_cpulist(el.get('cpuset'))
                     for el in root.findall('cputune/iothreadpin')},
        vcpu_cpuset=parse_cpulist(vcpu_cpuset) if vcpu_cpuset else None,
        numa_memory_mode=memory.get('mode', 'strict') if memory is not None else None,
        numa_memory_nodeset=parse_cpulist(memory.get('nodeset')) if memory is not None and memory.get('nodeset') else None,
        numa_memnodes={int(el.get('cellid')): parse_cpulist(el.get('nodeset'))
                       for el in root.findall('numatune/memnode') if el.get('nodeset')},
    )


def _parse_cell(cell):
    memory_kib = xml_size_kib(cell.get('memory', '0'), cell.get('unit', 'KiB'))
    return NumaCell(id=int(cell.get('id', 0)), cpus=parse_cpulist(cell.get('cpus')), memory_kib=memory_kib)


def _parse_memory_device(el):
    target = el.find('target')
    address = el.find('address')
    alias = el.find('alias')
    node = target.findtext('node') if target is not None else None
    slot = address.get('slot') if address is not None and address.get('type') == 'dimm' else None
    return MemoryDevice(
        model=el.get('model'),
        alias=alias.get('name') if alias is not None else None,
        size_kib=_size(target.find('size')) if target is not None else 0,
        node=int(node) if node is not None else None,
        slot=int(slot, 0) if slot is not None else None,
        base=address.get('base') if address is not None else None,
        requested_kib=_size(target.find('requested')) if target is not None else None,
        current_kib=_size(target.find('current')) if target is not None else None,
        block_kib=_size(target.find('block')) if target is not None else None,
    )


def _agent_target(root):
    for target in root.findall('devices/channel/target'):
        if target.get('type') == 'virtio' and target.get('name') == GUEST_AGENT_CHANNEL:
            return target
    return None


def _agent_connected(root):
    target = _agent_target(root)
    if target is None or target.get('state') is None:
        return None
    return target.get('state') == 'connected'
