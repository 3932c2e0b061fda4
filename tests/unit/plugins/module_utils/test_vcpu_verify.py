from __future__ import annotations

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu.verify import (
    COMPLETE, GUEST_PENDING, PARTIAL, PENDING, STALE, UNVERIFIED, VcpuViews, classify, views_disagree,
)


def views(libvirt, qemu, guest_online=None):
    guest = None if guest_online is None else dict(available=True, online_count=guest_online)
    return VcpuViews(libvirt_enabled=tuple(libvirt), qemu_present=None if qemu is None else tuple(qemu),
                     qemu_error=None, guest=guest)


@pytest.mark.parametrize('target, before, seen, want_guest, outcome', [
    ((0, 1, 2, 3), (0, 1), views([0, 1, 2, 3], [0, 1, 2, 3], 4), True, COMPLETE),
    ((0, 1, 2, 3), (0, 1), views([0, 1, 2, 3], [0, 1, 2, 3], 2), True, GUEST_PENDING),
    ((0, 1, 2, 3), (0, 1), views([0, 1, 2, 3], [0, 1, 2, 3], 2), False, COMPLETE),
    ((0, 1), (0, 1, 2, 3), views([0, 1, 2, 3], [0, 1], 2), True, STALE),          # TCG: no DEVICE_DELETED
    ((0, 1), (0, 1, 2, 3), views([0, 1, 2, 3], [0, 1, 2, 3], 4), True, PENDING),  # guest has not ejected
    ((0, 1), (0, 1, 2, 3), views([0, 1, 2, 3], [0, 1, 2], 3), True, PENDING),     # one of two ejected
    ((0, 1, 2, 3), (0, 1), views([0, 1, 2], [0, 1, 2], 3), True, PARTIAL),        # one add failed
    ((0, 1), (0, 1, 2), views([0, 1], None), False, UNVERIFIED),                  # QEMU not asked
    ((0, 1), (0, 1, 2), views([0, 1, 2], None), False, PARTIAL),
])
def test_classify(target, before, seen, want_guest, outcome):
    assert classify(target, before, seen, want_guest) == outcome


def test_views_disagree():
    assert views_disagree(views([0, 1, 2], [0, 1]))
    assert not views_disagree(views([0, 1], [0, 1]))
    assert not views_disagree(views([0, 1], None))
