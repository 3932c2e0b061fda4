# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a memory plan should produce (check mode, diff) and the result entry of each planned action.

Pure; sizes are KiB inside, MiB in results.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import dataclasses

from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import kib_to_mib
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import MemoryDevice
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.plan import (
    AddDimm, AddVirtioMem, RemoveDimm, ResizeVirtioMem, SetBalloon, current_after_kib,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.sizes import DIMM, VIRTIO_MEM, boot_memory_kib


def predict(model, plan):
    """The definition the plan should produce, assuming the guest plugs and unplugs everything asked of it."""
    if model is None or plan is None or not plan.changed:
        return model
    removed = set(a.index for a in plan.actions if isinstance(a, RemoveDimm))
    resized = dict((a.index, a.to_kib) for a in plan.actions if isinstance(a, ResizeVirtioMem))
    devices = []
    for i, device in enumerate(model.memory_devices):
        if i in removed:
            continue
        if i in resized:
            device = dataclasses.replace(device, requested_kib=resized[i], current_kib=resized[i])
        devices.append(device)
    for action in plan.actions:
        if isinstance(action, AddDimm):
            devices.append(MemoryDevice(model=DIMM, alias=None, size_kib=action.size_kib, node=action.node,
                                        slot=None, base=None))
        elif isinstance(action, AddVirtioMem):
            devices.append(MemoryDevice(model=VIRTIO_MEM, alias=None, size_kib=action.size_kib, node=action.node,
                                        slot=None, base=None, requested_kib=action.requested_kib,
                                        current_kib=action.requested_kib, block_kib=action.block_kib))
    libvirt_total = boot_memory_kib(model) + sum(d.size_kib for d in devices)
    balloon = [a for a in plan.actions if isinstance(a, SetBalloon)]
    if balloon:
        current = balloon[-1].to_kib
    else:
        current = current_after_kib(model, plan.scope, plan.actions, plan.size_after_kib - plan.size_before_kib)
    return dataclasses.replace(model, memory_devices=tuple(devices), memory_kib=libvirt_total,
                               current_memory_kib=current)


def describe_action(action, scope):
    """A result entry for one planned action (MiB)."""
    entry = dict(where=scope)
    if isinstance(action, AddDimm):
        entry.update(action='attach', model=DIMM, size_mib=kib_to_mib(action.size_kib), node=action.node)
    elif isinstance(action, RemoveDimm):
        entry.update(action='detach', model=DIMM, alias=action.alias, size_mib=kib_to_mib(action.size_kib),
                     node=action.dimm.node, slot=action.dimm.slot)
    elif isinstance(action, AddVirtioMem):
        entry.update(action='attach', model=VIRTIO_MEM, size_mib=kib_to_mib(action.size_kib), node=action.node,
                     requested_mib=kib_to_mib(action.requested_kib))
    elif isinstance(action, ResizeVirtioMem):
        entry.update(action='resize', model=VIRTIO_MEM, alias=action.alias, node=action.node,
                     from_mib=kib_to_mib(action.from_kib), requested_mib=kib_to_mib(action.to_kib))
    elif isinstance(action, SetBalloon):
        entry.update(action='balloon', from_mib=kib_to_mib(action.from_kib), current_mib=kib_to_mib(action.to_kib))
    return entry
