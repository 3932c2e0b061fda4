# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""hypervisor_migration's plan (issue 10): which VMs stay on a host that loses components, which leave and where.

plan_hypervisor_evacuation(source, components, destinations, settings) is pure (no libvirt, no clock, no randomness) and
deterministic: the same facts give the same plan whatever the order of the source's domains; destinations are
tried in the order given only to break ties.  It plans the whole move at once, or refuses it (HotplugError)
before anything moves.  It reuses host_resource_offline's plan (_host/plan.py: unknown ids, CPUs the kernel does
not let go offline such as cpu0, the last online CPU, memory blocks that are not removable) and domain_migrate's
pre-checks of a destination (_migrate/plan.py: CPU comparison, free memory, pinned CPUs online; the vCPU maximum
of _libvirt/definition_check.py).

Input (plain dicts; cpulists are "0-3,8" strings or lists of ids; mapping keys may be ints or digit strings,
as JSON gives them):

source
    name                    the host's name (messages, restore records)
    cpus                    every CPU id the host has (optional; default: online, fixed and the nodes' CPUs)
    online_cpus             the online CPUs (host_resource_info cpus / virNodeGetCPUMap)
    fixed_cpus              CPUs the kernel offers no cpuN/online for (host_resource_info hotpluggable: false);
                            default "0", cpu0 on x86
    isolated_cpus           isolcpus= (optional)
    free_memory_mib         the host's free memory now (virNodeGetFreeMemory); needed when memory blocks go
    memory_block_mib        the block size (default 128); a block may say its own size_mib
    memory_blocks           {id: {online, removable, node, zones (valid_zones words), size_mib}}
    numa_nodes              {id: {cpus, free_mib (node meminfo MemFree)}}; a node's blocks are the blocks naming it
    domains                 the running domains, each:
        name, vcpus (current), vcpus_max, memory_mib (what a destination must have free: boot memory plus
        hot-added, _migrate/facts.py needed_memory_kib), hotplugged_mib (of which hot-added; default 0),
        resident_mib (what leaving frees on the source; default memory_mib), vcpupin {vcpu: cpulist},
        cpuset (<vcpu cpuset>), emulatorpin, iothreadpin {id: cpulist}, numatune {mode, nodeset,
        memnodes {cell: cpulist}}, cpu_model (the key the destinations' cpu_compare is keyed by: one per distinct
        <cpu> definition), machine (the key of a per-machine vcpu_max), persistent

components
    {cpus, memory_blocks, numa_nodes} (cpulists; a node brings its CPUs and memory blocks), or 'all': every
    domain leaves and nothing is offlined (the host itself goes away)

destinations (ordered)
    name, cpus_total, cpus_free (CPUs not taken by guests' vCPUs: cpus_total - their vCPUs; may be negative),
    memory_free_mib, memory_total_mib (needed with memory_overcommit above 1), vcpu_max (int, or {machine: int};
    None: not known), machine / virt_type / emulator (for messages), cpu_compare {cpu_model: identical | superset |
    incompatible | not_compared} and cpu_detail {cpu_model: why} (_migrate/read.py compare_cpu), guests (how many
    it runs), online_cpus (checked for pinned domains when given), domains (names defined there, when given)

settings
    parallel (2: migrations out of the source at once), per_destination (2: into one destination at once),
    cpu_overcommit (1.0), memory_overcommit (1.0), reserve_memory_mib (0: kept free on every host),
    max_guests (None: a destination takes guests up to that count)

Capacities: a destination takes vCPUs up to floor(cpus_total * cpu_overcommit) - (cpus_total - cpus_free) and
memory up to memory_free_mib + floor((memory_overcommit - 1) * memory_total_mib) - reserve_memory_mib, less what
this plan has already put there; each placement is counted before the next VM is placed.

Staying (components other than 'all'; X = the CPUs that go offline, L = the NUMA nodes that go, ask for or lose
their last online CPU or memory block, because host_resource_offline refuses to take those from a node a running
domain's memory is bound to):

1. vCPUs: a vCPU's CPUs are its vcpupin, else the <vcpu cpuset>, else any CPU.  A domain with pinned vCPUs keeps
   the CPUs of its pinning that stay online (A); it stays only when A is not empty and
   len(A) * cpu_overcommit >= its pinned current vCPUs.  A pin that loses CPUs keeps its CPUs that stay online; a
   pin left with none moves to the CPU of A with the fewest of the domain's vCPU pins (then the lowest id).  A <vcpu cpuset>
   with no CPU left makes it leave (as host_resource_offline refuses it).  Emulator and iothread pins keep their
   online CPUs, else go to A, else to the online CPUs that are not isolated; they never make a domain leave.
2. memory: numatune mode strict, restrictive or interleave binds memory.  Bound to nodes of L only: it leaves.
   Bound to some nodes of L: it leaves too, in every binding mode.  libvirt could narrow a strict or restrictive
   nodeset of a running domain, but no step of the evacuation does (host_resource_offline refuses to take the
   last memory of a node a running domain is bound to), so a plan to stay would stop the run after the
   migrations; a <memnode> on a node of L leaves (it cannot change while the domain runs).  preferred never
   binds.  A domain whose bound memory loses blocks offlined within its nodes (none of them in L) stays only if
   those nodes, after offlining, have free memory for all of it that could be there: min(memory_mib, what its
   nodes lose); that is taken from their free memory (nodes in id order) before the next domain.
3. the host: when CPUs go offline, the staying domains' vCPUs must fit floor(len(online after) * cpu_overcommit);
   when memory blocks go offline, free_memory_mib - their size + what the leaving domains free (resident_mib) must
   stay at reserve_memory_mib or above.  Until both hold, more domains leave, in placement order.

Leaving domains are placed largest first (memory_mib, then vCPUs, then name), each on the destination with the
most memory left that passes every check (ties: the first in the destinations' order).  Waves: in the same order,
each migration goes into the first wave that has fewer than `parallel` migrations and fewer than
`per_destination` into its destination.  One VM that fits nowhere refuses the whole plan: HotplugError naming it
and its limit, with every unplaceable VM and its reasons (grouped by check, with the destinations) in details.

Result: {source, stay: [{name, pinning, notes}], leave: [{name, destination, reason, wave, vcpus,
memory_mib, persistent}], waves: [[{name, destination}]], offline: {cpus, memory_blocks, numa_nodes}, destinations:
{name: {vcpus, memory_mib, guests}} (what the plan adds)}; lists sorted by name or id.  plan_is_empty(plan) says
whether there is anything to do (changed: false).  plan_restore(record, locations) lists the migrations back.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import functools
import heapq

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_id_list
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._host.evacuation import BINDING_MODES
from ansible_collections.kvm.hotplug.plugins.module_utils._host.plan import plan_host_change, resolve_components
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import (
    Cpu, HostSnapshot, MemoryBlock, MemoryLayout, Node,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_check import (
    DomainCapabilities, vcpu_max_problem,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.plan import (
    Checks, check_cpu, check_free_memory, check_pinned_cpus,
)

ALL = 'all'
COMPONENT_KEYS = ('cpus', 'memory_blocks', 'numa_nodes')
DEFAULT_BLOCK_MIB = 128
MIB = 1024 * 1024
_NO_LIMIT = 'no destination was given'


# --------------------------------------------------------------------------
# input

def _whole(value, what, low=None):
    if value.__class__ is int and (low is None or value >= low):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        elif isinstance(value, float) and value == int(value):
            value = int(value)
        else:
            raise HotplugError('%s must be a whole number, got %r' % (what, value))
    if low is not None and value < low:
        raise HotplugError('%s must be at least %d, got %d' % (what, low, value))
    return value


def _optional_whole(value, what, low=None):
    return None if value is None else _whole(value, what, low)


def _ratio(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise HotplugError('%s must be a number above 0, got %r' % (what, value))
    return float(value)


def _ids(value, what):
    """Sorted id tuple of a cpulist string or a list of ids (_common/cpulist.py parse_id_list)."""
    if value is None:
        return ()
    if value.__class__ is str:                  # the common cases first: the planner runs over whole hosts
        if value.isdigit():
            return (int(value),)
        return _text_ids(value, what)
    if value.__class__ is list and all(i.__class__ is int and i >= 0 for i in value):
        return tuple(sorted(set(value)))
    return _parse_ids(value, what)


@functools.lru_cache(maxsize=4096)
def _text_ids(text, what):
    """The same cpulist strings come back for many domains ("0-31", "4-5"): each is parsed once."""
    return () if not text.strip() else _parse_ids(text, what)


def _parse_ids(value, what):
    try:
        return parse_id_list(value, what)[0]
    except ValueError as exc:
        raise HotplugError('%s; nothing was moved' % exc)


def _keyed(mapping, what):
    """{int: value} of a mapping whose keys are ints or digit strings (JSON gives strings)."""
    if not mapping:
        return {}
    if not isinstance(mapping, dict):
        raise HotplugError('%s must be a mapping of ids, got %r' % (what, mapping))
    return dict((_whole(key, '%s id' % what, 0), value) for key, value in mapping.items())


def _settings(settings):
    settings = settings or {}
    unknown = sorted(set(settings) - {'parallel', 'per_destination', 'cpu_overcommit', 'memory_overcommit',
                                      'reserve_memory_mib', 'max_guests'})
    if unknown:
        raise HotplugError('unknown evacuation setting %s' % ', '.join(unknown))
    get = settings.get
    return dict(parallel=_whole(get('parallel', 2), 'parallel', 1),
                per_destination=_whole(get('per_destination', 2), 'per_destination', 1),
                cpu_ratio=_ratio(get('cpu_overcommit', 1.0), 'cpu_overcommit'),
                memory_ratio=_ratio(get('memory_overcommit', 1.0), 'memory_overcommit'),
                reserve=_whole(get('reserve_memory_mib', 0) or 0, 'reserve_memory_mib', 0),
                max_guests=_optional_whole(get('max_guests'), 'max_guests', 1))


class _Vm(object):
    """One running domain of the source, parsed once."""
    __slots__ = ('name', 'vcpus', 'vcpus_max', 'memory', 'plugged', 'resident', 'vcpupin', 'cpuset', 'emulatorpin',
                 'iothreadpin', 'mode', 'nodeset', 'memnodes', 'cpu_model', 'machine', 'persistent', 'key',
                 'pinned_cpus')

    def __init__(self, raw):
        name = raw.get('name')
        if not isinstance(name, str) or not name:
            raise HotplugError('every domain of the source needs a name, got %r' % (name,))
        self.name = name
        what = 'domain %s ' % name
        self.vcpus = _whole(raw.get('vcpus'), what + 'vcpus', 1)
        self.vcpus_max = max(self.vcpus, _whole(raw.get('vcpus_max', self.vcpus), what + 'vcpus_max', 1))
        self.memory = _whole(raw.get('memory_mib'), what + 'memory_mib', 0)
        self.plugged = min(self.memory, _whole(raw.get('hotplugged_mib', 0) or 0, what + 'hotplugged_mib', 0))
        resident = raw.get('resident_mib')
        self.resident = self.memory if resident is None else _whole(resident, what + 'resident_mib', 0)
        self.vcpupin = dict((v, _ids(c, what + 'vcpupin')) for v, c in _keyed(raw.get('vcpupin'), what + 'vCPU').items())
        cpuset = raw.get('cpuset')
        self.cpuset = _ids(cpuset, what + 'cpuset') if cpuset not in (None, '') else None
        emulator = raw.get('emulatorpin')
        self.emulatorpin = _ids(emulator, what + 'emulatorpin') if emulator not in (None, '') else None
        self.iothreadpin = dict((i, _ids(c, what + 'iothreadpin'))
                                for i, c in _keyed(raw.get('iothreadpin'), what + 'iothread').items())
        numatune = raw.get('numatune') or {}
        self.mode = numatune.get('mode') or 'strict'
        self.nodeset = _ids(numatune.get('nodeset'), what + 'numatune nodeset')
        self.memnodes = dict((c, _ids(n, what + 'memnode nodeset'))
                             for c, n in _keyed(numatune.get('memnodes'), what + 'memnode cell').items())
        self.cpu_model = raw.get('cpu_model')
        self.machine = raw.get('machine')
        self.persistent = bool(raw.get('persistent', True))
        self.key = (-self.memory, -self.vcpus, name)
        cpus = set()
        for pin in self.vcpupin.values():
            cpus.update(pin)
        for pin in (self.cpuset, self.emulatorpin):
            cpus.update(pin or ())
        for pin in self.iothreadpin.values():
            cpus.update(pin)
        self.pinned_cpus = tuple(sorted(cpus))


def _source_host(source):
    """The source as host_resource_offline's planner sees it (_host/sysfs.py HostSnapshot)."""
    online = set(_ids(source.get('online_cpus'), 'source online_cpus'))
    fixed = set(_ids(source.get('fixed_cpus', '0'), 'source fixed_cpus'))
    nodes_raw = _keyed(source.get('numa_nodes'), 'NUMA node')
    node_cpus = dict((n, _ids((raw or {}).get('cpus'), 'NUMA node %d cpus' % n)) for n, raw in nodes_raw.items())
    every = set(_ids(source.get('cpus'), 'source cpus')) | online | fixed
    for cpus in node_cpus.values():
        every.update(cpus)
    node_of = {}
    for node_id in sorted(node_cpus):
        for cpu in node_cpus[node_id]:
            node_of.setdefault(cpu, node_id)
    cpus = dict((c, Cpu(id=c, online=c in online, hotpluggable=c not in fixed, node=node_of.get(c), core_id=None,
                        package_id=None, die_id=None, thread_siblings=None)) for c in sorted(every))
    default_mib = _whole(source.get('memory_block_mib', DEFAULT_BLOCK_MIB), 'memory_block_mib', 1)
    blocks_raw = source.get('memory_blocks') or {}
    if not isinstance(blocks_raw, dict):
        raise HotplugError('memory_blocks must be a mapping of ids, got %r' % (blocks_raw,))
    blocks = {}
    node_blocks = {}
    for key, raw in blocks_raw.items():      # a big host has tens of thousands: the common case first
        if key.__class__ is str and key.isdigit():
            block_id = int(key)
        else:
            block_id = key if key.__class__ is int and key >= 0 else _whole(key, 'memory block id', 0)
        get = (raw or {}).get
        removable = get('removable')
        node = get('node')
        if node is not None and node.__class__ is not int:
            node = _whole(node, 'memory block %d node' % block_id, 0)
        size = get('size_mib')
        size = default_mib if size is None else _whole(size, 'memory block %d size_mib' % block_id, 1)
        zones = get('zones')
        blocks[block_id] = MemoryBlock(
            id=block_id, state='online' if get('online', True) else 'offline',
            removable=None if removable is None else bool(removable), valid_zones=tuple(zones) if zones else (),
            node=node, phys_index=block_id, phys_device=None, block_size=size * MIB)
        node_blocks.setdefault(node, []).append(block_id)
    nodes = {}
    for node_id in sorted(set(nodes_raw) | set(n for n in node_blocks if n is not None)):
        raw = nodes_raw.get(node_id) or {}
        free = raw.get('free_mib')
        mine = node_cpus.get(node_id, ())
        nodes[node_id] = Node(id=node_id, cpus=mine, online_cpus=tuple(c for c in mine if c in online),
                              memory_blocks=tuple(sorted(node_blocks.get(node_id, ()))), mem_total_kib=None,
                              mem_free_kib=None if free is None else _whole(free, 'node free_mib', 0) * 1024)
    memory = MemoryLayout(available=bool(blocks), block_size=default_mib * MIB, auto_online_blocks=None, blocks=blocks)
    return HostSnapshot(cpus=cpus, memory=memory, nodes=nodes,
                        isolated=_ids(source.get('isolated_cpus'), 'source isolated_cpus'),
                        possible=tuple(sorted(every)), present=tuple(sorted(every)))


class _Dest(object):
    __slots__ = ('name', 'order', 'cpu_left', 'mem_left', 'guests', 'vcpu_max', 'caps', 'cpu_compare', 'cpu_detail',
                 'online_cpus', 'domains', 'added_vcpus', 'added_mib', 'added_guests', 'platform',
                 'online_set')

    def __init__(self, raw, order, conf):
        name = raw.get('name')
        if not isinstance(name, str) or not name:
            raise HotplugError('every destination needs a name, got %r' % (name,))
        what = 'destination %s ' % name
        self.name = name
        self.order = order
        free = _whole(raw.get('cpus_free'), what + 'cpus_free')
        total = raw.get('cpus_total')
        if total is None and conf['cpu_ratio'] != 1.0:
            raise HotplugError('%s needs cpus_total for cpu_overcommit %s' % (what.strip(), conf['cpu_ratio']))
        total = free if total is None else _whole(total, what + 'cpus_total', 0)
        self.cpu_left = int(total * conf['cpu_ratio']) - (total - free)
        mem_free = _whole(raw.get('memory_free_mib'), what + 'memory_free_mib', 0)
        mem_total = raw.get('memory_total_mib')
        if mem_total is None and conf['memory_ratio'] != 1.0:
            raise HotplugError('%s needs memory_total_mib for memory_overcommit %s' % (what.strip(), conf['memory_ratio']))
        extra = 0 if mem_total is None else int((conf['memory_ratio'] - 1.0) * _whole(mem_total, what + 'memory_total_mib', 0))
        self.mem_left = mem_free + extra - conf['reserve']
        self.guests = _whole(raw.get('guests', 0) or 0, what + 'guests', 0)
        vcpu_max = raw.get('vcpu_max')
        if isinstance(vcpu_max, dict):
            self.vcpu_max = dict((k, _optional_whole(v, what + 'vcpu_max', 1)) for k, v in vcpu_max.items())
        else:
            self.vcpu_max = _optional_whole(vcpu_max, what + 'vcpu_max', 1)
        self.caps = {}
        self.cpu_compare = raw.get('cpu_compare') or {}
        self.cpu_detail = raw.get('cpu_detail') or {}
        online = raw.get('online_cpus')
        self.online_cpus = None if online is None else _ids(online, what + 'online_cpus')
        self.online_set = frozenset(self.online_cpus or ())
        self.domains = frozenset(raw.get('domains') or ())
        self.added_vcpus = self.added_mib = self.added_guests = 0
        self.platform = (raw.get('machine'), raw.get('virt_type'), raw.get('emulator'))

    def capabilities(self, machine):
        """The DomainCapabilities (vCPU limit) a domain of this machine type gets here, made once per machine."""
        caps = self.caps.get(machine)
        if caps is None:
            limit = self.vcpu_max.get(machine) if isinstance(self.vcpu_max, dict) else self.vcpu_max
            default_machine, virt_type, emulator = self.platform
            caps = self.caps[machine] = DomainCapabilities(
                emulator=emulator, arch=None, machine=machine or default_machine, virt_type=virt_type, vcpu_max=limit,
                memory_backing=None, memory_models=None)
        return caps


# --------------------------------------------------------------------------
# which domains can stay

class _Stay(object):
    __slots__ = ('vm', 'pinning', 'notes', 'relocate')

    def __init__(self, vm):
        self.vm = vm
        self.pinning = {}
        self.notes = []
        self.relocate = None        # (nodes, MiB) the bound memory may need there


def _repin_thread(cpus, online, allowed, online_left):
    left = tuple(c for c in cpus if c in online)
    return left or allowed or online_left


def _judge_cpus(vm, stay, removed, online, cpu_ratio, isolated):
    """The reasons (a list) the domain's pinning cannot stay once `removed` go offline; fills stay.pinning."""
    if not removed or not vm.pinned_cpus or not any(c in removed for c in vm.pinned_cpus):
        return []
    reasons = []
    cpuset = vm.cpuset
    if cpuset is not None and removed & set(cpuset) and not any(c in online for c in cpuset):
        reasons.append('its <vcpu cpuset> %s has no CPU left once CPU %s go offline'
                       % (format_cpulist(cpuset), format_cpulist(sorted(removed & set(cpuset)))))
    union = set()
    counted = 0
    for vcpu in range(vm.vcpus_max):
        pin = vm.vcpupin.get(vcpu, cpuset)
        if pin is None:
            continue
        union.update(pin)
        if vcpu < vm.vcpus:
            counted += 1
    allowed = tuple(sorted(c for c in union if c in online))
    if union and union & removed:
        if not allowed:
            reasons.append('its vCPUs are pinned to CPU %s, which all go offline' % format_cpulist(sorted(union)))
        elif len(allowed) * cpu_ratio < counted:
            reasons.append('%d pinned vCPUs keep only CPU %s of their pinning %s (cpu_overcommit %s)'
                           % (counted, format_cpulist(allowed), format_cpulist(sorted(union)), cpu_ratio))
    if reasons:
        return reasons
    pinning = stay.pinning
    new_pins = {}
    homeless = []
    load = dict((c, 0) for c in allowed)
    for vcpu in sorted(vm.vcpupin):
        pin = vm.vcpupin[vcpu]
        touched = removed & set(pin)
        left = tuple(c for c in pin if c in online) if touched else pin
        if not left:
            homeless.append(vcpu)
            continue
        if touched:
            new_pins[vcpu] = left
        for cpu in left:
            if cpu in load:
                load[cpu] += 1
    for vcpu in homeless:
        cpu = min(allowed, key=lambda c: (load[c], c))
        load[cpu] += 1
        new_pins[vcpu] = (cpu,)
    if new_pins:
        pinning['vcpupin'] = dict((str(v), format_cpulist(p)) for v, p in sorted(new_pins.items()))
    if cpuset is not None and removed & set(cpuset):
        pinning['cpuset'] = format_cpulist(c for c in cpuset if c in online)
    online_left = tuple(sorted(c for c in online if c not in isolated)) or tuple(sorted(online))
    if vm.emulatorpin and removed & set(vm.emulatorpin):
        pinning['emulatorpin'] = format_cpulist(_repin_thread(vm.emulatorpin, online, allowed, online_left))
    moved = dict((str(i), format_cpulist(_repin_thread(p, online, allowed, online_left)))
                 for i, p in sorted(vm.iothreadpin.items()) if removed & set(p))
    if moved:
        pinning['iothreadpin'] = moved
    return []


def _judge_memory(vm, stay, lost_nodes, node_total, removed_mib):
    """The reasons the domain's bound memory cannot stay; fills stay.relocate."""
    reasons = []
    for cell, nodes in sorted(vm.memnodes.items()):
        gone = [n for n in nodes if n in lost_nodes]
        if gone:
            reasons.append('the memory of its guest NUMA cell %d is bound to host node %s, which goes offline (a '
                           '<memnode> cannot change while the domain runs)' % (cell, format_cpulist(gone)))
    nodeset = vm.nodeset
    if not nodeset:
        return reasons
    gone = [n for n in nodeset if n in lost_nodes]
    kept = tuple(n for n in nodeset if n not in lost_nodes)
    if vm.mode not in BINDING_MODES:
        if gone:
            stay.notes.append('numatune %s prefers NUMA node %s, which goes offline; the kernel allocates elsewhere'
                              % (vm.mode, format_cpulist(gone)))
        return reasons
    if gone and not kept:
        reasons.append('its memory is bound (numatune %s) to NUMA node %s only, which goes offline'
                       % (vm.mode, format_cpulist(nodeset)))
    elif gone:
        # The nodeset is never narrowed in place (see the module docstring): the VM leaves whole.
        reasons.append('its memory is bound (numatune %s) to NUMA nodes %s and node %s goes offline; a running '
                       "domain's nodeset is not narrowed, it moves"
                       % (vm.mode, format_cpulist(nodeset), format_cpulist(gone)))
    if reasons:
        return reasons
    losing = sum(node_total.get(n, 0) for n in gone) + sum(removed_mib.get(n, 0) for n in kept)
    if losing:
        stay.relocate = (kept, min(vm.memory, losing))
    return reasons


def _decide(vms, host, host_plan, lost_nodes, source, conf):
    """(stays, leaves): _Stay objects and {name: [reasons]}, in placement order."""
    removed = set(host_plan.cpus_change) if host_plan else set()
    online = set(host_plan.online_cpus_after) if host_plan else set(host.online_cpus)
    blocks = host.memory.blocks
    gone_blocks = host_plan.blocks_change if host_plan else ()
    removed_mib = {}
    for block_id in gone_blocks:
        block = blocks[block_id]
        removed_mib[block.node] = removed_mib.get(block.node, 0) + block.block_size // MIB
    node_total = {}
    for block in blocks.values():
        if block.online and block.node is not None:
            node_total[block.node] = node_total.get(block.node, 0) + block.block_size // MIB
    node_free = dict((n, None if node.mem_free_kib is None else node.mem_free_kib // 1024 - removed_mib.get(n, 0))
                     for n, node in host.nodes.items())
    isolated = set(host.isolated)
    stays, leaves = [], {}
    check_cpus, check_memory = bool(removed), bool(lost_nodes) or bool(gone_blocks)
    for vm in vms:
        stay = _Stay(vm)
        reasons = []
        if check_cpus:
            reasons = _judge_cpus(vm, stay, removed, online, conf['cpu_ratio'], isolated)
        if check_memory:
            reasons += _judge_memory(vm, stay, lost_nodes, node_total, removed_mib)
        if not reasons and stay.relocate:
            nodes, need = stay.relocate  # pylint: disable=unpacking-non-sequence  # a tuple once set
            unknown = [n for n in nodes if node_free.get(n) is None]
            room = sum(max(0, node_free[n]) for n in nodes if node_free.get(n) is not None)
            if need > room:
                reasons.append('up to %d MiB of its memory bound to NUMA node %s must move within them; they have %d '
                               'MiB free once the memory blocks go offline%s'
                               % (need, format_cpulist(nodes), room,
                                  ' (node %s did not say)' % format_cpulist(unknown) if unknown else ''))
            else:
                for node in nodes:
                    if node_free.get(node) is None or node_free[node] <= 0:
                        continue
                    take = min(need, node_free[node])
                    node_free[node] -= take
                    need -= take
        if reasons:
            leaves[vm.name] = reasons
        else:
            stays.append(stay)
    _fit_host(stays, leaves, vms, online, removed, gone_blocks, removed_mib, source, conf)
    return stays, leaves


def _fit_host(stays, leaves, vms, online, removed, gone_blocks, removed_mib, source, conf):
    """Host-wide capacity of what stays; more domains leave (placement order) until it holds."""
    cpu_room = int(len(online) * conf['cpu_ratio']) if removed else None
    memory_room = None
    if gone_blocks:
        free = source.get('free_memory_mib')
        if free is None:
            raise HotplugError('the source %s did not say its free memory (free_memory_mib), which offlining memory '
                               'blocks needs; nothing was moved' % source.get('name'))
        memory_room = (_whole(free, 'source free_memory_mib', 0) - sum(removed_mib.values()) - conf['reserve']
                       + sum(vm.resident for vm in vms if vm.name in leaves))
    used = sum(s.vm.vcpus for s in stays)
    blocks_text = '%d memory block%s (%d MiB)' % (len(gone_blocks), '' if len(gone_blocks) == 1 else 's',
                                                  sum(removed_mib.values()))
    index = 0
    while index < len(stays):
        cpu_short = cpu_room is not None and used > cpu_room
        memory_short = memory_room is not None and memory_room < 0
        if not cpu_short and not memory_short:
            break
        stay = stays[index]
        why = []
        if cpu_short:
            why.append('the %d CPUs that stay online (cpu_overcommit %g: %d vCPUs) cannot hold the %d vCPUs of the '
                       'domains that would stay' % (len(online), conf['cpu_ratio'], cpu_room, used))
        if memory_short:
            why.append('the source would lack %d MiB once %s go offline (reserve %d MiB)'
                       % (-memory_room, blocks_text, conf['reserve']))
        leaves[stay.vm.name] = why
        used -= stay.vm.vcpus
        if memory_room is not None:
            memory_room += stay.vm.resident
        index += 1
    del stays[:index]


# --------------------------------------------------------------------------
# where the others go

def _first_failure(checks):
    for name, check in checks.checks.items():
        if check['ok'] is False:
            return name, check['limit']
    return None


def _try(vm, dest, conf):
    """domain_migrate's pre-checks of dest for vm, with what this plan has placed there: None, or (check, limit)."""
    checks = Checks('domain %s to %s' % (vm.name, dest.name))
    name = vm.name
    if name in dest.domains:
        checks.add('name_uuid', False, limit='another domain named %s is defined on the destination' % name)
    check_cpu(checks, dest.cpu_compare.get(vm.cpu_model) if vm.cpu_model is not None else None,
              dest.cpu_detail.get(vm.cpu_model) if vm.cpu_model is not None else 'the domain names no CPU model',
              name)
    problem = vcpu_max_problem(vm.vcpus_max, dest.capabilities(vm.machine))
    checks.add('vcpu_max', problem is None, value=vm.vcpus_max,
               limit='the definition of domain %s would not start on the destination: %s' % (name, problem))
    check_free_memory(checks, (vm.memory - vm.plugged) * 1024, vm.plugged * 1024, dest.mem_left * 1024, name)
    checks.add('cpus', vm.vcpus <= dest.cpu_left, value=dict(vcpus=vm.vcpus, room=dest.cpu_left),
               limit='domain %s needs %d vCPUs, the destination has room for %d more (cpu_overcommit %s)'
                     % (name, vm.vcpus, dest.cpu_left, conf['cpu_ratio']))
    if vm.pinned_cpus and dest.online_cpus is not None and not dest.online_set.issuperset(vm.pinned_cpus):
        check_pinned_cpus(checks, vm.pinned_cpus, dest.online_cpus, name)     # (only called when it refuses)
    if conf['max_guests'] is not None:
        checks.add('guests', dest.guests < conf['max_guests'], value=dest.guests,
                   limit='the destination runs %d guests, max_guests is %d' % (dest.guests, conf['max_guests']))
    return _first_failure(checks)


def _place(leaving, dests, conf):
    """{name: destination} for every placeable VM (largest first), and {name: [(check, limit, dest)]} for the rest."""
    heap = [(-d.mem_left, d.order, d) for d in dests]
    heapq.heapify(heap)
    placed = {}
    failed = {}
    for vm in leaving:
        tried = []
        target = None
        while heap:
            entry = heapq.heappop(heap)
            dest = entry[2]
            failure = _try(vm, dest, conf)
            if failure is None:
                target = dest
                break
            tried.append((entry, failure))
        for entry, _failure in tried:
            heapq.heappush(heap, entry)
        if target is None:
            failed[vm.name] = [(check, limit, entry[2].name) for entry, (check, limit) in tried] or \
                [('destinations', _NO_LIMIT, None)]
            continue
        target.mem_left -= vm.memory
        target.cpu_left -= vm.vcpus
        target.guests += 1
        target.added_vcpus += vm.vcpus
        target.added_mib += vm.memory
        target.added_guests += 1
        placed[vm.name] = target
        heapq.heappush(heap, (-target.mem_left, target.order, target))
    return placed, failed


def _waves(order, placed, parallel, per_destination):
    """First fit in placement order: at most `parallel` per wave and `per_destination` into one destination."""
    waves = []
    counts = []
    first_open = 0
    start = {}
    where = {}
    for name in order:
        dest = placed[name].name
        index = max(first_open, start.get(dest, 0))
        while index < len(waves) and (len(waves[index]) >= parallel or counts[index].get(dest, 0) >= per_destination):
            index += 1
        if index == len(waves):
            waves.append([])
            counts.append({})
        waves[index].append(dict(name=name, destination=dest))
        counts[index][dest] = counts[index].get(dest, 0) + 1
        where[name] = index
        if counts[index][dest] >= per_destination:
            start[dest] = index + 1
        while first_open < len(waves) and len(waves[first_open]) >= parallel:
            first_open += 1
    for wave in waves:
        wave.sort(key=lambda m: m['name'])
    return waves, where


def _refusal(source_name, failed, vms_by_name, order):
    unplaceable = []
    for name in sorted(failed):
        groups = {}
        for check, limit, dest in failed[name]:
            group = groups.setdefault(check, dict(check=check, limit=limit, destinations=[]))
            if dest is not None:
                group['destinations'].append(dest)
        vm = vms_by_name[name]
        unplaceable.append(dict(name=name, vcpus=vm.vcpus, vcpus_max=vm.vcpus_max, memory_mib=vm.memory,
                                reasons=sorted(groups.values(), key=lambda g: g['check'])))
    first = next(n for n in order if n in failed)
    summary = []
    for group in next(u for u in unplaceable if u['name'] == first)['reasons']:
        dests = group['destinations']
        where = ('' if not dests else ' (%s)' % ', '.join(dests) if len(dests) <= 3
                 else ' (%d destinations, e.g. %s)' % (len(dests), dests[0]))
        summary.append('%s%s' % (group['limit'], where))
    others = [n for n in sorted(failed) if n != first]
    more = ''
    if others:
        more = '; %d more domain%s fit nowhere: %s%s' % (len(others), '' if len(others) == 1 else 's',
                                                         ', '.join(others[:5]), ', ...' if len(others) > 5 else '')
    return HotplugError('refusing to evacuate %s: domain %s fits no destination: %s%s; nothing was moved'
                        % (source_name, first, '; '.join(summary), more), unplaceable=unplaceable)


# --------------------------------------------------------------------------
# the plan

def plan_hypervisor_evacuation(source, components, destinations, settings=None):
    """The whole evacuation of `source` (see the module docstring), or HotplugError before anything moves."""
    conf = _settings(settings)
    source = source or {}
    source_name = source.get('name') or 'the source'
    vms = [_Vm(raw) for raw in source.get('domains') or ()]
    vms.sort(key=lambda vm: vm.key)
    vms_by_name = {}
    for vm in vms:
        if vm.name in vms_by_name:
            raise HotplugError('domain %s is listed twice in the source facts' % vm.name)
        vms_by_name[vm.name] = vm
    dests = [_Dest(raw or {}, order, conf) for order, raw in enumerate(destinations or ())]
    names = set()
    for dest in dests:
        if dest.name in names or dest.name == source.get('name'):
            raise HotplugError('destination %s is listed twice or is the source' % dest.name)
        names.add(dest.name)

    host_plan = None
    requested_nodes = ()
    if components == ALL:
        leaves = dict((vm.name, ['the whole host is evacuated (components: all)']) for vm in vms)
        stays = []
    else:
        if not isinstance(components, dict) or set(components) - set(COMPONENT_KEYS):
            raise HotplugError('components must be "all" or a mapping with %s, got %r'
                               % (', '.join(COMPONENT_KEYS), components))
        host = _source_host(source)
        cpu_ids, block_ids, requested_nodes = resolve_components(
            host, components.get('cpus'), components.get('memory_blocks'), components.get('numa_nodes'))
        if cpu_ids or block_ids:
            host_plan = plan_host_change(host, 'offline', cpu_ids, block_ids)
        lost = set(requested_nodes)
        if host_plan is not None:
            lost.update(host_plan.nodes_losing_cpus)
            lost.update(host_plan.nodes_losing_memory)
        stays, leaves = _decide(vms, host, host_plan, lost, source, conf)

    leaving = [vm for vm in vms if vm.name in leaves]
    placed, failed = _place(leaving, dests, conf)
    if failed:
        raise _refusal(source_name, failed, vms_by_name, [vm.name for vm in leaving])
    waves, wave_of = _waves([vm.name for vm in leaving], placed, conf['parallel'], conf['per_destination'])
    offline = dict(cpus=[], memory_blocks=[], numa_nodes=[])
    if host_plan is not None:
        offline = dict(cpus=sorted(host_plan.cpus_change), memory_blocks=sorted(host_plan.blocks_change),
                       numa_nodes=sorted(n for n in requested_nodes
                                         if set(host.nodes[n].online_cpus) & set(host_plan.cpus_change)
                                         or set(host.nodes[n].memory_blocks) & set(host_plan.blocks_change)))
    return dict(
        source=source.get('name'),
        stay=[dict(name=s.vm.name, pinning=s.pinning or None, notes=s.notes)
              for s in sorted(stays, key=lambda s: s.vm.name)],
        leave=[dict(name=vm.name, destination=placed[vm.name].name, reason='; '.join(leaves[vm.name]),
                    wave=wave_of[vm.name], vcpus=vm.vcpus, memory_mib=vm.memory, persistent=vm.persistent)
               for vm in sorted(leaving, key=lambda vm: vm.name)],
        waves=waves,
        offline=offline,
        destinations=dict((d.name, dict(vcpus=d.added_vcpus, memory_mib=d.added_mib, guests=d.added_guests))
                          for d in dests if d.added_guests),
    )


def plan_is_empty(plan):
    """True when the plan moves nothing, re-pins nothing and offlines nothing (the caller's changed: false)."""
    return not (plan['leave'] or any(plan['offline'].values())
                or any(s['pinning'] for s in plan['stay']))


def plan_restore(record, locations):
    """The migrations back after an evacuation.

    record: {domain: origin host} as the evacuation recorded it; locations: {host: [names of the domains running
    there]} now.  Only domains the record names, running exactly once, somewhere other than their origin, move
    back; the others are listed in `skipped` with the reason.  Returns {moves: [{name, source, destination}],
    skipped: [{name, reason}]}, sorted by name.
    """
    running = {}
    for host in sorted(locations or {}):
        for name in locations[host] or ():
            running.setdefault(name, []).append(host)
    moves, skipped = [], []
    for name in sorted(record or {}):
        origin = record[name]
        hosts = running.get(name, [])
        if len(hosts) != 1:
            skipped.append(dict(name=name, reason='runs on %s' % ', '.join(hosts) if hosts else 'runs nowhere'))
        elif hosts[0] == origin:
            skipped.append(dict(name=name, reason='already back on %s' % origin))
        else:
            moves.append(dict(name=name, source=hosts[0], destination=origin))
    return dict(moves=moves, skipped=skipped)
