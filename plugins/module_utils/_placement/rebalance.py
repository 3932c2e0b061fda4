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
   minimum, or its allocation less max_step; a VM without a demand keeps its allocation) and the rest goes by
   priority (higher first); within the priority level that does not fit completely, in proportion to what each
   asked above its floor; what that level cannot use (less than one grid step of each of its VMs) goes on to the
   lower levels.

Every VM whose target is below its demand has a reason.  The steps list removals before additions, so that the
host is never more committed during the run than before or after it.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import gc
from operator import itemgetter

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError

VCPUS = 'vcpus'
MEMORY = 'memory_mib'
RESOURCES = (VCPUS, MEMORY)
_BOUND_KEYS = {VCPUS: ('min_vcpus', 'max_vcpus'), MEMORY: ('min_memory_mib', 'max_memory_mib')}
_UNIT = {VCPUS: 'vCPUs', MEMORY: 'MiB'}
_BY_NAME = itemgetter('name')


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
        raise HotplugError('overcommit ratios must be above 0, got cpu_overcommit %s and memory_overcommit %s'
                           % (cpu_ratio, memory_ratio))
    return {VCPUS: max(0, int(cpus * cpu_ratio) - reserve_cpus),
            MEMORY: max(0, int(memory * memory_ratio) - reserve_memory)}


def _reach_why(why):
    if why is None:
        return 'no memory hotplug (no maxMemory or DIMM size)'
    if why[0] == VCPUS:
        return 'the hotplug maximum of %d vCPUs' % why[1]
    _resource, max_memory, by_max, free, grid = why
    if by_max:
        return 'maxMemory %d MiB' % max_memory
    return '%d free memory slot%s of %d MiB' % (free, '' if free == 1 else 's', grid)


# A want (what one VM asks for one resource after reach, bounds and damping, and the least it can be left with) is
# a plain tuple: it is made for every VM of a fleet twice, and a tuple is the cheapest thing to make and unpack.
# (current, demand, grid, lowest, highest, want, floor, reasons, pending)
_GRID, _WANT, _FLOOR = 2, 5, 6


