# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The serviceability role's plan (issue 11): what the VMs must give up before a failing part goes offline.

plan_isolation(host, vms, settings) is pure and deterministic.  The part is some CPUs and memory blocks of one
host.  The virtualization layer is told first, in this order, each only as far as needed:

1. re-pin: every pinned thread on a CPU that goes offline keeps its other CPUs, or moves to the CPUs that stay
   online (host_resource_offline does this when the CPUs go; the plan lists the VMs it concerns);
2. shrink (settings allow_shrink): VMs give up vCPUs and memory, down to their declared minimums only
   (kvm_hotplug_vms min_vcpus, min_memory; a VM without a declared minimum is never shrunk);
3. migrate (settings allow_migration): VMs leave the host.

Two limits decide what is needed:
- CPUs: the vCPUs of the pinned VMs (vcpupin or <vcpu cpuset>) must fit the CPUs that stay online, times
  cpu_overcommit.  Unpinned VMs float on whatever CPUs there are and do not count.
- memory: the host's free memory less the blocks that go must stay at reserve_memory_mib or above.  Memory a
  shrink or a migration takes off the host counts as freed.

Shrinking goes VM by VM in this order: the VMs the part concerns first, then the others, each by name; a VM gives
what it can (vCPUs down to max(min_vcpus, its fixed vCPUs), memory in whole DIMMs down to min_memory) until the
limit holds.  Migration then picks the VMs the part concerns before the others, the most pinned vCPUs first (then
name), until both limits hold.  When they cannot hold, the plan says why (`refusal`, naming the limit) and nothing
may change on the part.

Input (plain dicts):

host
    online_cpus, cpus_offline, memory_blocks_offline (lists of ids), isolated_cpus, free_memory_mib,
    blocks_offline_mib (the size of the blocks that go)
vms
    name, vcpus, fixed_vcpus (that cannot be unplugged; default 1), removable_vcpus (the vCPU ids a shrink may
    remove, in order; default the highest ids above the fixed ones), pinned_cpus (every host CPU its pins name,
    [] when unpinned), vcpus_pinned (whether its vCPUs are pinned), memory_mib, dimm_mib, removable_dimms,
    min_vcpus, min_memory_mib (None: not declared)
settings
    allow_shrink (True), allow_migration (False), cpu_overcommit (1.0), reserve_memory_mib (0)

Result: {feasible, refusal, repin: [names], shrink: [{name, vcpus, memory_mib, vcpus_off, before}], migrate: [names],
limits: {cpus: {capacity, load_before, load_after}, memory: {free_after, reserve}}, vms: {name: what happens}}

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError


