# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Comparing the three views of a domain's memory devices: libvirt's, QEMU's and the guest's.

A hotplug is only "done" when the views agree; when they do not, the
comparison names who disagrees, so a module can report a stale libvirt view
instead of trusting it.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.scope import LIVE
from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import kib_to_mib
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.guest_agent import guest_memory_blocks
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.qemu_monitor import (
    QemuMonitorUnavailable, qemu_memory_devices,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.scope import read_model


def compare_memory_views(libvirt_devices, qemu_devices=None, guest_blocks=None):
    """Compare libvirt's memory devices with QEMU's and with the guest's online memory blocks.

    libvirt_devices: MemoryDevice entries of the live definition.  qemu_devices:
    qemu_memory_devices() (None when unknown).  guest_blocks: the guest agent's
    guest_memory_blocks() (None or available=False when unknown).

    Per device, the memory the guest should have from it (a DIMM's size, a
    virtio-mem device's requested size) is compared with what QEMU says is
    plugged and with the guest blocks online inside the device's address range
    (a partly plugged virtio-mem memory block is online as a whole).
    Blocks outside every device (boot memory) are not judged.  Returns a dict
    with `agree` (None when the guest's view is unknown and the rest agrees),
    per-device details, and the aliases only libvirt or only QEMU knows.
    """
    guest_known = bool(guest_blocks and guest_blocks.get('available') and guest_blocks.get('block_bytes'))
    block_bytes = guest_blocks['block_bytes'] if guest_known else None
    online = guest_blocks['online'] if guest_known else ()
    result = dict(agree=True, devices=[], stale_in_libvirt=[], unknown_to_libvirt=[],
                  guest_view=guest_known, qemu_view=qemu_devices is not None)
    for device in libvirt_devices:
        expected = (device.requested_kib or 0) if device.model == 'virtio-mem' else device.size_kib
        entry = dict(alias=device.alias, model=device.model, expected_mib=kib_to_mib(expected), qemu_plugged_mib=None,
                     guest_online_mib=None, agree=True)
        qemu = (qemu_devices or {}).get(device.alias)
        if qemu_devices is not None:
            if qemu is None:
                result['stale_in_libvirt'].append(device.alias)
                entry['agree'] = False
            else:
                plugged = (qemu.get('size') or 0) // 1024
                entry['qemu_plugged_mib'] = kib_to_mib(plugged)
                if plugged != expected:
                    entry['agree'] = False
                if device.model == 'virtio-mem' and device.current_kib is not None and device.current_kib != plugged:
                    entry['libvirt_current_mib'] = kib_to_mib(device.current_kib)  # libvirt has not caught up
                    entry['agree'] = False
        if guest_known and qemu is not None and qemu.get('addr') is not None:
            start = qemu['addr']
            length = qemu.get('max_size') or qemu.get('size') or 0
            first = start // block_bytes
            last = (start + length - 1) // block_bytes
            online_kib = sum(1 for b in online if first <= b <= last) * block_bytes // 1024
            entry['guest_online_mib'] = kib_to_mib(online_kib)
            # virtio-mem plugs in device blocks (2 MiB): a partly plugged memory block is online as a whole.
            block_kib = block_bytes // 1024
            if online_kib != -(-expected // block_kib) * block_kib:
                entry['agree'] = False
        if not entry['agree']:
            result['agree'] = False
        result['devices'].append(entry)
    if qemu_devices is not None:
        known = set(d.alias for d in libvirt_devices)
        result['unknown_to_libvirt'] = sorted(alias for alias in qemu_devices if alias not in known)
        if result['unknown_to_libvirt']:
            result['agree'] = False
    if result['agree'] and not guest_known and libvirt_devices:
        result['agree'] = None
    return result


def observe_guest(dom, name):
    """libvirt's, QEMU's and the guest's view of the live memory devices, compared."""
    try:
        live = read_model(dom, LIVE, name)
    except HotplugError as exc:
        return dict(agree=False, guest_view=False, reason='cannot read the live XML: %s' % exc.msg)
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
