# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading and judging the three views of a domain's vCPUs after (or before) a change.

libvirt's enabled vCPUs (live XML), QEMU's present vCPUs (query-cpus-fast) and
the guest's online CPU count (guest agent).  `classify` names what really
happened, so the module reports it instead of libvirt's return code.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.kvm.hotplug.plugins.module_utils._common.scope import LIVE
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.guest_agent import guest_vcpus
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.scope import read_model
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.qemu_monitor import QemuMonitorUnavailable, qemu_vcpus

# What happened to a live change, from the three views:
COMPLETE = 'complete'            # libvirt and QEMU (and the guest, when asked) have the target
STALE = 'stale'                  # QEMU has the target, libvirt still lists vCPUs QEMU removed (or misses added ones)
PENDING = 'pending'              # QEMU still has vCPUs that were to be removed: the guest has not ejected them
PARTIAL = 'partial'              # some of the change happened in QEMU, not all of it, for other reasons
GUEST_PENDING = 'guest_pending'  # libvirt and QEMU are done, the guest does not show the target yet
UNVERIFIED = 'unverified'        # libvirt says done but QEMU could not be asked


@dataclass(frozen=True)
class VcpuViews:
    libvirt_enabled: tuple
    qemu_present: tuple | None
    qemu_error: str | None
    guest: dict | None

    @property
    def guest_online_count(self):
        if self.guest and self.guest.get('available'):
            return self.guest['online_count']
        return None

    def to_dict(self):
        return dict(libvirt_enabled=list(self.libvirt_enabled),
                    qemu_present=None if self.qemu_present is None else list(self.qemu_present),
                    qemu_error=self.qemu_error,
                    guest_online=self.guest_online_count)


def observe(dom, name, with_qemu, with_guest):
    """Read libvirt's live vCPUs, and QEMU's and the guest's when asked."""
    model = read_model(dom, LIVE, name)
    qemu_present = qemu_error = None
    if with_qemu:
        try:
            qemu_present = tuple(sorted(qemu_vcpus(dom)))
        except QemuMonitorUnavailable as exc:
            qemu_error = str(exc)
    guest = guest_vcpus(dom, model) if with_guest else None
    return VcpuViews(libvirt_enabled=tuple(model.enabled_vcpu_ids), qemu_present=qemu_present,
                     qemu_error=qemu_error, guest=guest)


def classify(target, before, views, want_guest):
    """Name the outcome of moving the live vCPUs from `before` to `target` given the views now."""
    target = set(target)
    before = set(before)
    libvirt_ok = set(views.libvirt_enabled) == target
    if views.qemu_present is None:
        if not libvirt_ok:
            return PARTIAL
        qemu_ok = None
    else:
        qemu = set(views.qemu_present)
        qemu_ok = qemu == target
        if not qemu_ok:
            to_remove = before - target
            to_add = target - before
            if to_remove and (qemu & to_remove) and not (to_add - qemu):
                return PENDING
            return PARTIAL
        if not libvirt_ok:
            return STALE
    if want_guest and views.guest_online_count != len(target):
        return GUEST_PENDING
    return COMPLETE if qemu_ok else UNVERIFIED


def stale_view(libvirt_enabled, qemu_present):
    """What makes libvirt's view stale, the one definition of it: (vCPUs libvirt lists that QEMU no longer has,
    vCPUs QEMU has that libvirt does not list as enabled), sorted; None when QEMU's view is unknown."""
    if qemu_present is None:
        return None
    return sorted(set(libvirt_enabled) - set(qemu_present)), sorted(set(qemu_present) - set(libvirt_enabled))


def views_disagree(views):
    """True when libvirt and QEMU disagree about which vCPUs exist (a stale libvirt view)."""
    stale = stale_view(views.libvirt_enabled, views.qemu_present)
    return stale is not None and any(stale)


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
    stale = stale_view(libvirt_ids, qemu_present)
    if stale is not None:
        result['qemu_present'] = sorted(set(qemu_present))
        result['stale_in_libvirt'], result['unknown_to_libvirt'] = stale
        if any(stale):
            result['agree'] = False
    if guest_online_count is not None:
        expected = len(result['qemu_present']) if result['qemu_present'] is not None else len(libvirt_ids)
        if guest_online_count != expected:
            result['agree'] = False
    return result
