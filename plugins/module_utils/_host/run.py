# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host_resource_offline module's hooks for the runner (_common/runner.py): read, plan, apply, re-read.

Offlining runs in this order, each step undone if a later one fails:
1. memory blocks, highest first, each with retries while the kernel answers EBUSY;
2. evacuation: pinned domain threads moved off the CPUs going offline (live and config);
3. the CPUs.
Onlining runs memory blocks, then CPUs, then (repin_on_online) the pins put back.
There is no domain to look up: read() takes the host lock, plan() opens libvirt only when domains matter.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import os

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.argspec import URI_ARGS
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import SOURCE, Change
from ansible_collections.kvm.hotplug.plugins.module_utils._host import evacuation, pins
from ansible_collections.kvm.hotplug.plugins.module_utils._host.apply import (
    offline_memory_blocks, online_blocks_again, online_memory_blocks, rollback_text, set_cpus,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._host.plan import plan_host_change, resolve_request
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import SysfsTree, read_host
from ansible_collections.kvm.hotplug.plugins.module_utils._host.zone_record import (
    forget_zones, recorded_zones, remember_zones,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import (
    LIBVIRT_IMPORT_ERROR, call, conn_uri, libvirt,
)

HOST_LOCK_ID = 'host-resources'
LOCK_TIMEOUT = 60


class MissingLibvirt(HotplugError):
    """libvirt-python is needed for this request but cannot be imported."""


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


class HostState(object):
    def __init__(self, tree, host, cpu_ids, block_ids, node_id, zones):
        self.tree, self.host = tree, host
        self.cpu_ids, self.block_ids, self.node_id, self.zones = cpu_ids, block_ids, node_id, zones


class HostPlanned(object):
    """The host plan, the domains' pin plan (None when domains were not looked at) and what applying needs."""
    def __init__(self, plan, pin_plan=None, cpumap_length=None, domains_checked=False, uri=None):
        self.plan, self.pin_plan, self.cpumap_length = plan, pin_plan, cpumap_length
        self.domains_checked, self.uri = domains_checked, uri

    @property
    def pin_changes(self):
        return self.pin_plan.changes if self.pin_plan is not None else []

    @property
    def changed(self):
        return bool(self.plan.changes or self.pin_changes)


class HostChange(Change):
    options = dict(
        cpus=dict(type='list', elements='str'),
        memory_blocks=dict(type='list', elements='str'),
        numa_node=dict(type='int'),
        state=dict(type='str', choices=['offline', 'online'], default='offline'),
        evacuate=dict(type='bool', default=True),
        repin_on_online=dict(type='bool', default=False),
        online_type=dict(type='str', choices=['auto', 'online', 'online_movable', 'online_kernel'], default='auto'),
        timeout=dict(type='int', default=30),
        sysfs_root=dict(type='path', default='/sys'),
    )
    option_families = (URI_ARGS,)
    module_options = dict(required_one_of=[('cpus', 'memory_blocks', 'numa_node')])
    endpoints = ()
    needs_libvirt = False
    elapsed_digits = 3

    def read(self, run):
        """Take the host lock (one host_resource_offline task at a time on this host) and read the host."""
        run.lock(HOST_LOCK_ID, 'host', LOCK_TIMEOUT,
                 busy_msg='another host_resource_offline task is changing this host\'s CPUs or memory blocks and '
                          'did not finish within %s s; nothing was changed' % LOCK_TIMEOUT)
        params = run.params
        tree = SysfsTree(params['sysfs_root'])
        host = read_host(tree)
        cpu_ids, block_ids, node_id = resolve_request(host, params['cpus'], params['memory_blocks'],
                                                      params['numa_node'])
        if not cpu_ids and not block_ids:
            raise HotplugError('nothing to do: no CPU, memory block or NUMA node was given (or the node has none)')
        return HostState(tree, host, cpu_ids, block_ids, node_id, recorded_zones(tree.root))

    def plan(self, run, state):
        params = run.params
        wanted = params['state']
        try:
            plan = plan_host_change(state.host, wanted, state.cpu_ids, state.block_ids, params['online_type'],
                                    numa_node=state.node_id, recorded_zones=state.zones)
        except HotplugError:
            # Refused already; with evacuation on, read the domains too so that the refusal lists
            # every reason (a node its domains are bound to, a domain left without CPU), not the first few.
            if wanted != 'offline' or not params['evacuate'] or libvirt is None:
                raise
            plan = None
        if plan is not None:
            _check_writable(state.tree, plan)
        want_domains = False
        if wanted == 'offline' and params['evacuate']:
            want_domains = plan is None or bool(plan.cpus_change or plan.nodes_losing_memory)
        if wanted == 'online' and params['repin_on_online'] and state.cpu_ids:
            want_domains = True
        if not want_domains:
            self.planned = HostPlanned(plan)
            return self.planned
        _require_libvirt('look at the domains pinned to these CPUs')
        conn = run.connect(SOURCE, params['uri']).conn
        domains = pins.read_domains(conn)
        if wanted == 'offline':
            plan = plan_host_change(state.host, wanted, state.cpu_ids, state.block_ids, params['online_type'],
                                    bound_nodes=evacuation.bound_nodes_map(domains), numa_node=state.node_id,
                                    recorded_zones=state.zones)
            pin_plan = evacuation.plan_evacuation(domains, plan.cpus_change, plan.online_cpus_after,
                                                  state.host.isolated) if plan.cpus_change else \
                evacuation.EvacuationPlan(changes=[], unpinned=[d.name for d in domains if not d.pinned],
                                          unaffected=[d.name for d in domains if d.pinned])
        else:
            relevant = [_only_records_for(d, set(state.cpu_ids)) for d in domains]
            pin_plan = evacuation.plan_repin(relevant, plan.online_cpus_after)
        cpumap_length = max([call('reading the host CPU map of %s' % conn_uri(conn), conn.getCPUMap, 0)[0]]
                            + [c + 1 for c in state.host.cpus])
        self.planned = HostPlanned(plan, pin_plan, cpumap_length, domains_checked=True, uri=conn_uri(conn))
        return self.planned

    def _base(self, state, planned):
        plan, pin_plan = planned.plan, planned.pin_plan
        result = dict(
            changed=planned.changed, state=plan.state, numa_node=plan.numa_node, sysfs_root=state.tree.root,
            cpus_changed=list(plan.cpus_change), cpus_already=list(plan.cpus_already),
            memory_blocks_changed=list(plan.blocks_change), memory_blocks_already=list(plan.blocks_already),
            memory_online_state={str(k): v for k, v in sorted(plan.block_online_state.items())},
            domains_checked=planned.domains_checked,
            domains_repinned=[c.to_dict() for c in planned.pin_changes],
            domains_unpinned=list(pin_plan.unpinned) if pin_plan is not None else [],
            domains_unaffected=list(pin_plan.unaffected) if pin_plan is not None else [],
            memory_attempts=[],
        )
        if planned.uri:
            result['uri'] = planned.uri
        self.before = _states(state.host, plan.cpus_requested, plan.blocks_requested)
        self.pins_before = {c.domain.name: c.views()[0] for c in planned.pin_changes}
        self.pins_after = {c.domain.name: c.views()[1] for c in planned.pin_changes}
        return result

    def predict(self, run, state, plan):
        host_plan = plan.plan
        result = self._base(state, plan)
        predicted = dict(self.before, domains=self.pins_after)
        for c in host_plan.cpus_change:
            predicted['cpus'] = dict(predicted['cpus'], **{str(c): host_plan.state})
        for b in host_plan.blocks_change:
            predicted['memory_blocks'] = dict(predicted['memory_blocks'], **{str(b): host_plan.state})
        result['online_cpus_after'] = format_cpulist(host_plan.online_cpus_after)
        before = dict(self.before, domains=self.pins_before)
        if plan.changed:
            result.update(before=before, after=predicted)
            if run.check_mode and host_plan.state == 'offline' and host_plan.blocks_change:
                result['note'] = ('check mode: whether the kernel can migrate the pages of each memory block '
                                  'shows only when it is tried')
        self.views = (before, predicted)
        return result

    def apply(self, run, state, plan):
        """Lock every domain re-pinned, change the host, re-read the pins; returns the pins as read again."""
        self.result_ = result = self._base(state, plan)
        self.views = None
        for dchange in plan.pin_changes:
            run.lock(dchange.domain.uuid, dchange.domain.name, LOCK_TIMEOUT)
        if plan.plan.state == 'offline':
            _apply_offline(run, state.tree, plan, result)
        else:
            _apply_online(state.tree, plan)
        return pins.reread_views(plan.pin_plan) if plan.pin_changes else {}

    def observe(self, run, state, plan, outcome):
        return read_host(state.tree)

    def result(self, run, state, plan, outcome, after):
        host_plan, result = plan.plan, self.result_
        states = _states(after, host_plan.cpus_requested, host_plan.blocks_requested)
        result.update(before=dict(self.before, domains=self.pins_before), after=dict(states, domains=outcome),
                      online_cpus_after=format_cpulist(after.online_cpus))
        self.views = (result['before'], result['after'])
        wrong = [('CPU %s' % c) for c in host_plan.cpus_change if states['cpus'].get(str(c)) != host_plan.state]
        wrong += [('memory block %s' % b) for b in host_plan.blocks_change
                  if (states['memory_blocks'].get(str(b)) == 'online') != (host_plan.state == 'online')]
        if wrong:
            raise HotplugError('the kernel reports %s not %s after the change' % (', '.join(wrong), host_plan.state),
                               **dict((k, v) for k, v in result.items() if k not in ('changed',)))
        return result

    def diff(self, result):
        return getattr(self, 'views', None)


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
    for scope_pins in domain.scopes.values():
        scope_pins.record = {k: v for k, v in scope_pins.record.items() if set(v[0]) & cpus}
    return domain


def _apply_offline(run, tree, planned, result):
    plan, pin_plan, cpumap_length = planned.plan, planned.pin_plan, planned.cpumap_length
    attempts = offline_memory_blocks(tree, plan, run.params['timeout'])
    result['memory_attempts'] = [a.__dict__ for a in attempts]
    if plan.blocks_change and not remember_zones(tree.root, plan.block_zone_before):
        run.warn('could not record the zones of the offlined memory blocks; online_type=auto will use the host '
                 'policy')
    try:
        if planned.pin_changes:
            pins.apply_plan(pin_plan, cpumap_length)
        try:
            set_cpus(tree, plan.cpus_change, online=False)
        except HotplugError as exc:
            if planned.pin_changes:
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
    return pins.undo_plan(done, records, cpumap_length)


def _apply_online(tree, planned):
    plan = planned.plan
    try:
        online_memory_blocks(tree, plan)
    finally:
        forget_zones(tree.root, [b for b in plan.blocks_change
                                 if tree.read(tree.memory_path(b, 'state')) == 'online'])
    set_cpus(tree, plan.cpus_change, online=True, rollback=False)
    if planned.pin_changes:
        pins.apply_plan(planned.pin_plan, planned.cpumap_length)
