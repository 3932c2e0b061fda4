# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Planning host CPU and memory block offlining/onlining.

plan_host_change() is pure: the host as read from sysfs plus the request give a
HostPlan, or a HotplugError listing every reason to refuse.  Nothing is written
before the plan exists; _host/apply.py then writes it.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_id_list
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import KERNEL_ZONES, MOVABLE_ZONE
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError

ONLINE_TYPES = ('auto', 'online', 'online_movable', 'online_kernel')


# --------------------------------------------------------------------------
# input: ids are plain numbers or ranges of them, nothing else

def parse_ids(value, what, limit):
    """Sorted ids from a list of ints/strings or a list string like "2-5,8" (_common/cpulist.py parse_id_list).

    Ranges are checked against `limit` (one more than the highest id the host has) before they are expanded.
    Returns (ids, unknown) where unknown are ids at or above the limit, as a list string.
    """
    try:
        return parse_id_list(value, what, limit, expected='a number or a range like "2-5" (only digits, "-" and ",")')
    except ValueError as exc:
        raise HotplugError('%s; nothing was changed' % exc)


# --------------------------------------------------------------------------
# the plan

@dataclass
class HostPlan:
    state: str                                  # offline | online
    cpus_requested: tuple = ()
    cpus_change: tuple = ()
    cpus_already: tuple = ()
    blocks_requested: tuple = ()
    blocks_change: tuple = ()                   # in the order they will be written
    blocks_already: tuple = ()
    block_online_state: dict = field(default_factory=dict)   # id -> word written to state when onlining
    block_zone_before: dict = field(default_factory=dict)    # id -> zone of a block about to go offline
    online_cpus_after: tuple = ()
    nodes_losing_cpus: tuple = ()               # nodes left without an online CPU by this plan
    nodes_losing_memory: tuple = ()             # nodes left without an online memory block by this plan
    numa_node: int | None = None

    @property
    def changes(self):
        return bool(self.cpus_change or self.blocks_change)


def resolve_request(host, cpus, memory_blocks, numa_node):
    """Turn the options into (cpu ids, block ids, node id), refusing unknown or malformed ids."""
    problems = []
    cpu_limit = max(host.cpus) + 1 if host.cpus else 0
    block_limit = max(host.memory.blocks) + 1 if host.memory.blocks else 0
    cpu_ids, cpu_unknown = parse_ids(cpus, 'CPU', cpu_limit)
    block_ids, block_unknown = parse_ids(memory_blocks, 'memory block', block_limit)
    missing_cpus = [c for c in cpu_ids if c not in host.cpus]
    missing_blocks = [b for b in block_ids if b not in host.memory.blocks]
    if cpu_unknown or missing_cpus:
        problems.append('unknown CPU %s (the host has CPUs %s)'
                        % (','.join(x for x in (format_cpulist(missing_cpus), cpu_unknown) if x),
                           format_cpulist(host.cpus) or 'none'))
    if block_unknown or missing_blocks:
        problems.append('unknown memory block %s (the host has blocks %s)'
                        % (','.join(x for x in (format_cpulist(missing_blocks), block_unknown) if x),
                           format_cpulist(host.memory.blocks) or 'none'))
    node_id = None
    if numa_node is not None:
        if isinstance(numa_node, bool) or not (isinstance(numa_node, int) or
                                               (isinstance(numa_node, str) and re.match(r'^[0-9]+$', numa_node.strip()))):
            raise HotplugError('numa_node %r is not a number; nothing was changed' % (numa_node,))
        node_id = int(numa_node)
        if node_id not in host.nodes:
            problems.append('unknown NUMA node %d (the host has nodes %s)'
                            % (node_id, format_cpulist(host.nodes) or 'none'))
        else:
            node = host.nodes[node_id]
            cpu_ids = tuple(sorted(set(cpu_ids) | set(node.cpus)))
            block_ids = tuple(sorted(set(block_ids) | set(node.memory_blocks)))
    if problems:
        raise HotplugError('; '.join(problems) + '; nothing was changed', refusals=problems)
    return cpu_ids, block_ids, node_id


def resolve_components(host, cpus, memory_blocks, numa_nodes):
    """(cpu ids, block ids, node ids) of the components several NUMA nodes and ids name together, each node bringing
    its CPUs and memory blocks (resolve_request for the ids); an unknown node is refused."""
    cpu_ids, block_ids, _node = resolve_request(host, cpus, memory_blocks, None)
    node_ids = parse_ids(numa_nodes, 'NUMA node', None)[0]
    missing = [n for n in node_ids if n not in host.nodes]
    if missing:
        raise HotplugError('unknown NUMA node %s (the host has nodes %s); nothing was changed'
                           % (format_cpulist(missing), format_cpulist(host.nodes) or 'none'))
    cpu_ids, block_ids = set(cpu_ids), set(block_ids)
    for node_id in node_ids:
        cpu_ids.update(host.nodes[node_id].cpus)
        block_ids.update(host.nodes[node_id].memory_blocks)
    return tuple(sorted(cpu_ids)), tuple(sorted(block_ids)), tuple(node_ids)


def zone_word(zone):
    """The word written to a block's state to bring it back into zone."""
    if zone == MOVABLE_ZONE:
        return 'online_movable'
    if zone in KERNEL_ZONES:
        return 'online_kernel'
    return 'online'


