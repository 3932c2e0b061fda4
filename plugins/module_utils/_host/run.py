# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host_resource_offline task from start to end: read, plan, (check mode stops here), apply, re-read.

Offlining runs in this order, each step undone if a later one fails:
1. memory blocks, highest first, each with retries while the kernel answers EBUSY;
2. evacuation: pinned domain threads moved off the CPUs going offline (live and config);
3. the CPUs.
Onlining runs memory blocks, then CPUs, then (repin_on_online) the pins put back.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import contextlib
import os
import time

from ansible_collections.kvm.hotplug.plugins.module_utils._host import evacuation
from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.lock import DomainLock
from ansible_collections.kvm.hotplug.plugins.module_utils._host.plan import (
    offline_memory_blocks, online_blocks_again, online_memory_blocks, plan_host_change, resolve_request,
    rollback_text, set_cpus,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import SysfsTree, read_host
from ansible_collections.kvm.hotplug.plugins.module_utils._host.zone_record import (
    forget_zones, recorded_zones, remember_zones,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import (
    LibvirtSession, LIBVIRT_IMPORT_ERROR, call, conn_uri, libvirt,
)

HOST_LOCK_ID = 'host-resources'
LOCK_TIMEOUT = 60


class MissingLibvirt(HotplugError):
    """libvirt-python is needed for this request but cannot be imported."""


@contextlib.contextmanager
def host_lock(timeout=LOCK_TIMEOUT):
    """One host_resource_offline task at a time on this host."""
    lock = DomainLock(HOST_LOCK_ID, 'host', timeout)
    try:
        lock.__enter__()
    except HotplugError:
        raise HotplugError('another host_resource_offline task is changing this host\'s CPUs or memory blocks and '
                           'did not finish within %s s; nothing was changed' % timeout)
    try:
        yield lock
    finally:
        lock.__exit__(None, None, None)


def _states(host, cpu_ids, block_ids):
    return dict(
        cpus={str(c): ('online' if host.cpus[c].online else 'offline') for c in cpu_ids if c in host.cpus},
        memory_blocks={str(b): host.memory.blocks[b].state for b in block_ids if b in host.memory.blocks},
    )


def _require_libvirt(why):
    if libvirt is None:
        raise MissingLibvirt('libvirt-python is needed to %s but cannot be imported on this host '
                             '(install it, or set evacuate=false to leave domains alone)' % why,
                             exception=LIBVIRT_IMPORT_ERROR)


def run_task(params, check_mode, diff_mode, clock=time.monotonic):
    started = clock()
    tree = SysfsTree(params['sysfs_root'])
    state = params['state']
    with host_lock():
        host = read_host(tree)
        cpu_ids, block_ids, node_id = resolve_request(host, params['cpus'], params['memory_blocks'],
                                                      params['numa_node'])
        if not cpu_ids and not block_ids:
            raise HotplugError('nothing to do: no CPU, memory block or NUMA node was given (or the node has none)')
        zones = recorded_zones(tree.root)
        try:
            plan = plan_host_change(host, state, cpu_ids, block_ids, params['online_type'], numa_node=node_id,
                                    recorded_zones=zones)
        except HotplugError:
            # Refused already; with evacuation on, read the domains too so that the refusal lists
            # every reason (a node its domains are bound to, a domain left without CPU), not the first few.
            if state != 'offline' or not params['evacuate'] or libvirt is None:
                raise
            plan = None
        if plan is not None:
            _check_writable(tree, plan)
        want_domains = False
        if state == 'offline' and params['evacuate']:
            want_domains = plan is None or bool(plan.cpus_change or plan.nodes_losing_memory)
        if state == 'online' and params['repin_on_online'] and cpu_ids:
            want_domains = True
        if not want_domains:
            return _finish(tree, host, plan, None, None, params, check_mode, diff_mode, started, clock,
                           domains_checked=False)
        _require_libvirt('look at the domains pinned to these CPUs')
        with LibvirtSession(params['uri']) as conn:
            domains = evacuation.read_domains(conn)
            if state == 'offline':
                plan = plan_host_change(host, state, cpu_ids, block_ids, params['online_type'],
                                        bound_nodes=evacuation.bound_nodes_map(domains), numa_node=node_id,
                                        recorded_zones=zones)
                pin_plan = evacuation.plan_evacuation(domains, plan.cpus_change, plan.online_cpus_after,
                                                      host.isolated) if plan.cpus_change else \
                    evacuation.EvacuationPlan(changes=[], unpinned=[d.name for d in domains if not d.pinned],
                                              unaffected=[d.name for d in domains if d.pinned])
            else:
                relevant = [_only_records_for(d, set(cpu_ids)) for d in domains]
                pin_plan = evacuation.plan_repin(relevant, plan.online_cpus_after)
            cpumap_length = max([call('reading the host CPU map of %s' % conn_uri(conn), conn.getCPUMap, 0)[0]]
                                + [c + 1 for c in host.cpus])
            return _finish(tree, host, plan, pin_plan, cpumap_length, params, check_mode, diff_mode, started, clock,
                           domains_checked=True, uri=conn_uri(conn))


def _check_writable(tree, plan):
    """Refuse before any change when a sysfs file the plan writes cannot be written (not root, read-only /sys)."""
    paths = [tree.cpu_path(c, 'online') for c in plan.cpus_change]
    paths += [tree.memory_path(b, 'state') for b in plan.blocks_change]
    denied = [p for p in paths if not os.access(p, os.W_OK)]
    if denied:
        raise HotplugError('cannot write %s%s (run the task as root, with become: true); nothing was changed'
                           % (denied[0], ' and %d more' % (len(denied) - 1) if len(denied) > 1 else ''),
                           not_writable=denied)


def _only_records_for(domain, cpus):
    """The domain with only the evacuation records whose original pinning includes one of cpus."""
    for pins in domain.scopes.values():
        pins.record = {k: v for k, v in pins.record.items() if set(v[0]) & cpus}
    return domain


def _finish(tree, host, plan, pin_plan, cpumap_length, params, check_mode, diff_mode, started, clock,
            domains_checked, uri=None):
    ids_cpu = plan.cpus_requested
    ids_block = plan.blocks_requested
    before = _states(host, ids_cpu, ids_block)
    pin_changes = pin_plan.changes if pin_plan is not None else []
    changed = bool(plan.changes or pin_changes)
    result = dict(
        changed=changed, state=plan.state, numa_node=plan.numa_node, sysfs_root=tree.root,
        cpus_changed=list(plan.cpus_change), cpus_already=list(plan.cpus_already),
        memory_blocks_changed=list(plan.blocks_change), memory_blocks_already=list(plan.blocks_already),
        memory_online_state={str(k): v for k, v in sorted(plan.block_online_state.items())},
        domains_checked=domains_checked,
        domains_repinned=[c.to_dict() for c in pin_changes],
        domains_unpinned=list(pin_plan.unpinned) if pin_plan is not None else [],
        domains_unaffected=list(pin_plan.unaffected) if pin_plan is not None else [],
        memory_attempts=[],
    )
    if uri:
        result['uri'] = uri
    pins_before = {c.domain.name: c.views()[0] for c in pin_changes}
    pins_after = {c.domain.name: c.views()[1] for c in pin_changes}
    if check_mode or not changed:
        predicted = dict(before, domains=pins_after)
        for c in plan.cpus_change:
            predicted['cpus'] = dict(predicted['cpus'], **{str(c): plan.state})
        for b in plan.blocks_change:
            predicted['memory_blocks'] = dict(predicted['memory_blocks'], **{str(b): plan.state})
        result['online_cpus_after'] = format_cpulist(plan.online_cpus_after)
        if changed:
            result.update(before=dict(before, domains=pins_before), after=predicted)
            if check_mode and plan.state == 'offline' and plan.blocks_change:
                result['note'] = ('check mode: whether the kernel can migrate the pages of each memory block '
                                  'shows only when it is tried')
        if diff_mode:
            result['diff'] = dict(before=dict(before, domains=pins_before), after=predicted)
        result['elapsed'] = round(clock() - started, 3)
        return result

    with contextlib.ExitStack() as locks:
        for dchange in pin_changes:
            locks.enter_context(DomainLock(dchange.domain.uuid, dchange.domain.name, LOCK_TIMEOUT))
        if plan.state == 'offline':
            _apply_offline(tree, plan, pin_plan, cpumap_length, params, result)
        else:
            _apply_online(tree, plan, pin_plan, cpumap_length, result)
        views = evacuation.reread_views(pin_plan) if pin_changes else {}

    after_host = read_host(tree)
    after = _states(after_host, ids_cpu, ids_block)
    result.update(before=dict(before, domains=pins_before), after=dict(after, domains=views),
                  online_cpus_after=format_cpulist(after_host.online_cpus))
    wrong = [('CPU %s' % c) for c in plan.cpus_change if after['cpus'].get(str(c)) != plan.state]
    wrong += [('memory block %s' % b) for b in plan.blocks_change
              if (after['memory_blocks'].get(str(b)) == 'online') != (plan.state == 'online')]
    if diff_mode:
        result['diff'] = dict(before=result['before'], after=result['after'])
    result['elapsed'] = round(clock() - started, 3)
    if wrong:
        raise HotplugError('the kernel reports %s not %s after the change' % (', '.join(wrong), plan.state),
                           **dict((k, v) for k, v in result.items() if k not in ('changed',)))
    return result


def _apply_offline(tree, plan, pin_plan, cpumap_length, params, result):
    attempts = offline_memory_blocks(tree, plan, params['timeout'])
    result['memory_attempts'] = [a.__dict__ for a in attempts]
    if plan.blocks_change and not remember_zones(tree.root, plan.block_zone_before):
        result.setdefault('warnings', []).append(
            'could not record the zones of the offlined memory blocks; online_type=auto will use the host policy')
    try:
        if pin_plan is not None and pin_plan.changes:
            evacuation.apply_plan(pin_plan, cpumap_length)
        try:
            set_cpus(tree, plan.cpus_change, online=False)
        except HotplugError as exc:
            if pin_plan is not None and pin_plan.changes:
                undone, failed = _undo_pins(pin_plan, cpumap_length)
                exc.msg += '; put %d domain pin(s) back as they were' % undone
                if failed:
                    exc.msg += '; ROLLBACK INCOMPLETE: %s' % '; '.join(failed)
                exc.details['repin_rollback_failed'] = failed
            raise
    except HotplugError as exc:
        restored, failed = online_blocks_again(tree, list(plan.blocks_change), plan)
        forget_zones(tree.root, restored)
        msg = exc.msg
        if plan.blocks_change:
            msg += '; ' + rollback_text('memory block', restored, failed)
        details = dict(exc.details)
        details.update(rolled_back_memory_blocks=restored, memory_rollback_failed=failed,
                       memory_attempts=result['memory_attempts'])
        raise HotplugError(msg, exception=exc.exception, **details)


def _undo_pins(pin_plan, cpumap_length):
    done = [(c.domain.dom, change) for c in pin_plan.changes for change in c.changes]
    records = [(c.domain.dom, scope, c.domain.scopes[scope].record) for c in pin_plan.changes
               for scope in c.records_after]
    return evacuation.undo_plan(done, records, cpumap_length)


def _apply_online(tree, plan, pin_plan, cpumap_length, result):
    try:
        online_memory_blocks(tree, plan)
    finally:
        forget_zones(tree.root, [b for b in plan.blocks_change
                                 if tree.read(tree.memory_path(b, 'state')) == 'online'])
    set_cpus(tree, plan.cpus_change, online=True, rollback=False)
    if pin_plan is not None and pin_plan.changes:
        evacuation.apply_plan(pin_plan, cpumap_length)
