# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the rebalance planner needs from one host, read through the existing helpers: the host's capacity, each
domain's allocation and hotplug limits (read_domain), and in measured mode its demand (getAllDomainStats).

Measured-mode policy (docs/rebalance.md):
- vCPUs: busy = the growth of the domain's vCPU time (sum of vcpu.N.time, else cpu.time) over the sample, in CPUs;
  demand = ceil(busy / target_utilization) + headroom vcpus, at least 1;
- memory, only where the guest's balloon driver reports `available` and `unused`: used = available - unused (else
  rss); demand = ceil(used / target_utilization) + headroom memory_mib; without balloon statistics the memory is
  kept (no demand).
Only the VMs listed in kvm_hotplug_vms get a demand; the others keep what they have (and count against the host).

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import math
import time

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import parse_size_kib
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import call, conn_uri, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.sizes import DIMM, memory_size_kib

DEFAULT_DIMM_MIB = 128


def size_mib(value, what):
    """A size from kvm_hotplug_vms (an int is MiB, a string may carry a unit) in MiB, or None."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return parse_size_kib(str(value)) // 1024
    except ValueError as exc:
        raise HotplugError('%s: %s' % (what, exc))


def host_facts(conn):
    """cpus and memory_mib of the host, from virNodeGetInfo."""
    info = call('reading the host information of %s' % conn_uri(conn), conn.getInfo)
    return dict(cpus=int(info[2]), memory_mib=int(info[1]))


def vm_facts(snapshot, default_dimm_mib=DEFAULT_DIMM_MIB):
    """The planner's view of one domain: allocation and hotplug limits, from its live definition."""
    model = snapshot.live
    if model is None:
        config = snapshot.config
        vcpus = config.vcpu_current if config is not None else 0
        memory = memory_size_kib(config) // 1024 if config is not None else 0
        return dict(name=snapshot.name, active=False, vcpus=vcpus, memory_mib=memory)
    dimms = [d for d in model.memory_devices if d.model == DIMM]
    grid = (dimms[-1].size_kib // 1024) if dimms else default_dimm_mib
    fixed = sum(1 for v in model.vcpus if v.enabled and v.hotpluggable is False) or 1
    slots = model.max_memory_slots or 0
    return dict(
        name=snapshot.name, active=True,
        vcpus=len(model.enabled_vcpu_ids), vcpu_maximum=model.vcpu_max, fixed_vcpus=fixed,
        memory_mib=memory_size_kib(model) // 1024,
        memory_maximum_mib=(model.max_memory_kib // 1024) if model.max_memory_kib else None,
        dimm_mib=grid if model.max_memory_kib and model.numa_cells else 0,
        free_slots=max(0, slots - model.slots_used),
        removable_dimms=sum(1 for d in dimms if d.size_kib // 1024 == grid),
    )


def read_host(conn, default_dimm_mib=DEFAULT_DIMM_MIB):
    """(host facts, [vm facts]) of every domain on the host, in name order."""
    domains = call('listing domains on %s' % conn_uri(conn), conn.listAllDomains, 0)
    vms = [vm_facts(read_domain(dom), default_dimm_mib) for dom in domains]
    return host_facts(conn), sorted(vms, key=lambda v: v['name'])


def with_bounds(vms, declared):
    """Each VM's facts with its kvm_hotplug_vms entry: bounds, priority and (declared mode) its demand.

    A domain not in kvm_hotplug_vms keeps what it has (no demand, no bounds)."""
    out = []
    for vm in vms:
        entry = declared.get(vm['name']) or {}
        merged = dict(vm)
        merged.update(
            priority=int(entry.get('priority') or 0),
            min_vcpus=entry.get('min_vcpus'), max_vcpus=entry.get('max_vcpus'),
            min_memory_mib=size_mib(entry.get('min_memory'), '%s min_memory' % vm['name']),
            max_memory_mib=size_mib(entry.get('max_memory'), '%s max_memory' % vm['name']),
            demand_vcpus=entry.get('vcpus'),
            demand_memory_mib=size_mib(entry.get('memory'), '%s memory' % vm['name']),
            managed=vm['name'] in declared,
        )
        for low, high in (('min_vcpus', 'max_vcpus'), ('min_memory_mib', 'max_memory_mib')):
            if _number(merged[low]) and _number(merged[high]) and merged[low] > merged[high]:
                raise HotplugError('%s: %s %s is above %s %s in kvm_hotplug_vms' % (
                    vm['name'], low, merged[low], high, merged[high]))
        out.append(merged)
    return out


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _stats_flags():
    return (libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_BALLOON)


def _sample(conn):
    records = call('reading domain statistics on %s' % conn_uri(conn), conn.getAllDomainStats, _stats_flags(),
                   libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
    out = {}
    for dom, stats in records:
        vcpu_time = sum(v for k, v in stats.items() if k.startswith('vcpu.') and k.endswith('.time'))
        out[dom.name()] = dict(cpu_ns=vcpu_time or stats.get('cpu.time', 0), balloon=dict(
            (k[len('balloon.'):], v) for k, v in stats.items() if k.startswith('balloon.')))
    return out


def measure(conn, seconds, sleep=time.sleep, clock=time.monotonic):
    """{name: {busy_cpus, used_mib or None, balloon}} over a sample of `seconds`."""
    first = _sample(conn)
    started = clock()
    sleep(seconds)
    second = _sample(conn)
    elapsed = max(clock() - started, 1e-6)
    out = {}
    for name, now in second.items():
        before = first.get(name)
        if before is None:
            continue
        busy = max(0, now['cpu_ns'] - before['cpu_ns']) / (elapsed * 1e9)
        balloon = now['balloon']
        used = None
        if 'available' in balloon and 'unused' in balloon:
            used = (balloon['available'] - balloon['unused']) // 1024
        elif 'rss' in balloon:
            used = balloon['rss'] // 1024
        out[name] = dict(busy_cpus=round(busy, 3), used_mib=used, balloon=balloon)
    return out


def measured_demand(vms, samples, target_utilization, headroom):
    """The VMs with demand_vcpus and demand_memory_mib from the samples (see the policy in the module docstring)."""
    if not 0 < target_utilization <= 1:
        raise HotplugError('target_utilization must be above 0 and at most 1, got %s' % target_utilization)
    out = []
    for vm in vms:
        vm = dict(vm)
        sample = samples.get(vm['name'])
        if sample is None or not vm.get('active', True) or not vm.get('managed', True):
            vm.update(demand_vcpus=None, demand_memory_mib=None)
        else:
            vm['demand_vcpus'] = max(1, int(math.ceil(sample['busy_cpus'] / target_utilization - 1e-9))
                                     + int(headroom.get('vcpus') or 0))
            vm['demand_memory_mib'] = (None if sample['used_mib'] is None else
                                       int(math.ceil(sample['used_mib'] / target_utilization))
                                       + int(headroom.get('memory_mib') or 0))
            vm['measured'] = sample
        out.append(vm)
    return out
