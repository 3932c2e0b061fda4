# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A QEMU hazard under TCG after a vCPU hot-unplug, and the marker that protects against it.

Under TCG (libvirt <domain type='qemu'>), QEMU up to at least 10.0 does not
finalize an x86 vCPU after its hot-unplug: the vCPU's address spaces keep a
reference to it (so QEMU never sends DEVICE_DELETED and libvirt times out), and
its TCG memory listeners stay registered on freed TLB memory, so the next
memory-map change of that QEMU process (hot-adding a vCPU, a DIMM, a PCI
device) crashes QEMU with heap corruption.  When a module sees that happen
(QEMU removed the vCPU, libvirt never got the event), it records the vCPU ids
in the domain's live metadata; while the marker is there, hot-add of vCPUs and
memory is refused.  The live metadata disappears when the domain is shut down
and started again, which is also what clears the hazard.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.scope import LIVE
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import etree
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.metadata import (
    TCG_HAZARD, read_metadata, write_metadata,
)

METADATA_URI = TCG_HAZARD.uri


def leaked_vcpus(dom):
    """vCPU ids that QEMU removed without finalizing, as recorded in the live metadata; () when none."""
    text = read_metadata(dom, TCG_HAZARD, LIVE)
    return parse_cpulist(etree.fromstring(text).get('vcpus', '')) if text else ()


def mark_leaked_vcpus(dom, vcpu_ids):
    """Record (add to) the leaked vCPU ids in the domain's live metadata."""
    ids = sorted(set(leaked_vcpus(dom)) | set(vcpu_ids))
    element = etree.Element('tcg-unplugged-vcpus', vcpus=format_cpulist(ids))
    write_metadata(dom, TCG_HAZARD, LIVE, etree.tostring(element).decode())


def refuse_if_hazardous(dom, name, what):
    """Refuse a change that maps new memory into a TCG QEMU process that holds unfinalized vCPUs."""
    leaked = leaked_vcpus(dom)
    if leaked:
        raise HotplugError(
            'refusing to %s on domain %s: it runs under TCG and its QEMU process still holds vCPUs %s that were '
            'hot-unplugged earlier; QEMU (up to at least 10.0) does not finalize an unplugged vCPU under TCG and '
            'crashes on the next memory-map change. Shut the domain down and start it again first.'
            % (what, name, format_cpulist(leaked)), tcg_unplugged_vcpus=list(leaked))