def auto_online_word(block, recorded_zone, policy):
    """online_type=auto: back into the recorded zone, else the host's policy for new memory, else the default.

    policy is the kernel's memory/auto_online_blocks (online, online_movable, online_kernel, offline).
    """
    zones = block.valid_zones
    if recorded_zone and (not zones or recorded_zone in zones):
        return zone_word(recorded_zone)
    if policy == 'online_movable' and MOVABLE_ZONE in zones:
        return 'online_movable'
    if policy == 'online_kernel' and any(z in KERNEL_ZONES for z in zones):
        return 'online_kernel'
    return 'online'


def plan_host_change(host, state, cpu_ids, block_ids, online_type='auto', bound_nodes=None, numa_node=None,
                     recorded_zones=None):
    """The plan for taking cpu_ids and block_ids to state, or HotplugError with every reason to refuse.

    bound_nodes maps a NUMA node to the running domains whose memory is bound to it
    (numatune); such a node must keep an online CPU and an online memory block.
    None means the domains were not looked at (evacuate=false).
    recorded_zones maps blocks to the zone they were in when this collection offlined them.
    """
    if state not in ('offline', 'online'):
        raise HotplugError('state must be offline or online, not %r' % (state,))
    if online_type not in ONLINE_TYPES:
        raise HotplugError('online_type must be one of %s' % ', '.join(ONLINE_TYPES))
    problems = []
    want_online = state == 'online'
    cpus_change = [c for c in cpu_ids if host.cpus[c].online != want_online]
    cpus_already = [c for c in cpu_ids if host.cpus[c].online == want_online]
    blocks_change = []
    blocks_already = []
    online_state = {}
    for block_id in block_ids:
        block = host.memory.blocks[block_id]
        if block.state == 'going-offline':
            problems.append('memory block %d is going offline right now (another task is offlining it)' % block_id)
        elif (block.state == 'online') == want_online:
            blocks_already.append(block_id)
        elif block.state not in ('online', 'offline'):
            problems.append('memory block %d is in state %r, which this module does not handle'
                            % (block_id, block.state))
        else:
            blocks_change.append(block_id)

    if not want_online:
        not_hotpluggable = [c for c in cpus_change if not host.cpus[c].hotpluggable]
        if not_hotpluggable:
            problems.append('the kernel marks CPU %s not hotpluggable (no online file in sysfs)'
                            % format_cpulist(not_hotpluggable))
        for block_id in blocks_change:
            block = host.memory.blocks[block_id]
            if block.removable is False:
                problems.append('the kernel marks memory block %d not removable' % block_id)
            elif not block.offlinable_zone:
                problems.append('memory block %d spans several zones or nodes (valid_zones "none"); '
                                'the kernel cannot offline it' % block_id)
    else:
        for block_id in blocks_change:
            zones = host.memory.blocks[block_id].valid_zones
            word = online_type
            if online_type == 'auto':
                word = auto_online_word(host.memory.blocks[block_id], (recorded_zones or {}).get(block_id),
                                        host.memory.auto_online_blocks)
            elif online_type == 'online_movable' and zones and MOVABLE_ZONE not in zones:
                problems.append('memory block %d cannot be onlined movable (valid zones: %s)'
                                % (block_id, ' '.join(zones)))
            elif online_type == 'online_kernel' and zones and not any(z in KERNEL_ZONES for z in zones):
                problems.append('memory block %d cannot be onlined into a kernel zone (valid zones: %s)'
                                % (block_id, ' '.join(zones)))
            online_state[block_id] = word

    online_after = set(host.online_cpus)
    online_after.difference_update(cpus_change) if not want_online else online_after.update(cpus_change)
    losing_cpus = []
    losing_memory = []
    if not want_online:
        if cpus_change and not online_after:
            problems.append('offlining CPU %s would leave the host without an online CPU'
                            % format_cpulist(cpus_change))
        for node in sorted(host.nodes.values(), key=lambda n: n.id):
            if node.online_cpus and not (set(node.online_cpus) & online_after):
                losing_cpus.append(node.id)
            online_blocks = [b for b in node.memory_blocks if b in host.memory.blocks
                             and host.memory.blocks[b].online]
            if online_blocks and set(online_blocks) <= set(blocks_change):
                losing_memory.append(node.id)
        for node_id in sorted(set(losing_cpus) | set(losing_memory)):
            users = (bound_nodes or {}).get(node_id)
            if not users:
                continue
            what = ' and '.join(w for w, lost in (('CPU', node_id in losing_cpus),
                                                  ('memory block', node_id in losing_memory)) if lost)
            problems.append('this would take the last online %s of NUMA node %d, whose memory is in use by '
                            'pinned domains %s (numatune)' % (what, node_id, ', '.join(sorted(users))))
    if problems:
        raise HotplugError('refusing to %s: %s; nothing was changed'
                           % ('offline' if not want_online else 'online', '; '.join(problems)), refusals=problems)
    # Offline from the highest block down: ZONE_MOVABLE sits at the top of each node, and a block
    # that holds out is then found before the lower (kernel) blocks were touched in vain.
    blocks_change.sort(reverse=not want_online)
    return HostPlan(state=state, cpus_requested=tuple(cpu_ids), cpus_change=tuple(sorted(cpus_change)),
                    cpus_already=tuple(cpus_already), blocks_requested=tuple(block_ids),
                    blocks_change=tuple(blocks_change), blocks_already=tuple(blocks_already),
                    block_online_state=online_state,
                    block_zone_before={b: host.memory.blocks[b].valid_zones[0] for b in blocks_change
                                       if not want_online and host.memory.blocks[b].valid_zones},
                    online_cpus_after=tuple(sorted(online_after)),
                    nodes_losing_cpus=tuple(losing_cpus), nodes_losing_memory=tuple(losing_memory),
                    numa_node=numa_node)
