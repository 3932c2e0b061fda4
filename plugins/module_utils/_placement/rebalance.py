# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rebalance planner: one host's capacity, reserve and VMs (allocation, hotplug limits, bounds, demand) -> changes.

plan_host(host, vms, settings, state=None) is pure (no libvirt, no clock, no randomness) and deterministic:
the same inputs give the same plan, VMs and steps in name order.

Per VM and per resource (vcpus, memory_mib), in this order:

1. the reachable range: vCPUs from the non-hotpluggable count to the definition's maximum; memory on the grid
   current + k * dimm_mib, down by the removable DIMMs, up by the free slots and never above maxMemory;
2. the bounds (min_*, max_* of kvm_hotplug_vms) narrow that range; bounds always win over damping;
3. the demand is rounded up to the grid and clamped into the range (a reason when it is capped or raised);
4. damping: a change smaller than the hysteresis is not made; with hysteresis rounds > 1 the imbalance must have
   been seen in that many runs in a row (state carries the count); a change is at most max_step;
5. the host: capacity x overcommit - reserve.  When the VMs' wants do not fit, every VM keeps its floor (its
   minimum, or its allocation less max_step) and the rest goes by priority (higher first); within the priority
   level that does not fit completely, in proportion to what each asked above its floor; what that level cannot
   use (less than one grid step of each of its VMs) goes on to the lower levels.

Every VM whose target is below its demand has a reason.  The steps list removals before additions, so that the
host is never more committed during the run than before or after it.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError

VCPUS = 'vcpus'
MEMORY = 'memory_mib'
RESOURCES = (VCPUS, MEMORY)
_BOUND_KEYS = {VCPUS: ('min_vcpus', 'max_vcpus'), MEMORY: ('min_memory_mib', 'max_memory_mib')}
_UNIT = {VCPUS: 'vCPUs', MEMORY: 'MiB'}


def _int(value, what):
    if value is None or value.__class__ is int:  # the common case first: the planner runs over whole fleets
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise HotplugError('%s must be a whole number, got %r' % (what, value))
    return int(value)


def _settings(settings):
    settings = settings or {}
    step = settings.get('max_step') or {}
    hyst = settings.get('hysteresis') or {}
    out = dict(
        step={VCPUS: _int(step.get(VCPUS), 'max_step.vcpus'), MEMORY: _int(step.get(MEMORY), 'max_step.memory_mib')},
        hysteresis={VCPUS: _int(hyst.get(VCPUS, 0), 'hysteresis.vcpus') or 0,
                    MEMORY: _int(hyst.get(MEMORY, 0), 'hysteresis.memory_mib') or 0},
        rounds=_int(hyst.get('rounds', 1), 'hysteresis.rounds') or 1,
    )
    for resource in RESOURCES:
        if out['step'][resource] is not None and out['step'][resource] < 0:
            raise HotplugError('max_step.%s must not be negative' % resource)
        if out['hysteresis'][resource] < 0:
            raise HotplugError('hysteresis.%s must not be negative' % resource)
    if out['rounds'] < 1:
        raise HotplugError('hysteresis.rounds must be at least 1')
    return out


def host_capacity(host):
    """(vCPUs, MiB) the VMs may use together: capacity x overcommit, less the reserve."""
    cpus = _int(host.get('cpus'), 'host cpus')
    memory = _int(host.get('memory_mib'), 'host memory_mib')
    if cpus is None or memory is None or cpus < 1 or memory < 1:
        raise HotplugError('the host capacity needs cpus and memory_mib above 0, got %r' % (host,))
    reserve = host.get('reserve') or {}
    reserve_cpus = _int(reserve.get('cpus', 0), 'kvm_hotplug_host_reserve.cpus') or 0
    reserve_memory = _int(reserve.get('memory_mib', 0), 'kvm_hotplug_host_reserve.memory_mib') or 0
    if reserve_cpus < 0 or reserve_memory < 0:
        raise HotplugError('kvm_hotplug_host_reserve must not be negative, got %r' % (reserve,))
    cpu_ratio = float(host.get('cpu_overcommit', 1.0))
    memory_ratio = float(host.get('memory_overcommit', 1.0))
    if cpu_ratio <= 0 or memory_ratio <= 0:
        raise HotplugError('overcommit ratios must be above 0')
    return {VCPUS: max(0, int(cpus * cpu_ratio) - reserve_cpus),
            MEMORY: max(0, int(memory * memory_ratio) - reserve_memory)}