def _wants(vms, resource, conf, state):
    """The wants of the VMs for one resource, in their order, and the sum of what they want.

    The hot loop of the planner, so the settings are locals and a field that is a plain int skips the _int call
    (x.__class__ is not int and x is not None: one test for the common case).  The fields are read and checked in
    the order of the steps in the module docstring, VM by VM, so that bad input gives the same error as always.
    """
    vcpus = resource == VCPUS
    demand_key = 'demand_' + resource
    min_key, max_key = _BOUND_KEYS[resource]
    unit = _UNIT[resource]
    hysteresis = conf['hysteresis'][resource]
    rounds = conf['rounds']
    max_step = conf['step'][resource]
    out = []
    total = 0
    for vm in vms:
        get = vm.get
        current = vm[resource]
        if current.__class__ is not int:
            current = _int(current, resource)
        demand = get(demand_key)
        if demand.__class__ is not int and demand is not None:
            demand = _int(demand, demand_key)
        pending = (state.get(vm['name']) or {}).get(resource) if state else None

        # 1. the reachable range; why is what _reach_why words when the range caps the demand
        if vcpus:
            fixed = get('fixed_vcpus')
            if fixed.__class__ is not int and fixed is not None:
                fixed = _int(fixed, 'fixed_vcpus')
            fixed = fixed or 1
            maximum = get('vcpu_maximum')
            if maximum.__class__ is not int and maximum is not None:
                maximum = _int(maximum, 'vcpu_maximum')
            if maximum is None or maximum < current:
                maximum = current
            grid, reach_lo, reach_hi, why = 1, (fixed if fixed < current else current), maximum, (VCPUS, maximum)
        else:
            grid = get('dimm_mib')
            if grid.__class__ is not int:
                grid = _int(grid, 'dimm_mib') or 0
            max_memory = get('memory_maximum_mib')
            if max_memory.__class__ is not int and max_memory is not None:
                max_memory = _int(max_memory, 'memory_maximum_mib')
            if grid <= 0 or max_memory is None:
                grid, reach_lo, reach_hi, why = 1, current, current, None
            else:
                removable = get('removable_dimms')
                if removable.__class__ is not int:
                    removable = _int(removable, 'removable_dimms') or 0
                free = get('free_slots')
                if free.__class__ is not int:
                    free = _int(free, 'free_slots') or 0
                room = (max_memory - current) // grid
                up = free if free < room else room
                if up < 0:
                    up = 0
                reach_lo, reach_hi = current - removable * grid, current + up * grid
                why = (MEMORY, max_memory, room < free, free, grid)

        # 2. the bounds narrow the range (lo_bound, hi_bound: a bound did, and is the why)
        bmin = get(min_key)
        if bmin.__class__ is not int and bmin is not None:
            bmin = _int(bmin, min_key)
        bmax = get(max_key)
        if bmax.__class__ is not int and bmax is not None:
            bmax = _int(bmax, max_key)
        reasons = []
        lo, hi = reach_lo, reach_hi
        lo_bound = hi_bound = False
        if bmax is not None:
            top = current + ((bmax - current) // grid) * grid
            if top < hi:
                hi, hi_bound = top, True
        if bmin is not None:
            bottom = current - ((current - bmin) // grid) * grid
            if bottom > lo:
                lo, lo_bound = bottom, True
        if lo > hi:
            # the bounds ask for what hotplug cannot reach: get as close as the hardware allows
            if lo_bound and lo > reach_hi:
                reasons.append('%s %d is above what hotplug can reach (%s): kept at %d %s'
                               % (min_key, bmin, _reach_why(why), reach_hi, unit))
                lo = hi = reach_hi
            else:
                reasons.append('%s is below what can be unplugged: kept at %d %s'
                               % ('%s %d' % (max_key, bmax) if hi_bound else None, reach_lo, unit))
                lo = hi = reach_lo

        # 3. the demand, on the grid and into the range
        asked = current if demand is None else demand
        target = current - ((current - asked) // grid) * grid
        if target > hi:
            reasons.append('demand %d %s capped at %d by %s'
                           % (asked, unit, hi, '%s %d' % (max_key, bmax) if hi_bound else _reach_why(why)))
            target = hi
        elif target < lo:
            reasons.append('demand %d %s raised to %d by %s'
                           % (asked, unit, lo, '%s %d' % (min_key, bmin) if lo_bound else 'what can be unplugged'))
            target = lo
        anchor = current if lo <= current <= hi else (lo if current < lo else hi)
        if anchor != current:
            reasons.append('%d %s is outside the bounds: moved to %d' % (current, unit, anchor))

        # 4. damping
        delta = target - anchor
        new_pending = None
        if delta and anchor == current:
            if -hysteresis < delta < hysteresis:
                reasons.append('a change of %d %s is below rebalance_hysteresis (%d)' % (delta, unit, hysteresis))
                target = anchor
            elif rounds > 1:
                direction = 1 if delta > 0 else -1
                seen = 1
                if pending and pending.get('direction') == direction:
                    seen = int(pending.get('rounds', 0)) + 1
                if seen < rounds:
                    reasons.append('imbalance seen in %d of %d runs in a row (rebalance_hysteresis rounds)'
                                   % (seen, rounds))
                    target = anchor
                    new_pending = dict(direction=direction, rounds=seen)
        if max_step is not None:
            step = (max_step // grid) * grid
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
        if floor > target or demand is None:
            # without a demand the VM keeps what it has (within its bounds): its want is its allocation, so a cut
            # for capacity would lower the next run's want and every run would take more (no second run is a no-op)
            floor = target
        out.append((current, asked, grid, lo, hi, target, floor, reasons, new_pending))
        total += target
    return out, total


def _share(wants, total_want, priorities, names, capacity):
    """Targets for one resource: every want when they fit, else floors plus the rest by priority, then proportion."""
    if total_want <= capacity:
        return [w[_WANT] for w in wants], None
    targets = [w[_FLOOR] for w in wants]
    rest = capacity - sum(targets)
    if rest < 0:
        return targets, ('the host is over capacity even with every VM at its floor (its minimum, max_step less, '
                         'or what it has without a demand)')
    levels = sorted(set(priorities), reverse=True)
    by_level = {}
    for index, priority in enumerate(priorities):
        by_level.setdefault(priority, []).append(index)
    for level in levels:
        members = [i for i in by_level[level] if wants[i][_WANT] > wants[i][_FLOOR]]
        extra = sum(wants[i][_WANT] - wants[i][_FLOOR] for i in members)
        if extra <= rest:
            for i in members:
                targets[i] = wants[i][_WANT]
            rest -= extra
            continue
        given = 0
        remainders = []
        for i in members:
            w = wants[i]
            ask = w[_WANT] - w[_FLOOR]
            share = ask * rest // extra
            share -= share % w[_GRID]
            targets[i] = w[_FLOOR] + share
            given += share
            remainders.append((-(ask * rest % extra) / float(extra), names[i], i))
        left = rest - given
        for _frac, _name, i in sorted(remainders):
            grid = wants[i][_GRID]
            if grid <= left and targets[i] + grid <= wants[i][_WANT]:
                targets[i] += grid
                left -= grid
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
    return _plan_host(host, vms, _settings(settings), state, explain)


def _plan_host(host, vms, conf, state, explain):
    capacity = host_capacity(host)
    state = state or {}
    ordered = sorted(vms, key=_BY_NAME)
    names = [v['name'] for v in ordered]
    if len(set(names)) != len(names):
        raise HotplugError('VM names must be unique on a host')
    active = [v for v in ordered if v.get('active', True)]
    active_names = [v['name'] for v in active]
    priorities = []
    for v in active:
        priority = v.get('priority', 0)
        priorities.append(priority if priority.__class__ is int else _int(priority, 'priority') or 0)
    wants_v, total_v = _wants(active, VCPUS, conf, state)
    targets_v, note_v = _share(wants_v, total_v, priorities, active_names, capacity[VCPUS])
    wants_m, total_m = _wants(active, MEMORY, conf, state)
    targets_m, note_m = _share(wants_m, total_m, priorities, active_names, capacity[MEMORY])

    entries = []
    steps_down, steps_up = [], []
    new_state = {}
    before_v = before_m = demand_v = demand_m = target_v = target_m = 0
    shortfall = ('host capacity: %d of the %d %s it would get (priority %d; the shortfall is shared by priority, '
                 'then in proportion)')
    # both resources in one pass, vCPUs first: reasons, state and steps come out in that order
    for vm, priority, wv, wm, tv, tm in zip(active, priorities, wants_v, wants_m, targets_v, targets_m):
        name = vm['name']
        cur_v, dem_v, grid_v, lo_v, hi_v, want_v, floor_v, reasons, pending_v = wv
        cur_m, dem_m, grid_m, lo_m, hi_m, want_m, floor_m, reasons_m, pending_m = wm
        # the vCPU want's reasons list is this VM's alone: it becomes the entry's
        if reasons_m:
            reasons += reasons_m
        if tv < want_v:
            reasons.append(shortfall % (tv, want_v, 'vCPUs', priority))
        if note_v and tv < dem_v:
            reasons.append(note_v)
        if pending_v is not None:
            new_state.setdefault(name, {})[VCPUS] = pending_v
        if tv != cur_v:
            (steps_down if tv < cur_v else steps_up).append(
                {'name': name, 'resource': VCPUS, 'before': cur_v, 'after': tv, 'delta': tv - cur_v})
        if tm < want_m:
            reasons.append(shortfall % (tm, want_m, 'MiB', priority))
        if note_m and tm < dem_m:
            reasons.append(note_m)
        if pending_m is not None:
            new_state.setdefault(name, {})[MEMORY] = pending_m
        if tm != cur_m:
            (steps_down if tm < cur_m else steps_up).append(
                {'name': name, 'resource': MEMORY, 'before': cur_m, 'after': tm, 'delta': tm - cur_m})
        entry = {'name': name, 'active': True, 'priority': priority, 'changed': tv != cur_v or tm != cur_m,
                 'before': {VCPUS: cur_v, MEMORY: cur_m}, 'demand': {VCPUS: dem_v, MEMORY: dem_m},
                 'target': {VCPUS: tv, MEMORY: tm}, 'reasons': reasons}
        if explain:
            entry['range'] = {
                VCPUS: {'lowest': lo_v, 'highest': hi_v, 'want': want_v, 'floor': floor_v, 'grid': grid_v},
                MEMORY: {'lowest': lo_m, 'highest': hi_m, 'want': want_m, 'floor': floor_m, 'grid': grid_m}}
        entries.append(entry)
        before_v += cur_v
        before_m += cur_m
        demand_v += dem_v
        demand_m += dem_m
        target_v += tv
        target_m += tm
    if len(active) != len(ordered):
        # the VMs that are not running go back in between, in name order
        made = iter(entries)
        entries = [next(made) if vm.get('active', True) else _inactive_entry(vm) for vm in ordered]
    return dict(
        changed=bool(steps_down or steps_up),
        capacity=capacity,
        totals={'before': {VCPUS: before_v, MEMORY: before_m}, 'demand': {VCPUS: demand_v, MEMORY: demand_m},
                'target': {VCPUS: target_v, MEMORY: target_m}},
        vms=entries,
        steps=steps_down + steps_up,
        state=new_state,
    )


def _inactive_entry(vm):
    return dict(name=vm['name'], active=False, changed=False,
                before={VCPUS: vm.get(VCPUS), MEMORY: vm.get(MEMORY)},
                demand={VCPUS: vm.get('demand_vcpus'), MEMORY: vm.get('demand_memory_mib')},
                target={VCPUS: vm.get(VCPUS), MEMORY: vm.get(MEMORY)},
                reasons=['the domain is not running: hotplug needs a running domain'])


def plan_fleet(hosts, settings=None, states=None, explain=True):
    """plan_host for each host: {host name: plan}; hosts is {name: (host, vms)}."""
    states = states or {}
    conf = None  # the settings are checked once, before the first host (as plan_host would)
    out = {}
    # The plans of a fleet are a million or so new dicts and lists that all live on: each run of the cyclic garbage
    # collector walks them again without finding garbage (the plans hold no cycles), which cost about as much as the
    # planning itself.  It is paused while planning and restored as it was, also on an error.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for name, (host, vms) in sorted(hosts.items()):
            state = states.get(name)
            if conf is None:
                conf = _settings(settings)
            out[name] = _plan_host(host, vms, conf, state, explain)
    finally:
        if collecting:
            gc.enable()
    return out
