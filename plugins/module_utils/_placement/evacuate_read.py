# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What hypervisor_migration_plan reads for the evacuation planner (_placement/evacuate.py), through the helpers
the single-host modules use: the source's sysfs (_host/sysfs.py) and running domains (read_domain), and each
destination's capacity, vCPU limit and CPU comparison (_migrate/read.py), as the planner's plain dicts.

Nothing here writes.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_id_list
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._host.plan import resolve_components
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import SysfsTree, read_host
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import (
    LibvirtSession, call, conn_uri, error_text, libvirt,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_check import parse_domain_capabilities
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.facts import needed_memory_kib
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.read import compare_cpu, domain_platform

MIB_KIB = 1024


def _pinning(model):
    pinning = model.pinning
    numatune = None
    if pinning.numa_memory_mode or pinning.numa_memory_nodeset or pinning.numa_memnodes:
        numatune = dict(mode=pinning.numa_memory_mode or 'strict',
                        nodeset=format_cpulist(pinning.numa_memory_nodeset or ()),
                        memnodes=dict((str(c), format_cpulist(n)) for c, n in pinning.numa_memnodes.items()))
    return dict(
        vcpupin=dict((str(v), format_cpulist(c)) for v, c in pinning.vcpupin.items()),
        cpuset=format_cpulist(pinning.vcpu_cpuset) if pinning.vcpu_cpuset else None,
        emulatorpin=format_cpulist(pinning.emulatorpin) if pinning.emulatorpin else None,
        iothreadpin=dict((str(i), format_cpulist(c)) for i, c in pinning.iothreadpin.items()),
        numatune=numatune,
    )


def _domain(dom, snap, platforms):
    """The planner's facts of one running domain; platforms collects the distinct <cpu> and machine types."""
    model = snap.live
    boot_kib, plugged_kib = needed_memory_kib(model)
    platform = domain_platform(call('reading the definition of domain %s' % snap.name, dom.XMLDesc,
                                    libvirt.VIR_DOMAIN_XML_MIGRATABLE))
    cpu_key = None
    for key, known in platforms['cpu'].items():
        if known == platform:
            cpu_key = key
    if cpu_key is None:
        cpu_key = 'cpu%d' % len(platforms['cpu'])
        platforms['cpu'][cpu_key] = platform
    platforms['machine'].setdefault(platform['machine'], platform)
    facts = dict(name=snap.name, vcpus=len(model.enabled_vcpu_ids), vcpus_max=model.vcpu_max,
                 memory_mib=(boot_kib + plugged_kib) // MIB_KIB, hotplugged_mib=plugged_kib // MIB_KIB,
                 cpu_model=cpu_key, machine=platform['machine'], persistent=snap.persistent,
                 job=snap.job.operation if snap.job.active else None)
    facts.update(_pinning(model))
    return facts


def _source_host(host):
    """The planner's facts of the source host (_placement/evacuate.py), from its sysfs snapshot."""
    blocks = dict((str(b.id), dict(online=b.online, removable=b.removable, node=b.node,
                                   zones=list(b.valid_zones), size_mib=b.block_size // (1024 * 1024)))
                  for b in host.memory.blocks.values())
    nodes = dict((str(n.id), dict(cpus=format_cpulist(n.cpus),
                                  free_mib=None if n.mem_free_kib is None else n.mem_free_kib // MIB_KIB))
                 for n in host.nodes.values())
    facts = dict(cpus=format_cpulist(host.cpus), online_cpus=format_cpulist(host.online_cpus),
                 fixed_cpus=format_cpulist(c.id for c in host.cpus.values() if not c.hotpluggable),
                 isolated_cpus=format_cpulist(host.isolated), memory_blocks=blocks, numa_nodes=nodes)
    if host.memory.block_size:
        facts['memory_block_mib'] = host.memory.block_size // (1024 * 1024)
    return facts


def free_memory_mib(host, conn):
    """The host's free memory: its NUMA nodes' MemFree from sysfs (the tree the offlining changes), else libvirt's."""
    free = [n.mem_free_kib for n in host.nodes.values()]
    if free and None not in free:
        return sum(free) // MIB_KIB
    return call('reading the free memory of %s' % conn_uri(conn), conn.getFreeMemory) // (1024 * 1024)


def read_source(conn, sysfs_root, name):
    """(source facts, platforms, notes): the host from sysfs and its running domains from libvirt.

    platforms: {'cpu': {cpu_model key: domain_platform}, 'machine': {machine: domain_platform}}, what every
    destination is asked about.  Domains that do not run are not moved; notes says so."""
    host = read_host(SysfsTree(sysfs_root))
    source = _source_host(host)
    source.update(name=name, free_memory_mib=free_memory_mib(host, conn))
    platforms = dict(cpu={}, machine={})
    domains, notes = [], []
    for dom in sorted(call('listing domains on %s' % conn_uri(conn), conn.listAllDomains, 0), key=lambda d: d.name()):
        snap = read_domain(dom)
        if snap.live is None:
            notes.append('domain %s is %s: it is not migrated and stays defined here' % (snap.name, snap.state))
            continue
        domains.append(_domain(dom, snap, platforms))
    source['domains'] = domains
    return source, platforms, notes


def _guest_vcpus(conn):
    """(running guests, their vCPUs, their names) on a destination."""
    running = call('listing domains on %s' % conn_uri(conn), conn.listAllDomains,
                   libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    return len(running), sum(dom.info()[3] for dom in running), sorted(dom.name() for dom in running)


def _vcpu_limit(conn, platform):
    try:
        caps = parse_domain_capabilities(conn.getDomainCapabilities(
            platform['emulator'], platform['arch'], platform['machine'], platform['domain_type'], 0))
    except libvirt.libvirtError:
        return None
    return caps.vcpu_max


def read_destination(dest, platforms):
    """The planner's facts of one destination ({name, uri, online_cpus?, vcpu_max?}), or {name, uri, unreachable}.

    dest['online_cpus'] (host_resource_info of that host) wins over libvirt's CPU map; dest['vcpu_max'] (a site
    policy, kvm_hotplug_max_vcpus) lowers the hypervisor's own limit."""
    name, uri = dest['name'], dest['uri']
    try:
        session = LibvirtSession(uri)
        conn = session.__enter__()
    except HotplugError as exc:
        return dict(name=name, uri=uri, unreachable=exc.msg)
    try:
        return _destination(conn, dest, platforms)
    except (HotplugError, libvirt.libvirtError) as exc:
        return dict(name=name, uri=uri, unreachable=getattr(exc, 'msg', None) or error_text(exc))
    finally:
        session.__exit__(None, None, None)


def _destination(conn, dest, platforms):
    node = call('reading the host information of %s' % dest['uri'], conn.getInfo)
    online = dest.get('online_cpus')
    if online is None:
        cpumap = call('reading the CPU map of %s' % dest['uri'], conn.getCPUMap)
        online = [i for i, on in enumerate(cpumap[1]) if on]
    else:
        try:
            online = list(parse_id_list(online, 'online_cpus of %s' % dest['name'])[0])
        except ValueError as exc:
            raise HotplugError(str(exc))
    total = len(online)
    guests, vcpus, names = _guest_vcpus(conn)
    free_mib = call('reading the free memory of %s' % dest['uri'], conn.getFreeMemory) // (1024 * 1024)
    override = dest.get('vcpu_max')
    vcpu_max = {}
    for machine, platform in platforms['machine'].items():
        limits = [v for v in (_vcpu_limit(conn, platform), override) if v is not None]
        vcpu_max[machine] = min(limits) if limits else None
    compare, detail = {}, {}
    for key, platform in platforms['cpu'].items():
        compare[key], why = compare_cpu(conn, platform)
        if why:
            detail[key] = why
    return dict(name=dest['name'], uri=dest['uri'], cpus_total=total, cpus_free=total - vcpus,
                memory_free_mib=free_mib, memory_total_mib=int(node[1]), vcpu_max=vcpu_max,
                cpu_compare=compare, cpu_detail=detail, guests=guests, online_cpus=online, domains=names)


def running_where(hosts):
    """({host: [running domain names]}, {host: why unreachable}) of hosts {name: uri}."""
    where, unreachable = {}, {}
    for name in sorted(hosts):
        try:
            with LibvirtSession(hosts[name]) as conn:
                where[name] = _guest_vcpus(conn)[2]
        except (HotplugError, libvirt.libvirtError) as exc:
            unreachable[name] = getattr(exc, 'msg', None) or error_text(exc)
    return where, unreachable


def component_ids(sysfs_root, components):
    """{cpus, memory_blocks}: the ids that components ({cpus, memory_blocks, numa_nodes} cpulists) name on the host
    now, a node bringing its CPUs and blocks (the batch a restore brings online; new parts may have new ids)."""
    cpus, blocks, _nodes = resolve_components(read_host(SysfsTree(sysfs_root)), components.get('cpus'),
                                              components.get('memory_blocks'), components.get('numa_nodes'))
    return dict(cpus=list(cpus), memory_blocks=list(blocks))
