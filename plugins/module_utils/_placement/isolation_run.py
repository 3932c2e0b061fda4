# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""serviceability_plan's body: detect the failing part (or take the one named), read the host and its VMs, and
plan what the VMs give up before the part goes offline (isolation.py).

Detection is _host/edac_rate.py's plan_detection over the host's EDAC counters (and rasdaemon's database where
there is one), with the readings of earlier runs kept in a state file on the host; the part is what the
crossing components cover (memory blocks, CPUs).  Writing the state file is bookkeeping, not a change of the
host: the module reports changed false, and check mode does not write it.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.hotplug.plugins.module_utils._common.argspec import URI_ARGS, argument_spec
from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import run_module
from ansible_collections.kvm.hotplug.plugins.module_utils._host.edac import (
    analyze, rasdaemon_path, read_edac, read_edac_cpus, read_rasdaemon,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._host.edac_rate import (
    DEFAULT_THRESHOLD, DEFAULT_WINDOW_HOURS, components_from_edac, plan_detection,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._host.plan import resolve_components
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import DEFAULT_SYSFS_ROOT, SysfsTree, read_host
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import LibvirtSession, call, conn_uri
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.facts import pinned_host_cpus
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.evacuate_read import free_memory_mib
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.isolation import plan_isolation
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.read import size_mib, vm_facts

PART_KEYS = ('cpus', 'memory_blocks', 'numa_nodes', 'dimm', 'edac')

OPTIONS = dict(
    components=dict(type='dict'),
    ce_threshold=dict(type='int', default=DEFAULT_THRESHOLD),
    ce_window_hours=dict(type='float', default=DEFAULT_WINDOW_HOURS),
    cpu_siblings=dict(type='bool', default=False),
    allow_shrink=dict(type='bool', default=True),
    allow_migration=dict(type='bool', default=False),
    vms=dict(type='dict', default={}),
    cpu_overcommit=dict(type='float', default=1.0),
    reserve=dict(type='dict', default={}),
    state_file=dict(type='path', default='/var/lib/kvm-hotplug/serviceability-edac.json'),
    rasdaemon_db=dict(type='path'),
    sysfs_root=dict(type='path', default=DEFAULT_SYSFS_ROOT),
)


def read_state(path):
    """The detection state (earlier readings); an absent or unreadable file starts afresh."""
    try:
        with open(path) as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return []
    return state.get('readings', []) if isinstance(state, dict) else []


def write_state(path, readings):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = '%s.%d.tmp' % (path, os.getpid())
    with open(temporary, 'w') as handle:
        json.dump(dict(readings=readings), handle, sort_keys=True)
    os.replace(temporary, path)     # a crash never leaves half a file


def _edac_components(tree, host, params, now):
    edac = read_edac(tree)
    analyze(host, edac, read_rasdaemon(rasdaemon_path(params['rasdaemon_db']), host.memory))
    return components_from_edac(edac, read_edac_cpus(tree), now=now)


def named_part(host, components, edac_components):
    """{cpus, memory_blocks} of the parts named by hand: ids, NUMA nodes, a DIMM label or an EDAC key."""
    unknown = sorted(set(components) - set(PART_KEYS))
    if unknown:
        raise HotplugError('unknown component key %s (known: %s)' % (', '.join(unknown), ', '.join(PART_KEYS)))
    cpu_ids, block_ids, _nodes = resolve_components(host, components.get('cpus'), components.get('memory_blocks'),
                                                    components.get('numa_nodes'))
    cpus, blocks = set(cpu_ids), set(block_ids)
    notes = []
    for key in ('dimm', 'edac'):
        wanted = components.get(key)
        if not wanted:
            continue
        matches = [c for c in edac_components if (c.get('label') if key == 'dimm' else c['key']) == wanted]
        if not matches:
            raise HotplugError('no EDAC component has the %s %r (the host has %s)' % (
                'label' if key == 'dimm' else 'key', wanted,
                # the cpu EDAC device's components have no DIMM label: only the labels there are
                ', '.join(sorted(str(name) for name in (c.get('label') if key == 'dimm' else c['key']
                                                        for c in edac_components) if name)) or 'none'))
        for match in matches:
            cpus.update(match['covers'].get('cpus') or ())
            blocks.update(match['covers'].get('memory_blocks') or ())
            notes.append('%s: %s' % (match['key'], (match.get('mapping') or {}).get('reason')))
    return dict(cpus=sorted(cpus), memory_blocks=sorted(blocks)), notes


def with_siblings(host, cpus):
    """The CPUs and every CPU sharing a core with one of them (thread_siblings, read while they are online)."""
    out = set(cpus)
    for cpu in cpus:
        siblings = host.cpus[cpu].thread_siblings if cpu in host.cpus else None
        out.update(siblings or ())
    return sorted(out)


def removable_vcpus(model, cpus_offline):
    """The vCPU ids a shrink may remove, in order: those pinned to CPUs that go offline first, then the others,
    each highest id first; never vCPU 0 nor one the definition marks not hotpluggable."""
    offline = set(cpus_offline)
    pins = model.pinning.vcpupin
    ids = [v.id for v in model.vcpus if v.enabled and v.id != 0 and v.hotpluggable is not False]
    return sorted(ids, key=lambda v: (not set(pins.get(v, ())) & offline, -v))


def _vm(dom, snap, declared, cpus_offline):
    facts = vm_facts(snap)
    model = snap.live
    entry = declared.get(snap.name) or {}
    pinning = model.pinning
    return dict(name=snap.name, vcpus=facts['vcpus'], fixed_vcpus=facts['fixed_vcpus'],
                removable_vcpus=removable_vcpus(model, cpus_offline),
                pinned_cpus=pinned_host_cpus(model),
                vcpus_pinned=bool(pinning.vcpupin or pinning.vcpu_cpuset),
                memory_mib=facts['memory_mib'], dimm_mib=facts['dimm_mib'], removable_dimms=facts['removable_dimms'],
                min_vcpus=entry.get('min_vcpus'),
                min_memory_mib=size_mib(entry.get('min_memory'), '%s min_memory' % snap.name))


def read_vms(conn, declared, cpus_offline):
    out, notes = [], []
    for dom in sorted(call('listing domains on %s' % conn_uri(conn), conn.listAllDomains, 0), key=lambda d: d.name()):
        snap = read_domain(dom)
        if snap.live is None:
            continue
        if snap.job.active:
            raise HotplugError('refusing to plan the isolation: domain %s has a job in progress (%s); nothing was '
                               'changed' % (snap.name, snap.job.operation))
        out.append(_vm(dom, snap, declared, cpus_offline))
    return out, notes


def shrink_changes(shrinks):
    """One change per VM and resource a shrink takes away, as a kvm_hotplug_hooks task file is told of it."""
    out = []
    for entry in shrinks:
        for resource, kind in (('vcpus', 'vcpu'), ('memory_mib', 'memory')):
            before, after = entry['before'][resource], entry[resource]
            if before != after:
                out.append(dict(name=entry['name'], change=dict(kind=kind, action='unplug', resource=resource,
                                                                before=before, after=after, delta=after - before)))
    return out


def plan(module):
    params = module.params
    if params['ce_threshold'] < 1 or params['ce_window_hours'] <= 0:
        raise HotplugError('ce_threshold must be at least 1 and ce_window_hours above 0')
    tree = SysfsTree(params['sysfs_root'])
    host = read_host(tree)
    now = time.time()
    edac_components = _edac_components(tree, host, params, now)
    findings, notes = [], []
    if params['components']:
        part, notes = named_part(host, params['components'], edac_components)
        source = 'named'
    else:
        detected = plan_detection(edac_components, read_state(params['state_file']), now, params['ce_threshold'],
                                  params['ce_window_hours'])
        findings = detected['findings']
        if not module.check_mode:
            write_state(params['state_file'], detected['state'])
        cpus, blocks = set(), set()
        for finding in findings:
            cpus.update(finding['covers'].get('cpus') or ())
            blocks.update(finding['covers'].get('memory_blocks') or ())
            if (finding.get('mapping') or {}).get('level') == 'node':
                notes.append('%s is mapped to its NUMA node only: every block of the node is taken out (%s)'
                             % (finding['key'], finding['mapping'].get('reason')))
        part = dict(cpus=sorted(cpus), memory_blocks=sorted(blocks))
        source = 'detected'
    if params['cpu_siblings'] and part['cpus']:
        part['cpus'] = with_siblings(host, part['cpus'])
    fixed = [c for c in part['cpus'] if c in host.cpus and not host.cpus[c].hotpluggable]
    online = host.online_cpus
    offline_cpus = [c for c in part['cpus'] if c in online and c not in fixed]
    offline_blocks = [b for b in part['memory_blocks'] if host.memory.blocks[b].online]
    block_mib = sum(host.memory.blocks[b].block_size for b in offline_blocks) // (1024 * 1024)
    with LibvirtSession(params['uri']) as conn:
        free_mib = free_memory_mib(host, conn)
        vms, _vm_notes = read_vms(conn, params['vms'], offline_cpus)
    isolation = plan_isolation(
        dict(online_cpus=list(online), cpus_offline=offline_cpus, free_memory_mib=free_mib,
             blocks_offline_mib=block_mib),
        vms, dict(allow_shrink=params['allow_shrink'], allow_migration=params['allow_migration'],
                  cpu_overcommit=params['cpu_overcommit'],
                  reserve_memory_mib=size_mib(params['reserve'].get('memory'), 'reserve memory') or 0))
    if fixed:
        isolation['feasible'] = False
        refusal = 'CPU %s cannot go offline (the kernel offers no online file, as for cpu0)' % format_cpulist(fixed)
        isolation['refusal'] = refusal if not isolation['refusal'] else '%s; %s' % (refusal, isolation['refusal'])
    repins = [dict(name=name, change=dict(kind='repin', action='repin', cpus_offline=offline_cpus))
              for name in isolation['repin']]
    return dict(changed=False, source=source, findings=findings, part=part, changes=shrink_changes(isolation['shrink']),
                repins=repins,
                offline=dict(cpus=offline_cpus, memory_blocks=offline_blocks),
                empty=not (offline_cpus or offline_blocks), plan=isolation,
                targets=[dict(name=s['name'], vcpus=s['vcpus'], memory_mib=s['memory_mib'], vcpus_off=s['vcpus_off'])
                         for s in isolation['shrink']],
                migrate=isolation['migrate'], feasible=isolation['feasible'], refusal=isolation['refusal'],
                notes=notes, vms=vms)


def plan_main():
    module = AnsibleModule(argument_spec=argument_spec(OPTIONS, URI_ARGS), supports_check_mode=True)
    run_module(module, plan)
