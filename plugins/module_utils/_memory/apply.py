# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Carrying out a memory plan on one definition (live or config) of a domain, and watching unplugs finish.

Removing memory is asynchronous: libvirt asks the guest to release a DIMM and
returns after about 5 s whether or not the guest has done it, and a virtio-mem
device shrinks only as fast as the guest's driver unplugs.  So every removal
is followed by polling the live XML and QEMU until the memory is really gone
or the timeout passes; then the unplug is reported `pending` (or `rejected`
when libvirt says the guest refused), never as done.  Actions stop at the
first one that does not complete.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import time
import traceback

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.scope import CONFIG, LIVE
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import call, error_code, error_text, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_edit import (
    with_memory_device, with_requested_size, without_memory_device,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.scope import affect_flag, read_model, read_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.devices import (
    dimm_xml, existing_device_xml, virtio_mem_xml, with_requested,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.plan import (
    AddDimm, AddVirtioMem, RemoveDimm, ResizeVirtioMem, SetBalloon,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.predict import describe_action
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.qemu_monitor import (
    QemuMonitorUnavailable, qemu_memory_devices,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import format_kib, kib_to_mib
from ansible_collections.kvm.hotplug.plugins.module_utils._common.waiting import wait_for

# Statuses of one action in the result.
DONE = 'done'
PENDING = 'pending'      # asked, the guest has not finished (yet): the memory is still there
REJECTED = 'rejected'    # the guest refused to release the memory
NOT_RUN = 'not run'      # skipped because an earlier action did not complete
FAILED = 'failed'        # libvirt refused the call


def definition_after(xml_text, plan):
    """The domain XML as the plan's device actions leave it (the balloon target is no part of what is checked)."""
    for action in plan.actions:
        if isinstance(action, ResizeVirtioMem):
            xml_text = with_requested_size(xml_text, action.index, action.to_kib)
    # plan indexes are positions in the definition the plan was made from: remove from the end first
    for index in sorted((a.index for a in plan.actions if isinstance(a, RemoveDimm)), reverse=True):
        xml_text = without_memory_device(xml_text, index)
    for action in plan.actions:
        if isinstance(action, AddDimm):
            xml_text = with_memory_device(xml_text, dimm_xml(action.size_kib, action.node))
        elif isinstance(action, AddVirtioMem):
            xml_text = with_memory_device(xml_text, virtio_mem_xml(action.size_kib, action.node, action.block_kib,
                                                                   action.requested_kib))
    return xml_text


def apply_plan(dom, name, model, plan, timeout, entries):
    """Run plan's actions on the definition `plan.scope` of dom, in order.

    model is the definition the plan was made from.  Appends one result entry
    per action, with its status, to `entries` as it goes, and returns a
    one-line reason when an action did not complete (later ones are not run),
    else None.  libvirt errors raise HotplugError, with the failing action's
    entry marked `failed`; the caller re-reads the domain and reports.
    """
    scope = plan.scope
    domain_xml = read_xml(dom, scope, name, 'reading the %s XML of domain %s' % (scope, name))
    problem = None
    for action in plan.actions:
        entry = describe_action(action, scope)
        entries.append(entry)
        if problem is not None:
            entry['status'] = NOT_RUN
            continue
        try:
            problem = _apply_action(dom, name, scope, model, action, domain_xml, timeout, entry)
        except HotplugError:
            entry['status'] = FAILED
            raise
    return problem


def _apply_action(dom, name, scope, model, action, domain_xml, timeout, entry):
    """Run one action and fill in its entry; return why it did not complete, or None."""
    if isinstance(action, AddDimm):
        _attach(dom, name, scope, dimm_xml(action.size_kib, action.node),
                'a %s DIMM on NUMA cell %d' % (format_kib(action.size_kib), action.node))
        entry['status'] = DONE
        return None
    if isinstance(action, AddVirtioMem):
        _attach(dom, name, scope, virtio_mem_xml(action.size_kib, action.node, action.block_kib,
                                                 action.requested_kib),
                'a virtio-mem device of %s on NUMA cell %d' % (format_kib(action.size_kib), action.node))
        entry['status'] = DONE
        return None
    if isinstance(action, SetBalloon):
        return _set_balloon(dom, name, scope, action, timeout, entry)
    device_xml = existing_device_xml(domain_xml, action.index, model.memory_devices[action.index])
    if device_xml is None:
        raise HotplugError('domain %s changed while this task ran (its %s memory devices are not the ones '
                           'planned from); nothing more was changed' % (name, scope))
    if isinstance(action, RemoveDimm):
        return _remove_dimm(dom, name, scope, action, device_xml, timeout, entry)
    return _resize_virtio_mem(dom, name, scope, action, device_xml, timeout, entry)


def _attach(dom, name, scope, xml, what):
    call('attaching %s to domain %s (%s)' % (what, name, scope), dom.attachDeviceFlags, xml, affect_flag(scope))


def _remove_dimm(dom, name, scope, action, device_xml, timeout, entry):
    what = 'DIMM %s (%s)' % (action.alias or 'in slot %s' % action.dimm.slot, format_kib(action.size_kib))
    if scope == CONFIG:
        call('detaching %s from domain %s (config)' % (what, name), dom.detachDeviceFlags, device_xml,
             affect_flag(scope))
        entry['status'] = DONE
        return None
    asked = time.monotonic()
    try:
        dom.detachDeviceFlags(device_xml, affect_flag(scope))
    except libvirt.libvirtError as exc:
        if not guest_rejected(exc):
            raise HotplugError('detaching %s from domain %s (live): %s' % (what, name, error_text(exc)),
                               exception=traceback.format_exc(), libvirt_error_code=error_code(exc))
        entry.update(status=REJECTED, reason=error_text(exc))
        return ('the guest of domain %s rejected the unplug of %s (%s): it could not offline that memory, '
                'which stays plugged' % (name, what, error_text(exc)))
    # libvirt itself waits up to about 5 s for the guest; the timeout counts from the request.
    spent = time.monotonic() - asked
    done, seen, waited = wait_for(lambda: _device_presence(dom, name, action.alias), _is_gone, max(0, timeout - spent))
    entry['waited'] = round(spent + waited, 1)
    if done:
        entry['status'] = DONE
        return None
    entry.update(status=PENDING, still_listed_by=[k for k in ('libvirt', 'qemu') if seen.get(k)])
    return ('the guest of domain %s has not released %s within %s s: the unplug is pending and the device is '
            'still listed by %s' % (name, what, timeout, ' and '.join(entry['still_listed_by'])))


def guest_rejected(exc):
    """libvirt's error when the guest answered an unplug request with a failure (DEVICE_REMOVAL_FAILED)."""
    return 'rejected by the guest' in error_text(exc)


def _device_presence(dom, name, alias):
    """Whether libvirt's live XML and QEMU still have the memory device `alias` (QEMU: None when unknown)."""
    try:
        in_libvirt = any(d.alias == alias for d in read_model(dom, LIVE, name).memory_devices)
    except HotplugError:
        in_libvirt = True
    try:
        in_qemu = alias in qemu_memory_devices(dom)
    except QemuMonitorUnavailable:
        in_qemu = None
    return dict(libvirt=in_libvirt, qemu=in_qemu)


def _is_gone(presence):
    return not presence['libvirt'] and not presence['qemu']


def _resize_virtio_mem(dom, name, scope, action, device_xml, timeout, entry):
    what = 'virtio-mem device %s' % (action.alias or 'on NUMA cell %s' % action.node)
    call('setting the requested size of %s of domain %s to %s (%s)' % (what, name, format_kib(action.to_kib), scope),
         dom.updateDeviceFlags, with_requested(device_xml, action.to_kib), affect_flag(scope))
    entry['status'] = DONE
    if scope == CONFIG or action.to_kib >= action.from_kib:
        return None
    # Shrinking: the memory is only gone once the guest's driver has unplugged it (QEMU's size), and libvirt's
    # <current> follows QEMU's size-change events (rate-limited to about one a second).
    done, plugged, waited = wait_for(lambda: _virtio_mem_plugged(dom, name, action.alias),
                                     lambda seen: _all_at_most(seen, action.to_kib), timeout)
    entry['waited'] = round(waited, 1)
    if done:
        return None
    entry.update(status=PENDING, plugged_mib=dict((k, kib_to_mib(v)) for k, v in plugged.items()))
    return ('the guest of domain %s has not unplugged %s down to %s within %s s (still plugged: %s): '
            'the unplug is pending' % (name, what, format_kib(action.to_kib), timeout,
                                       ', '.join('%s %s' % (format_kib(v), k) if v is not None else '%s unknown' % k
                                                 for k, v in sorted(plugged.items()))))


def _all_at_most(seen, kib):
    known = [v for v in seen.values() if v is not None]
    return bool(known) and all(v <= kib for v in known)


def _virtio_mem_plugged(dom, name, alias):
    """What the guest has plugged of a virtio-mem device in KiB, by QEMU (its size) and libvirt (<current>)."""
    seen = dict(qemu=None, libvirt=None)
    try:
        device = qemu_memory_devices(dom).get(alias)
        if device is not None and device.get('size') is not None:
            seen['qemu'] = device['size'] // 1024
    except QemuMonitorUnavailable:
        pass
    try:
        for device in read_model(dom, LIVE, name).memory_devices:
            if device.alias == alias:
                seen['libvirt'] = device.current_kib
    except HotplugError:
        pass
    return seen


def _set_balloon(dom, name, scope, action, timeout, entry):
    call('setting the balloon target of domain %s to %s (%s)' % (name, format_kib(action.to_kib), scope),
         dom.setMemoryFlags, action.to_kib, affect_flag(scope))
    entry['status'] = DONE
    if scope == CONFIG:
        return None
    done, current, waited = wait_for(lambda: _live_current_memory(dom, name), lambda kib: kib == action.to_kib, timeout)
    entry['waited'] = round(waited, 1)
    if done:
        return None
    entry.update(status=PENDING, current_mib=kib_to_mib(current) if current is not None else None)
    return ('the balloon of domain %s has not reached %s within %s s (now %s): is the guest\'s virtio_balloon '
            'driver loaded?' % (name, format_kib(action.to_kib), timeout,
                                format_kib(current) if current is not None else 'unknown'))


def _live_current_memory(dom, name):
    try:
        return read_model(dom, LIVE, name).current_memory_kib
    except HotplugError:
        return None
