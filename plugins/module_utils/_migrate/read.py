# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_migrate's reading of both hosts before the plan: libvirt to the facts of facts.py.

From the source: the domain (state, job, both definitions), QEMU's vCPUs, the
definition the destination will keep, the host.  From the destination: the
domains of that name or UUID, the host, the domain capabilities of the
domain's platform and libvirt's comparison of the domain's CPU with it.
Nothing here writes.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import error_text, is_error, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_check import (
    capabilities_query, parse_domain_capabilities,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import etree
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.qemu_monitor import (
    QemuMonitorUnavailable, qemu_vcpus,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.snapshot import ACTIVE_STATES, state_name
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.facts import (
    DestinationFacts, HostFacts, Peer, SourceFacts, parse_host_capabilities,
)

_CPU_COMPARE = {0: 'incompatible', 1: 'identical', 2: 'superset'}


def host_facts(conn, uri):
    caps_uuid, bits = None, None
    try:
        caps_uuid, bits = parse_host_capabilities(conn.getCapabilities())
    except libvirt.libvirtError:
        pass

    def ask(func, *args):
        try:
            return func(*args)
        except libvirt.libvirtError:
            return None
    free = ask(conn.getFreeMemory)
    cpumap = ask(conn.getCPUMap)
    return HostFacts(
        uri=uri, host_uuid=caps_uuid, hypervisor=ask(conn.getType), version=ask(conn.getVersion),
        lib_version=ask(conn.getLibVersion), free_memory_kib=None if free is None else free // 1024,
        online_cpus=None if cpumap is None else tuple(i for i, on in enumerate(cpumap[1]) if on),
        phys_addr_bits=bits,
    )


def domain_platform(xml_text):
    """The getDomainCapabilities arguments of a domain XML (emulator, arch, machine, domain type), and its <cpu>
    without the guest NUMA cells, as compareHypervisorCPU takes it (None when it names no model), and the cpu mode."""
    emulator, arch, machine, domain_type = capabilities_query(xml_text)
    root = etree.fromstring(xml_text.encode('utf-8') if isinstance(xml_text, str) else xml_text)
    cpu = root.find('cpu')
    cpu_text = None
    mode = None
    if cpu is not None:
        mode = cpu.get('mode', 'custom')
        if cpu.find('model') is not None or mode != 'custom':
            copy = etree.fromstring(etree.tostring(cpu))
            for numa in copy.findall('numa'):
                copy.remove(numa)
            cpu_text = etree.tostring(copy, encoding='unicode')
    return dict(emulator=emulator, arch=arch, machine=machine, domain_type=domain_type, cpu=cpu_text, cpu_mode=mode)


def peer(dom):
    code, _reason = dom.state()
    state = state_name(code)
    return Peer(name=dom.name(), uuid=dom.UUIDString(), state=state,
                active=state in ACTIVE_STATES, persistent=bool(dom.isPersistent()))


def find_peer(func, key):
    try:
        return peer(func(key))
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_DOMAIN'):
            return None
        raise HotplugError('looking up domain %s on the destination: %s' % (key, error_text(exc)))


def read_source(session, dom, request):
    """SourceFacts: the source host, and the domain (None when the source has no such domain)."""
    snap = read_domain(dom) if dom is not None else None
    qemu = None
    # libvirt lets no monitor command through while a job (a migration) runs: it would wait 30 s for nothing
    if snap is not None and snap.live is not None and not snap.job.active:
        try:
            qemu = tuple(sorted(qemu_vcpus(dom)))
        except QemuMonitorUnavailable:
            qemu = None
    definition = None
    if snap is not None:
        # the destination keeps the source's persistent definition, or the live one of a transient domain
        flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE
        if snap.persistent and request.persistent:
            flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
        definition = dom.XMLDesc(flags)
    return SourceFacts(host=host_facts(session.conn, session.uri), snapshot=snap, qemu_vcpus=qemu,
                       definition_xml=definition)


def read_destination(conn, request, dom, snap):
    """DestinationFacts: the destination host, domains of that name or UUID, and its view of the domain's needs."""
    by_name = find_peer(conn.lookupByName, request.name)
    if snap is None:
        by_uuid = find_peer(conn.lookupByUUIDString, by_name.uuid) if by_name is not None else None
        return DestinationFacts(host=host_facts(conn, request.dest_uri), by_name=by_name, by_uuid=by_uuid)
    by_uuid = find_peer(conn.lookupByUUIDString, snap.uuid)
    flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE
    if snap.live is None:
        flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
    xml = dom.XMLDesc(flags)
    platform = domain_platform(xml)
    domcaps, domcaps_error = None, None
    try:
        domcaps = parse_domain_capabilities(conn.getDomainCapabilities(
            platform['emulator'], platform['arch'], platform['machine'], platform['domain_type'], 0))
    except libvirt.libvirtError as exc:
        domcaps_error = error_text(exc)
    cpu_compare, cpu_detail = compare_cpu(conn, platform)
    return DestinationFacts(host=host_facts(conn, request.dest_uri), by_name=by_name, by_uuid=by_uuid,
                            domcaps=domcaps, domcaps_error=domcaps_error, cpu_compare=cpu_compare,
                            cpu_detail=cpu_detail)


def compare_cpu(conn, platform):
    """libvirt's comparison of the domain's CPU with what the destination's hypervisor can give it."""
    if platform['cpu'] is None:
        return 'not_compared', 'the domain has no <cpu> model (QEMU\'s default CPU model)'
    if platform['cpu_mode'] == 'host-passthrough':
        return 'not_compared', 'host-passthrough: libvirt cannot compare it; the hosts need the same CPU'
    args = (platform['emulator'], platform['arch'], platform['machine'], platform['domain_type'], platform['cpu'])
    try:
        answer = conn.compareHypervisorCPU(*args, 0)
    except libvirt.libvirtError as exc:
        return 'not_compared', 'libvirt could not compare the CPU: %s' % error_text(exc)
    name = _CPU_COMPARE.get(answer, 'not_compared')
    if name != 'incompatible':
        return name, None
    try:
        conn.compareHypervisorCPU(*args, libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)
    except libvirt.libvirtError as exc:
        return name, error_text(exc)
    return name, 'libvirt gave no reason'


def placement_before(source, dest, source_uri, request):
    """Where the domain is on both hosts before the run, as the result's `before` says it."""
    return dict(source=_state_from_snapshot(source.snapshot, source_uri), destination=_state_from_peer(dest, request))


def _state_from_snapshot(snap, uri):
    if snap is None:
        return dict(uri=uri, reachable=True, defined=False, state=None, persistent=None)
    return dict(uri=uri, reachable=True, defined=True, state=snap.state, active=snap.active,
                persistent=snap.persistent)


def _state_from_peer(dest, request):
    found = dest.by_uuid or dest.by_name
    if found is None:
        return dict(uri=request.dest_uri, reachable=True, defined=False, state=None, persistent=None)
    return dict(uri=request.dest_uri, reachable=True, defined=True, state=found.state, active=found.active,
                persistent=found.persistent, name=found.name, uuid=found.uuid)
