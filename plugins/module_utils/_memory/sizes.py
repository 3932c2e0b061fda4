# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a memory definition holds, in the sense of memory_hotplug's `size` option.

"size" is the domain's memory as a user counts it: the boot memory (the guest NUMA cells, which cannot
change while the domain runs) plus every DIMM plus the requested size of every virtio-mem device.
libvirt's own <memory> total counts a virtio-mem device with its full (maximum) size instead, so the two
differ only when virtio-mem devices exist.  Pure; sizes are KiB.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import kib_to_mib

DIMM = 'dimm'
VIRTIO_MEM = 'virtio-mem'


def device_memory_kib(device):
    """Memory a device gives the domain as `size` counts it: virtio-mem its requested size, others their size."""
    if device.model == VIRTIO_MEM:
        return device.requested_kib or 0
    return device.size_kib


def boot_memory_kib(model):
    """Memory that is not on memory devices: the NUMA cells (or <memory> minus devices without cells)."""
    if model.numa_cells:
        return model.numa_memory_kib
    return model.memory_kib - sum(d.size_kib for d in model.memory_devices)


def memory_size_kib(model):
    """The domain's memory in the sense of the module's `size` option."""
    return boot_memory_kib(model) + sum(device_memory_kib(d) for d in model.memory_devices)


def node_memory_kib(model):
    """Memory per guest NUMA cell: the cell's own memory plus the devices on it."""
    loads = dict((c.id, c.memory_kib) for c in model.numa_cells)
    for device in model.memory_devices:
        if device.node in loads:
            loads[device.node] += device_memory_kib(device)
    return loads


def memory_view(model):
    """The memory part of a definition for results (MiB), with `size_mib` and `boot_mib` added."""
    if model is None:
        return None
    view = model.to_dict()['memory']
    view.update(size_mib=kib_to_mib(memory_size_kib(model)), boot_mib=kib_to_mib(boot_memory_kib(model)))
    return view
