# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The memory_hotplug module's hooks for the runner (_common/runner.py): read, plan, apply, re-read, wait, report.

The runner takes the domain lock; plan() resolves the scopes and plans each (refusals happen here), apply()
changes the live definition and then (only when that completed) the persistent one, and waits for the
guest when asked; the result reports the domain as read again afterwards.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.argspec import CHANGE_ARGS, DOMAIN_ARGS
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import Change
from ansible_collections.kvm.hotplug.plugins.module_utils._common.scope import CONFIG, LIVE, SCOPES, resolve_scopes
from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import kib_to_mib, parse_size_kib
from ansible_collections.kvm.hotplug.plugins.module_utils._common.waiting import wait_for
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition import PersistentDefinition
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.guest_agent import guest_memory, guest_memory_blocks
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.snapshot import refuse_during_migration
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.tcg_hazard import refuse_if_hazardous
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.apply import apply_plan, definition_after
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.plan import (
    DEFAULT_BLOCK_KIB, SetBalloon, MemoryRequest, plan_memory,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.predict import describe_action, predict
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.sizes import DIMM, memory_view
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.verify import observe_guest


def request_from_params(params):
    """The MemoryRequest for the module options, or HotplugError naming the option that cannot be read."""
    sizes = {}
    for option in ('size', 'dimm_size', 'current_memory'):
        value = params.get(option)
        if value is None:
            sizes[option] = None
            continue
        try:
            sizes[option] = parse_size_kib(value)
        except ValueError as exc:
            raise HotplugError('%s: %s' % (option, exc))
    if params.get('dimm_size') is not None and params.get('model', DIMM) != DIMM:
        raise HotplugError('dimm_size applies to model=dimm only')
    if params.get('numa_node') is not None and params['numa_node'] < 0:
        raise HotplugError('numa_node must not be negative')
    return MemoryRequest(size_kib=sizes['size'], model=params.get('model') or DIMM, dimm_size_kib=sizes['dimm_size'],
                         numa_node=params.get('numa_node'), current_memory_kib=sizes['current_memory'])


def block_size(dom, live_model):
    """(guest memory block size in KiB, where it came from): the guest agent, else the x86_64 default."""
    reason = 'the domain is not running'
    if live_model is not None:
        blocks = guest_memory_blocks(dom, live_model)
        if blocks['available'] and blocks['block_bytes']:
            return blocks['block_bytes'] // 1024, 'guest agent'
        reason = blocks.get('reason') or 'the guest agent reported no block size'
    return DEFAULT_BLOCK_KIB, 'assumed (x86_64 Linux default; %s)' % reason


def _essentials(view, with_current):
    """What a change is judged by: sizes, devices and (when the balloon was set) the balloon target."""
    if view is None:
        return None
    devices = [(d['model'], d['alias'], d['size_mib'], d['node'], d.get('requested_mib')) for d in view['devices']]
    return (view['size_mib'], view['total_mib'], devices, view['current_mib'] if with_current else None)


def _diff_view(view):
    if view is None:
        return None
    return dict(size_mib=view['size_mib'], total_mib=view['total_mib'], current_mib=view['current_mib'],
                devices=['%s %s %s MiB node %s%s' % (d['model'], _device_label(d), d['size_mib'], d['node'],
                                                     '' if d.get('requested_mib') is None
                                                     else ' requested %s MiB' % d['requested_mib'])
                         for d in view['devices']])


def _views(models):
    return dict((scope, memory_view(models.get(scope))) for scope in SCOPES)


class MemoryChange(Change):
    options = dict(
        size=dict(type='str'),
        model=dict(type='str', choices=['dimm', 'virtio-mem'], default='dimm'),
        dimm_size=dict(type='str'),
        numa_node=dict(type='int'),
        current_memory=dict(type='str'),
    )
    option_families = (DOMAIN_ARGS, CHANGE_ARGS)
    module_options = dict(required_one_of=[('size', 'current_memory')])

    def request(self, params):
        return request_from_params(params)

    def read(self, run):
        return read_domain(run.dom)

    def plan(self, run, state):
        params = run.params
        dom, name = run.dom, state.name
        refuse_during_migration(state, 'change the memory')
        self.scopes = scopes = resolve_scopes(state, params['live'], params['config'], run.warn)
        self.models = models = dict(live=state.live, config=state.config)
        block_kib, block_source = block_size(dom, state.live)
        plans = dict((scope, plan_memory(models[scope], run.request, block_kib, scope, name)) for scope in scopes)
        live_device_changes = [a for a in plans[LIVE].actions if not isinstance(a, SetBalloon)] if LIVE in plans else []
        if live_device_changes:
            # a TCG QEMU that still holds hot-unplugged vCPUs crashes on the next memory-map change
            refuse_if_hazardous(dom, name, 'change the memory devices')
        self.persistent = _check_persistent(dom, name, plans.get(CONFIG))
        self.before = _views(models)
        self.wait_guest = params['wait_for_guest'] and LIVE in scopes
        if params['wait_for_guest'] and LIVE not in scopes:
            run.warn('wait_for_guest ignored: domain %s is not changed live' % name)
        self.base = dict(changed=any(plan.changed for plan in plans.values()),
                         block_size=dict(mib=kib_to_mib(block_kib), source=block_source),
                         size_mib=dict((scope, dict(before=kib_to_mib(plans[scope].size_before_kib),
                                                    target=kib_to_mib(plans[scope].size_after_kib)))
                                       for scope in scopes))
        return plans

    def needs_apply(self, plan):
        # Also when nothing is to change: wait_for_guest then confirms the guest's view.
        return True

    def predict(self, run, state, plan):
        result = dict(self.base)
        after = _views(dict((scope, predict(self.models[scope], plan.get(scope))) for scope in SCOPES))
        result['actions'] = [dict(describe_action(action, scope), status='planned')
                             for scope in self.scopes for action in plan[scope].actions]
        return _finish(run.dom, result, self.before, after, state.live)

    def apply(self, run, state, plan):
        """Apply the live plan, then (only when it completed) the config plan; then wait for the guest when asked.

        Returns why the change did not complete, or None."""
        dom, name, timeout = run.dom, state.name, run.params['timeout']
        self.entries = entries = []
        self.result_ = dict(self.base, actions=entries)
        problem = _apply_scopes(dom, name, self.scopes, self.models, plan, timeout, entries, self.persistent)
        if self.wait_guest and problem is None:
            done, view, waited = wait_for(lambda: observe_guest(dom, name),
                                          lambda v: v['agree'] is True and v['guest_view'], timeout)
            view['waited'] = round(waited, 1)
            self.result_['verification'] = view
            if not done:
                problem = _guest_problem(name, view, timeout)
        return problem

    def reread(self, run, state, plan, exc):
        """After a libvirt error mid-way: what the domain looks like now, for the failed result."""
        details = dict(self.result_)
        try:
            after_snapshot = read_domain(run.dom)
        except HotplugError:
            details['memory'] = dict(before=self.before, after=None)
            # cannot re-read: what libvirt accepted
            details['changed'] = any(e.get('status') == 'done' for e in self.entries)
            return details
        after = _views(dict(live=after_snapshot.live, config=after_snapshot.config))
        details['changed'] = _changed(self.before, after, plan)
        return _finish(run.dom, details, self.before, after, after_snapshot.live)

    def observe(self, run, state, plan, outcome):
        # The state as it is now, after the guest had its time (virtio-mem's plugged size and the balloon follow
        # the guest).
        return read_domain(run.dom)

    def result(self, run, state, plan, outcome, after):
        """outcome: why the change did not complete, or None; after: the snapshot read again."""
        result = self.result_
        views = _views(dict(live=after.live, config=after.config))
        result['changed'] = _changed(self.before, views, plan)
        removal = [e for e in self.entries if e['where'] == LIVE and (
            e['action'] == 'detach' or (e['action'] == 'resize' and e['requested_mib'] < e['from_mib']))]
        if removal:
            statuses = set(e.get('status') for e in removal)
            result['unplug'] = ('rejected' if 'rejected' in statuses else 'pending' if 'pending' in statuses
                                else 'completed')
            result['unplug_devices'] = [e for e in removal if e.get('status') != 'done']
        _finish(run.dom, result, self.before, views, after.live)
        if outcome:
            raise HotplugError(outcome, **result)
        return result

    def diff(self, result):
        memory = result.get('memory')
        if not memory or memory.get('after') is None:
            return None
        before, after = memory['before'], memory['after']
        return (dict((s, _diff_view(before[s])) for s in SCOPES if before[s] is not None),
                dict((s, _diff_view(after[s])) for s in SCOPES if after[s] is not None))


def _check_persistent(dom, name, config_plan):
    """Before any write: the persistent definition the config plan leaves must boot.  None when it is unchanged."""
    if config_plan is None or not any(not isinstance(a, SetBalloon) for a in config_plan.actions):
        return None
    persistent = PersistentDefinition(dom.connect(), dom, name)
    persistent.refuse_unbootable(definition_after(persistent.original, config_plan), 'this memory change')
    return persistent


def _apply_scopes(dom, name, scopes, models, plans, timeout, entries, persistent):
    """Apply the live plan, then (only when it completed) the config plan; return why one stopped, or None."""
    for scope in scopes:
        problem = apply_plan(dom, name, models[scope], plans[scope], timeout, entries)
        if scope == CONFIG and problem is None and persistent is not None:
            persistent.written(definition_after(persistent.original, plans[scope]), 'the memory change')
        if problem:
            # The live change did not complete: leave the persistent config as it was.
            for later in scopes[scopes.index(scope) + 1:]:
                entries.extend(dict(describe_action(action, later), status='not run')
                               for action in plans[later].actions)
            return problem
    return None


def _guest_problem(name, view, timeout):
    if not view.get('guest_view'):
        return 'cannot confirm that the guest of domain %s sees its memory: %s' % (name, view.get('reason'))
    lagging = ['%s: libvirt %s MiB, QEMU %s MiB, guest online %s MiB' % (
        d['alias'], d['expected_mib'], d['qemu_plugged_mib'], d['guest_online_mib'])
        for d in view['devices'] if not d['agree']]
    stale = ''
    if view.get('stale_in_libvirt') or view.get('unknown_to_libvirt'):
        stale = '; only libvirt lists %s, only QEMU has %s' % (view['stale_in_libvirt'] or 'none',
                                                               view['unknown_to_libvirt'] or 'none')
    return ('the guest of domain %s does not show all its memory online after %s s (%s%s)'
            % (name, timeout, '; '.join(lagging) or 'views disagree', stale))


def _changed(before, after, plans):
    for scope in SCOPES:
        with_current = scope in plans and any(isinstance(a, SetBalloon) for a in plans[scope].actions)
        if _essentials(before[scope], with_current) != _essentials(after[scope], with_current):
            return True
    return False


def _finish(dom, result, before, after, live_model):
    result['memory'] = dict(before=before, after=after)
    if live_model is not None:
        result['guest_memory'] = guest_memory(dom, live_model)
    return result


def _device_label(device):
    if device['alias']:
        return device['alias']
    return 'slot %s' % device['slot'] if device['slot'] is not None else '-'
