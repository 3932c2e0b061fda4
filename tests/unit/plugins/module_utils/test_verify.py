from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu.verify import compare_vcpu_views


def test_all_views_agree():
    result = compare_vcpu_views([0, 1, 2], [0, 1, 2], 3)
    assert result['agree'] is True
    assert result['stale_in_libvirt'] == [] and result['unknown_to_libvirt'] == []


def test_libvirt_stale_after_timed_out_unplug():
    # QEMU removed vCPU 2 and the guest has 2 CPUs online, libvirt still lists vCPU 2
    result = compare_vcpu_views([0, 1, 2], [0, 1], 2)
    assert result['agree'] is False
    assert result['stale_in_libvirt'] == [2]


def test_vcpu_unknown_to_libvirt():
    result = compare_vcpu_views([0, 1], [0, 1, 3], None)
    assert result['agree'] is False
    assert result['unknown_to_libvirt'] == [3]


def test_guest_has_not_onlined_yet():
    result = compare_vcpu_views([0, 1, 2, 3], [0, 1, 2, 3], 2)
    assert result['agree'] is False


def test_unknown_views_are_not_disagreement():
    result = compare_vcpu_views([0, 1], None, None)
    assert result['agree'] is True
    assert result['qemu_present'] is None