def _reach(vm, resource, current):
    """(grid, lowest, highest, why-args) that hotplug can reach from current; _reach_why(why-args) says why."""
    get = vm.get
    if resource == VCPUS:
        fixed = _int(get('fixed_vcpus', 1), 'fixed_vcpus') or 1
        maximum = _int(get('vcpu_maximum'), 'vcpu_maximum')
        if maximum is None or maximum < current:
            maximum = current
        return 1, (fixed if fixed < current else current), maximum, (VCPUS, maximum)
    grid = _int(get('dimm_mib'), 'dimm_mib') or 0
    max_memory = _int(get('memory_maximum_mib'), 'memory_maximum_mib')
    if grid <= 0 or max_memory is None:
        return 1, current, current, None
    removable = _int(get('removable_dimms', 0), 'removable_dimms') or 0
    free = _int(get('free_slots', 0), 'free_slots') or 0
    room = (max_memory - current) // grid
    up = free if free < room else room
    if up < 0:
        up = 0
    return grid, current - removable * grid, current + up * grid, (MEMORY, max_memory, room < free, free, grid)


def _reach_why(why):
    if why is None:
        return 'no memory hotplug (no maxMemory or DIMM size)'
    if why[0] == VCPUS:
        return 'the hotplug maximum of %d vCPUs' % why[1]
    _resource, max_memory, by_max, free, grid = why
    if by_max:
        return 'maxMemory %d MiB' % max_memory
    return '%d free memory slot%s of %d MiB' % (free, '' if free == 1 else 's', grid)


class _Want(object):
    """What one VM asks for one resource after bounds and damping, and the least it can be left with."""

    __slots__ = ('current', 'demand', 'grid', 'lo', 'hi', 'want', 'floor', 'reasons', 'pending')

    def __init__(self, current, demand, grid, lo, hi, want, floor, reasons, pending):
        self.current = current
        self.demand = demand
        self.grid = grid
        self.lo = lo
        self.hi = hi
        self.want = want
        self.floor = floor
        self.reasons = reasons
        self.pending = pending


