# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Comparing the three views of a running domain: libvirt's, QEMU's and the guest's.

A hotplug is only "done" when the views agree; when they do not, the
comparison names who disagrees, so a module can report a stale libvirt view
instead of trusting it.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations


def compare_vcpu_views(libvirt_enabled, qemu_present=None, guest_online_count=None):
    """Compare enabled vCPU ids in libvirt with QEMU's present vCPU ids and the guest's online count.

    qemu_present and guest_online_count are None when that view is unknown.
    Returns a dict with `agree` and, where views differ, which ids are
    stale in libvirt (listed by libvirt, gone from QEMU) or unknown to
    libvirt (present in QEMU, not enabled in libvirt).
    """
    libvirt_ids = sorted(set(libvirt_enabled))
    result = dict(libvirt_enabled=libvirt_ids, qemu_present=None, guest_online_count=guest_online_count,
                  stale_in_libvirt=[], unknown_to_libvirt=[], agree=True)
    if qemu_present is not None:
        qemu_ids = sorted(set(qemu_present))
        result['qemu_present'] = qemu_ids
        result['stale_in_libvirt'] = sorted(set(libvirt_ids) - set(qemu_ids))
        result['unknown_to_libvirt'] = sorted(set(qemu_ids) - set(libvirt_ids))
        if result['stale_in_libvirt'] or result['unknown_to_libvirt']:
            result['agree'] = False
    if guest_online_count is not None:
        expected = len(result['qemu_present']) if result['qemu_present'] is not None else len(libvirt_ids)
        if guest_online_count != expected:
            result['agree'] = False
    return result