def _settings(settings):
    settings = dict(settings or {})
    unknown = sorted(set(settings) - {'allow_shrink', 'allow_migration', 'cpu_overcommit', 'reserve_memory_mib'})
    if unknown:
        raise HotplugError('unknown isolation setting %s' % ', '.join(unknown))
    ratio = settings.get('cpu_overcommit', 1.0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0:
        raise HotplugError('cpu_overcommit must be a number above 0, got %r' % (ratio,))
    return dict(allow_shrink=bool(settings.get('allow_shrink', True)),
                allow_migration=bool(settings.get('allow_migration', False)),
                ratio=float(ratio), reserve=int(settings.get('reserve_memory_mib') or 0))


class _Vm(object):
    __slots__ = ('name', 'vcpus', 'floor_vcpus', 'removable', 'memory', 'floor_memory', 'dimm', 'pinned', 'concerned')

    def __init__(self, raw, cpus_offline):
        self.name = raw['name']
        self.vcpus = int(raw['vcpus'])
        fixed = int(raw.get('fixed_vcpus') or 1)
        removable = raw.get('removable_vcpus')
        # the vCPUs a shrink may remove, in the order it removes them (default: the highest ids above the fixed ones)
        self.removable = list(range(self.vcpus - 1, fixed - 1, -1)) if removable is None else list(removable)
        minimum = raw.get('min_vcpus')
        # without a declared minimum a VM is never shrunk
        self.floor_vcpus = self.vcpus if minimum is None else min(
            self.vcpus, max(int(minimum), fixed, self.vcpus - len(self.removable)))
        self.memory = int(raw.get('memory_mib') or 0)
        self.dimm = int(raw.get('dimm_mib') or 0)
        min_memory = raw.get('min_memory_mib')
        if min_memory is None or not self.dimm:
            self.floor_memory = self.memory
        else:
            removable = int(raw.get('removable_dimms') or 0)
            whole = min(removable, max(0, self.memory - int(min_memory)) // self.dimm)
            self.floor_memory = self.memory - whole * self.dimm
        self.pinned = bool(raw.get('vcpus_pinned'))
        self.concerned = bool(set(raw.get('pinned_cpus') or ()) & set(cpus_offline))


def plan_isolation(host, vms, settings=None):
    conf = _settings(settings)
    offline = set(host.get('cpus_offline') or ())
    online_after = sorted(set(host.get('online_cpus') or ()) - offline)
    if offline and not online_after:
        raise HotplugError('the host would have no online CPU left: CPUs %s are all it has online'
                           % ', '.join(str(c) for c in sorted(offline)))
    parsed = sorted((_Vm(raw, offline) for raw in vms or ()), key=lambda vm: vm.name)
    capacity = int(len(online_after) * conf['ratio'])
    vcpus = dict((vm.name, vm.vcpus) for vm in parsed)
    memory = dict((vm.name, vm.memory) for vm in parsed)
    leaving = []

    def cpu_load():
        return sum(vcpus[vm.name] for vm in parsed if vm.pinned and vm.name not in leaving)

    free_now = int(host.get('free_memory_mib') or 0)
    removed = int(host.get('blocks_offline_mib') or 0)

    def free_after():
        given = sum(vm.memory - memory[vm.name] for vm in parsed if vm.name not in leaving)
        gone = sum(memory[vm.name] for vm in parsed if vm.name in leaving)
        return free_now - removed + given + gone

    def cpus_ok():
        return not offline or cpu_load() <= capacity

    def memory_ok():
        return not removed or free_after() >= conf['reserve']

    load_before = cpu_load()
    if conf['allow_shrink']:
        for vm in sorted(parsed, key=lambda vm: (not vm.concerned, vm.name)):
            if cpus_ok():
                break
            if vm.pinned:
                vcpus[vm.name] = max(vm.floor_vcpus, vcpus[vm.name] - (cpu_load() - capacity))
        for vm in sorted(parsed, key=lambda vm: (not vm.concerned, vm.name)):
            if memory_ok():
                break
            if vm.dimm:
                short = conf['reserve'] - free_after()
                dimms = -(-short // vm.dimm)  # whole DIMMs, rounded up
                memory[vm.name] = max(vm.floor_memory, memory[vm.name] - dimms * vm.dimm)
    if conf['allow_migration']:
        for vm in sorted(parsed, key=lambda vm: (not vm.concerned, -vm.vcpus if vm.pinned else 0, vm.name)):
            if cpus_ok() and memory_ok():
                break
            if (not cpus_ok() and vm.pinned) or not memory_ok():
                leaving.append(vm.name)
                vcpus[vm.name], memory[vm.name] = vm.vcpus, vm.memory   # a VM that leaves is not shrunk too
    problems = []
    if not cpus_ok():
        problems.append('the pinned VMs would have %d vCPUs on the %d CPUs that stay online (%s), above the %d '
                        'they may have (cpu_overcommit %s)'
                        % (cpu_load(), len(online_after), ','.join(str(c) for c in online_after), capacity,
                           conf['ratio']))
    if not memory_ok():
        problems.append('the host would have %d MiB free after its %d MiB of memory blocks go, below the reserve of '
                        '%d MiB' % (free_after(), removed, conf['reserve']))
    refusal = None
    if problems:
        forbidden = [words for words, allowed in (('shrinking is not allowed', conf['allow_shrink']),
                                                  ('migration is not allowed', conf['allow_migration'])) if not allowed]
        refusal = '; '.join(problems) + (' (%s)' % ' and '.join(forbidden) if forbidden else '')
    shrink = [dict(name=vm.name, vcpus=vcpus[vm.name], memory_mib=memory[vm.name],
                   vcpus_off=vm.removable[:vm.vcpus - vcpus[vm.name]], before=dict(vcpus=vm.vcpus, memory_mib=vm.memory))
              for vm in parsed if vm.name not in leaving and (vcpus[vm.name], memory[vm.name]) != (vm.vcpus, vm.memory)]
    shrunk = set(s['name'] for s in shrink)
    what = {}
    for vm in parsed:
        if vm.name in leaving:
            what[vm.name] = 'migrate'
        elif vm.name in shrunk:
            what[vm.name] = 'shrink' + (' and re-pin' if vm.concerned else '')
        elif vm.concerned:
            what[vm.name] = 're-pin'
        else:
            what[vm.name] = 'unchanged'
    return dict(
        feasible=refusal is None, refusal=refusal,
        repin=[vm.name for vm in parsed if vm.concerned and vm.name not in leaving],
        shrink=shrink, migrate=sorted(leaving),
        limits=dict(cpus=dict(capacity=capacity, online_after=online_after, load_before=load_before,
                              load_after=cpu_load()),
                    memory=dict(free_now=free_now, removed=removed, free_after=free_after(),
                                reserve=conf['reserve'])),
        vms=what,
    )
