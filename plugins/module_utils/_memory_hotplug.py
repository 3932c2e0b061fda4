# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The work of kvm.hotplug.memory_hotplug: lock, read, plan, apply, re-read, wait for the guest, report.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import time

from ansible_collections.kvm.hotplug.plugins.module_utils._domain_lock import DomainLock
from ansible_collections.kvm.hotplug.plugins.module_utils._domain_model import DomainXMLError, parse_domain_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._domain_runtime import read_domain, refuse_during_migration
from ansible_collections.kvm.hotplug.plugins.module_utils._tcg_hazard import refuse_if_hazardous
from ansible_collections.kvm.hotplug.plugins.module_utils._guest_agent import guest_memory, guest_memory_blocks
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt_connection import (
    HotplugError, LibvirtSession, lookup_domain, libvirt,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._definition_write import PersistentDefinition
from ansible_collections.kvm.hotplug.plugins.module_utils._memory_apply import apply_plan, definition_after
from ansible_collections.kvm.hotplug.plugins.module_utils._memory_plan import (
    DEFAULT_BLOCK_KIB, DIMM, SetBalloon, MemoryRequest, describe_action, memory_view, plan_memory, predict,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._qemu_monitor import (
    QemuMonitorUnavailable, qemu_memory_devices,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._units import kib_to_mib, parse_size_kib
from ansible_collections.kvm.hotplug.plugins.module_utils._verify import compare_memory_views
from ansible_collections.kvm.hotplug.plugins.module_utils._waiting import wait_for

SIDES = ('live', 'config')


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


def choose_sides(snapshot, live, config, warn):
    """Which definitions to change: 'live' when the domain runs, 'config' when it is persistent."""
    name = snapshot.name
    if not live and not config:
        raise HotplugError('nothing to change on domain %s: live and config are both false' % name)
    sides = []
    if live:
        if snapshot.active:
            sides.append('live')
        elif config:
            warn('domain %s is %s: live is ignored, only the persistent config is changed'
                 % (name, snapshot.state))
        else:
            raise HotplugError('domain %s is %s: live changes need a running domain (set config: true to change '
                               'the persistent definition instead)' % (name, snapshot.state))
    if config:
        if snapshot.persistent:
            sides.append('config')
        elif sides:
            warn('domain %s is transient (no persistent definition): config ignored' % name)
        else:
            raise HotplugError('domain %s is transient (no persistent definition) and live=false: nothing to change'
                               % name)
    return sides


def block_size(dom, live_model):
    """(guest memory block size in KiB, where it came from): the guest agent, else the x86_64 default."""
    reason = 'the domain is not running'
    if live_model is not None:
        blocks = guest_memory_blocks(dom, live_model)
        if blocks['available'] and blocks['block_bytes']:
            return blocks['block_bytes'] // 1024, 'guest agent'
        reason = blocks.get('reason') or 'the guest agent reported no block size'
    return DEFAULT_BLOCK_KIB, 'assumed (x86_64 Linux default; %s)' % reason


def observe_guest(dom):
    """libvirt's, QEMU's and the guest's view of the live memory devices, compared."""
    try:
        live = parse_domain_xml(dom.XMLDesc(0))
    except (libvirt.libvirtError, DomainXMLError) as exc:
        return dict(agree=False, guest_view=False, reason='cannot read the live XML: %s' % exc)
    try:
        qemu = qemu_memory_devices(dom)
        qemu_reason = None
    except QemuMonitorUnavailable as exc:
        qemu, qemu_reason = None, str(exc)
    blocks = guest_memory_blocks(dom, live)
    view = compare_memory_views(live.memory_devices, qemu, blocks)
    if blocks.get('available') and blocks.get('block_bytes'):
        view['guest_online_mib'] = len(blocks['online']) * blocks['block_bytes'] // (1024 * 1024)
    else:
        view['reason'] = 'the guest\'s view is unavailable: %s' % blocks.get('reason', 'no block size')
    if qemu_reason:
        view['qemu_reason'] = qemu_reason
    return view


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


def _views(snapshot_or_models):
    return dict((side, memory_view(snapshot_or_models.get(side))) for side in SIDES)


def run(module):
    """The module body: returns the result dict or raises HotplugError."""
    started = time.monotonic()
    params = module.params
    request = request_from_params(params)
    try:
        with LibvirtSession(params['uri']) as conn:
            dom = lookup_domain(conn, params['name'])
            with DomainLock(dom.UUIDString(), dom.name(), params['timeout']):
                result = _run_locked(module, dom, request)
    except HotplugError as exc:
        exc.details['elapsed'] = round(time.monotonic() - started, 2)
        raise
    result['elapsed'] = round(time.monotonic() - started, 2)
    return result


def _run_locked(module, dom, request):
    params = module.params
    timeout = params['timeout']
    snapshot = read_domain(dom)
    name = snapshot.name
    refuse_during_migration(snapshot, 'change the memory')
    sides = choose_sides(snapshot, params['live'], params['config'], module.warn)
    models = dict(live=snapshot.live, config=snapshot.config)
    block_kib, block_source = block_size(dom, snapshot.live)
    plans = dict((side, plan_memory(models[side], request, block_kib, side, name)) for side in sides)
    live_device_changes = [a for a in plans['live'].actions if not isinstance(a, SetBalloon)] if 'live' in plans else []
    if live_device_changes:
        # a TCG QEMU that still holds hot-unplugged vCPUs crashes on the next memory-map change
        refuse_if_hazardous(dom, name, 'change the memory devices')
    persistent = _check_persistent(dom, name, plans.get('config'))
    before = _views(models)
    wait_guest = params['wait_for_guest'] and 'live' in sides
    if params['wait_for_guest'] and 'live' not in sides:
        module.warn('wait_for_guest ignored: domain %s is not changed live' % name)

    result = dict(changed=any(plan.changed for plan in plans.values()),
                  block_size=dict(mib=kib_to_mib(block_kib), source=block_source),
                  size_mib=dict((side, dict(before=kib_to_mib(plans[side].size_before_kib),
                                            target=kib_to_mib(plans[side].size_after_kib))) for side in sides))

    if module.check_mode:
        after = _views(dict((side, predict(models[side], plans.get(side))) for side in SIDES))
        result['actions'] = [dict(describe_action(action, side), status='planned')
                             for side in sides for action in plans[side].actions]
        return _finish(module, dom, result, before, after, snapshot.live)

    entries = []
    problem = _apply_sides(module, dom, name, sides, models, plans, timeout, result, before, entries, persistent)
    result['actions'] = entries
    if wait_guest and problem is None:
        done, view, waited = wait_for(lambda: observe_guest(dom), lambda v: v['agree'] is True and v['guest_view'],
                                      timeout)
        view['waited'] = round(waited, 1)
        result['verification'] = view
        if not done:
            problem = _guest_problem(name, view, timeout)

    # Report the state as it is now, after the guest had its time (virtio-mem's plugged size and the balloon
    # follow the guest).
    after_snapshot = read_domain(dom)
    after = _views(dict(live=after_snapshot.live, config=after_snapshot.config))
    result['changed'] = _changed(before, after, plans)
    removal = [e for e in entries if e['where'] == 'live' and (
        e['action'] == 'detach' or (e['action'] == 'resize' and e['requested_mib'] < e['from_mib']))]
    if removal:
        statuses = set(e.get('status') for e in removal)
        result['unplug'] = 'rejected' if 'rejected' in statuses else 'pending' if 'pending' in statuses else 'completed'
        result['unplug_devices'] = [e for e in removal if e.get('status') != 'done']
    _finish(module, dom, result, before, after, after_snapshot.live)
    if problem:
        raise HotplugError(problem, **result)
    return result


def _check_persistent(dom, name, config_plan):
    """Before any write: the persistent definition the config plan leaves must boot.  None when it is unchanged."""
    if config_plan is None or not any(not isinstance(a, SetBalloon) for a in config_plan.actions):
        return None
    persistent = PersistentDefinition(dom.connect(), dom, name)
    persistent.refuse_unbootable(definition_after(persistent.original, config_plan), 'this memory change')
    return persistent


def _apply_sides(module, dom, name, sides, models, plans, timeout, result, before, entries, persistent):
    """Apply the live plan, then (only when it completed) the config plan; return why one stopped, or None."""
    try:
        for side in sides:
            problem = apply_plan(dom, name, models[side], plans[side], timeout, entries)
            if side == 'config' and problem is None and persistent is not None:
                persistent.written(definition_after(persistent.original, plans[side]), 'the memory change')
            if problem:
                # The live change did not complete: leave the persistent config as it was.
                for later in sides[sides.index(side) + 1:]:
                    entries.extend(dict(describe_action(action, later), status='not run')
                                   for action in plans[later].actions)
                return problem
    except HotplugError as exc:
        exc.details.update(_reread_report(module, dom, result, before, plans, entries))
        raise
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
    for side in SIDES:
        with_current = side in plans and any(isinstance(a, SetBalloon) for a in plans[side].actions)
        if _essentials(before[side], with_current) != _essentials(after[side], with_current):
            return True
    return False


def _reread_report(module, dom, result, before, plans, entries):
    """After a libvirt error mid-way: what the domain looks like now, for the failed result."""
    details = dict(result, actions=entries)
    try:
        snapshot = read_domain(dom)
    except HotplugError:
        details['memory'] = dict(before=before, after=None)
        details['changed'] = any(e.get('status') == 'done' for e in entries)  # cannot re-read: what libvirt accepted
        return details
    after = _views(dict(live=snapshot.live, config=snapshot.config))
    details['changed'] = _changed(before, after, plans)
    _finish(module, dom, details, before, after, snapshot.live)
    return details


def _finish(module, dom, result, before, after, live_model):
    result['memory'] = dict(before=before, after=after)
    if live_model is not None:
        result['guest_memory'] = guest_memory(dom, live_model)
    if module._diff:
        result['diff'] = dict(before=dict((s, _diff_view(before[s])) for s in SIDES if before[s] is not None),
                              after=dict((s, _diff_view(after[s])) for s in SIDES if after[s] is not None))
    return result


def _device_label(device):
    if device['alias']:
        return device['alias']
    return 'slot %s' % device['slot'] if device['slot'] is not None else '-'