def _want(vm, resource, current, demand, settings, pending):
    reasons = []
    grid, reach_lo, reach_hi, reach_why = _reach(vm, resource, current)
    min_key, max_key = _BOUND_KEYS[resource]
    bmin = _int(vm.get(min_key), min_key)
    bmax = _int(vm.get(max_key), max_key)
    unit = _UNIT[resource]
    lo, hi = reach_lo, reach_hi
    hi_why = None
    if bmax is not None:
        top = current + ((bmax - current) // grid) * grid
        if top < hi:
            hi, hi_why = top, '%s %d' % (max_key, bmax)
    lo_why = None
    if bmin is not None:
        bottom = current - ((current - bmin) // grid) * grid
        if bottom > lo:
            lo, lo_why = bottom, '%s %d' % (min_key, bmin)
    if lo > hi:
        # the bounds ask for what hotplug cannot reach: get as close as the hardware allows
        if lo_why is not None and lo > reach_hi:
            reasons.append('%s is above what hotplug can reach (%s): kept at %d %s'
                           % (lo_why, _reach_why(reach_why), reach_hi, unit))
            lo = hi = reach_hi
        else:
            reasons.append('%s is below what can be unplugged: kept at %d %s' % (hi_why, reach_lo, unit))
            lo = hi = reach_lo
    asked = current if demand is None else demand
    target = current - ((current - asked) // grid) * grid
    if target > hi:
        reasons.append('demand %d %s capped at %d by %s' % (asked, unit, hi, hi_why or _reach_why(reach_why)))
        target = hi
    elif target < lo:
        reasons.append('demand %d %s raised to %d by %s' % (asked, unit, lo, lo_why or 'what can be unplugged'))
        target = lo
    anchor = current if lo <= current <= hi else (lo if current < lo else hi)
    if anchor != current:
        reasons.append('%d %s is outside the bounds: moved to %d' % (current, unit, anchor))
    delta = target - anchor
    new_pending = None
    if delta and anchor == current:
        hysteresis = settings['hysteresis'][resource]
        if -hysteresis < delta < hysteresis:
            reasons.append('a change of %d %s is below rebalance_hysteresis (%d)' % (delta, unit, hysteresis))
            target = anchor
        elif settings['rounds'] > 1:
            direction = 1 if delta > 0 else -1
            seen = 1
            if pending and pending.get('direction') == direction:
                seen = int(pending.get('rounds', 0)) + 1
            if seen < settings['rounds']:
                reasons.append('imbalance seen in %d of %d runs in a row (rebalance_hysteresis rounds)'
                               % (seen, settings['rounds']))
                target = anchor
                new_pending = dict(direction=direction, rounds=seen)
    step = settings['step'][resource]
    if step is not None:
        step = (step // grid) * grid
        if target - anchor > step:
            target = anchor + step
            reasons.append('limited by rebalance_max_step to +%d %s' % (step, unit))
        elif anchor - target > step:
            target = anchor - step
            reasons.append('limited by rebalance_max_step to -%d %s' % (step, unit))
        floor = (target if target < anchor else anchor) - step
        if floor < lo:
            floor = lo
    else:
        floor = lo
    if floor > target:
        floor = target
    return _Want(current, asked, grid, lo, hi, target, floor, reasons, new_pending)


def _share(wants, priorities, names, capacity):
    """Targets for one resource: every want when they fit, else floors plus the rest by priority, then proportion."""
    total_want = 0
    for w in wants:
        total_want += w.want
    if total_want <= capacity:
        return [w.want for w in wants], None
    targets = [w.floor for w in wants]
    rest = capacity - sum(targets)
    if rest < 0:
        return targets, 'the host is over capacity even with every VM at its floor (its minimum, or max_step less)'
    levels = sorted(set(priorities), reverse=True)
    by_level = {}
    for index, priority in enumerate(priorities):
        by_level.setdefault(priority, []).append(index)
    for level in levels:
        members = [i for i in by_level[level] if wants[i].want > wants[i].floor]
        extra = sum(wants[i].want - wants[i].floor for i in members)
        if extra <= rest:
            for i in members:
                targets[i] = wants[i].want
            rest -= extra
            continue
        given = 0
        remainders = []
        for i in members:
            w = wants[i]
            ask = w.want - w.floor
            share = ask * rest // extra
            share -= share % w.grid
            targets[i] = w.floor + share
            given += share
            remainders.append((-(ask * rest % extra) / float(extra), names[i], i))
        left = rest - given
        for _frac, _name, i in sorted(remainders):
            w = wants[i]
            if w.grid <= left and targets[i] + w.grid <= w.want:
                targets[i] += w.grid
                left -= w.grid
        # what this level cannot use (less than a grid step of each VM in it) goes on to the lower levels
        rest = left
    return targets, None


def plan_host(host, vms, settings=None, state=None, explain=True):
    """The rebalance plan of one host (see the module docstring).

    host: cpus, memory_mib, reserve {cpus, memory_mib}, cpu_overcommit, memory_overcommit.
    vms: dicts with name, active, vcpus, memory_mib (the allocation); vcpu_maximum, fixed_vcpus (vCPUs that cannot
    be unplugged), memory_maximum_mib (maxMemory), dimm_mib, free_slots, removable_dimms (hotplug limits);
    min_vcpus, max_vcpus, min_memory_mib, max_memory_mib, priority (bounds, from kvm_hotplug_vms);
    demand_vcpus, demand_memory_mib (None: keep the allocation).
    settings: max_step {vcpus, memory_mib}, hysteresis {vcpus, memory_mib, rounds}.
    state: {vm: {resource: {direction, rounds}}} from the previous run (hysteresis rounds).
    explain: add each VM's range {resource: {lowest, highest, want, floor, grid}} (what the report and the property
    tests read; a fleet-wide planner that only needs the steps can leave it out).
    """
    conf = _settings(settings)
    capacity = host_capacity(host)
    state = state or {}
    ordered = sorted(vms, key=lambda v: v['name'])
    names = [v['name'] for v in ordered]
    if len(set(names)) != len(names):
        raise HotplugError('VM names must be unique on a host')
    active = [v for v in ordered if v.get('active', True)]
    active_names = [v['name'] for v in active]
    priorities = [_int(v.get('priority', 0), 'priority') or 0 for v in active]
    wants = {}
    targets = {}
    host_notes = {}
    for resource in RESOURCES:
        demand_key = 'demand_' + resource
        wants[resource] = [_want(v, resource, _int(v[resource], resource), _int(v.get(demand_key), demand_key),
                                 conf, (state.get(v['name']) or {}).get(resource)) for v in active]
        targets[resource], host_notes[resource] = _share(wants[resource], priorities, active_names, capacity[resource])
    entries = []
    steps_down, steps_up = [], []
    new_state = {}
    index = dict((name, i) for i, name in enumerate(active_names))
    wants_v, wants_m = wants[VCPUS], wants[MEMORY]
    targets_v, targets_m = targets[VCPUS], targets[MEMORY]
    totals = dict((stage, {VCPUS: 0, MEMORY: 0}) for stage in ('before', 'demand', 'target'))
    for vm in ordered:
        name = vm['name']
        if name not in index:
            entries.append(dict(name=name, active=False, changed=False,
                                before={VCPUS: vm.get(VCPUS), MEMORY: vm.get(MEMORY)},
                                demand={VCPUS: vm.get('demand_vcpus'), MEMORY: vm.get('demand_memory_mib')},
                                target={VCPUS: vm.get(VCPUS), MEMORY: vm.get(MEMORY)},
                                reasons=['the domain is not running: hotplug needs a running domain']))
            continue
        i = index[name]
        wv, wm = wants_v[i], wants_m[i]
        tv, tm = targets_v[i], targets_m[i]
        reasons = wv.reasons + wm.reasons if wm.reasons else list(wv.reasons)
        for resource, w, target in ((VCPUS, wv, tv), (MEMORY, wm, tm)):
            if target < w.want:
                reasons.append(
                    'host capacity: %d of the %d %s it would get (priority %d; the shortfall is shared by priority, '
                    'then in proportion)' % (target, w.want, _UNIT[resource], priorities[i]))
            if host_notes[resource] and target < w.demand:
                reasons.append(host_notes[resource])
            if w.pending is not None:
                new_state.setdefault(name, {})[resource] = w.pending
            if target != w.current:
                step = dict(name=name, resource=resource, before=w.current, after=target, delta=target - w.current)
                (steps_down if target < w.current else steps_up).append(step)
        entry = dict(
            name=name, active=True, priority=priorities[i], changed=tv != wv.current or tm != wm.current,
            before={VCPUS: wv.current, MEMORY: wm.current}, demand={VCPUS: wv.demand, MEMORY: wm.demand},
            target={VCPUS: tv, MEMORY: tm}, reasons=reasons)
        if explain:
            entry['range'] = {VCPUS: dict(lowest=wv.lo, highest=wv.hi, want=wv.want, floor=wv.floor, grid=wv.grid),
                              MEMORY: dict(lowest=wm.lo, highest=wm.hi, want=wm.want, floor=wm.floor, grid=wm.grid)}
        entries.append(entry)
        for key, a, b in (('before', wv.current, wm.current), ('demand', wv.demand, wm.demand), ('target', tv, tm)):
            totals[key][VCPUS] += a
            totals[key][MEMORY] += b
    return dict(
        changed=bool(steps_down or steps_up),
        capacity=capacity,
        totals=totals,
        vms=entries,
        steps=steps_down + steps_up,
        state=new_state,
    )


def plan_fleet(hosts, settings=None, states=None, explain=True):
    """plan_host for each host: {host name: plan}; hosts is {name: (host, vms)}."""
    states = states or {}
    return dict((name, plan_host(host, vms, settings, states.get(name), explain))
                for name, (host, vms) in sorted(hosts.items()))
