# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Planning a memory change: one definition of a domain plus the request -> the device changes, or a refusal.

Pure: nothing here talks to libvirt, so every limit is checked before the first
write and the whole decision table is unit-tested.  Sizes are KiB.

What "size" means is in _memory/sizes.py; the check-mode prediction is _memory/predict.py.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import format_kib
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import MemoryDevice
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.sizes import (
    DIMM, VIRTIO_MEM, boot_memory_kib, memory_size_kib, node_memory_kib,
)

# The block a new virtio-mem device gets: QEMU's default on x86_64 (the THP size).
VIRTIO_MEM_BLOCK_KIB = 2048
# The guest memory block size assumed when the guest agent cannot tell: x86_64 Linux below 64 GiB.
DEFAULT_BLOCK_KIB = 128 * 1024
# How many possible sizes a refusal lists at most.
_MAX_LISTED = 8


@dataclass(frozen=True)
class MemoryRequest:
    size_kib: int | None = None            # desired memory (boot + DIMMs + virtio-mem requested); None: leave it
    model: str = DIMM
    dimm_size_kib: int | None = None       # None: the whole difference as one DIMM
    numa_node: int | None = None           # None: spread over the cells, least memory first
    current_memory_kib: int | None = None  # balloon target; None: leave it


@dataclass(frozen=True)
class AddDimm:
    size_kib: int
    node: int


@dataclass(frozen=True)
class RemoveDimm:
    index: int              # position among the definition's <memory> devices
    dimm: MemoryDevice      # the DIMM as the definition lists it

    @property
    def alias(self):
        return self.dimm.alias

    @property
    def size_kib(self):
        return self.dimm.size_kib


@dataclass(frozen=True)
class AddVirtioMem:
    node: int
    size_kib: int        # the device's maximum
    requested_kib: int
    block_kib: int


@dataclass(frozen=True)
class ResizeVirtioMem:
    index: int
    alias: str | None
    node: int | None
    from_kib: int
    to_kib: int


@dataclass(frozen=True)
class SetBalloon:
    from_kib: int
    to_kib: int


@dataclass(frozen=True)
class MemoryPlan:
    scope: str                 # 'live' or 'config'
    size_before_kib: int
    size_after_kib: int
    actions: tuple

    @property
    def changed(self):
        return bool(self.actions)


# ---------------------------------------------------------------------------
# planning

def plan_memory(model, request, block_kib, scope, name):
    """Return the MemoryPlan that takes one definition of domain `name` to the request, or raise HotplugError.

    block_kib is the guest's memory block size: every change of memory is a
    whole number of blocks, since the guest onlines and offlines whole blocks.
    """
    context = '%s (%s)' % (name, scope)
    _check_numa_node(model, request.numa_node, context)
    size_before = memory_size_kib(model)
    actions = []
    size_after = size_before
    if request.size_kib is not None and request.size_kib != size_before:
        size_after = request.size_kib
        boot = boot_memory_kib(model)
        if size_after < boot:
            raise HotplugError(
                'size %s is below the boot memory of domain %s, %s (%s), which hotplug cannot change'
                % (format_kib(size_after), context, format_kib(boot), _cells_text(model)))
        if not model.numa_cells:
            raise HotplugError('domain %s has no guest NUMA cells (<cpu><numa>): %s devices need at least one%s '
                               '(both change only in the persistent definition, with a restart)'
                               % (context, request.model,
                                  ' and <maxMemory slots=...>' if model.max_memory_kib is None else ''))
        if model.max_memory_kib is None:
            raise HotplugError('domain %s has no <maxMemory>: memory hotplug needs <maxMemory slots=...> in the '
                               'domain definition (changing it needs a restart)' % context)
        delta = size_after - size_before
        if request.model == DIMM:
            actions.extend(_plan_dimms(model, request, block_kib, delta, size_before, context))
        else:
            actions.extend(_plan_virtio_mem(model, request, block_kib, delta, size_before, context))
    if request.current_memory_kib is not None:
        if request.current_memory_kib > size_after:
            raise HotplugError('current_memory %s is above the memory of domain %s, %s%s: the balloon cannot give '
                               'the guest more than the domain has'
                               % (format_kib(request.current_memory_kib), context, format_kib(size_after),
                                  '' if size_after == size_before else ' after this change'))
        if request.current_memory_kib <= 0:
            raise HotplugError('current_memory must be above 0 for domain %s' % context)
        # libvirt moves the balloon target with the memory it adds and removes, so compare with where it lands.
        landing = current_after_kib(model, scope, actions, size_after - size_before)
        if request.current_memory_kib != landing:
            actions.append(SetBalloon(from_kib=landing, to_kib=request.current_memory_kib))
    return MemoryPlan(scope=scope, size_before_kib=size_before, size_after_kib=size_after, actions=tuple(actions))


def current_after_kib(model, scope, actions, size_change_kib):
    """The balloon target libvirt leaves after the device actions (before any balloon action of the plan).

    Live, the balloon keeps what it has taken, so the target moves with the memory the guest gains or loses;
    in the persistent config libvirt moves it with its <memory> total, which counts virtio-mem devices whole.
    """
    total_change = (sum(a.size_kib for a in actions if isinstance(a, (AddDimm, AddVirtioMem)))
                    - sum(a.size_kib for a in actions if isinstance(a, RemoveDimm)))
    current = model.current_memory_kib + (size_change_kib if scope == 'live' else total_change)
    return max(0, min(current, model.memory_kib + total_change))


def _check_numa_node(model, node, context):
    if node is None:
        return
    cells = [c.id for c in model.numa_cells]
    if node not in cells:
        raise HotplugError('numa_node %d does not exist in domain %s; its guest NUMA cells are: %s'
                           % (node, context, ', '.join(str(c) for c in cells) or 'none'))


def _cells_text(model):
    if not model.numa_cells:
        return 'no NUMA cells'
    return 'NUMA cells ' + ', '.join('%d: %s' % (c.id, format_kib(c.memory_kib)) for c in model.numa_cells)


def _aligned_neighbours(size_before, delta, unit, floor_kib):
    """The sizes nearest to size_before + delta that change memory by whole units."""
    below = size_before + (delta // unit) * unit
    options = [s for s in (below, below + unit) if s >= floor_kib]
    return ' or '.join(format_kib(s) for s in options)


def _check_aligned(delta, unit, size_before, floor_kib, context, what):
    if delta % unit:
        raise HotplugError(
            'size %s would change the memory of domain %s by %s, which is not a multiple of %s; nearest possible: %s'
            % (format_kib(size_before + delta), context, format_kib(abs(delta)), what,
               _aligned_neighbours(size_before, delta, unit, floor_kib)))


# --- DIMMs -------------------------------------------------------------------

def _plan_dimms(model, request, block_kib, delta, size_before, context):
    block_text = 'the guest memory block size (%s)' % format_kib(block_kib)
    _check_aligned(delta, block_kib, size_before, boot_memory_kib(model), context, block_text)
    if delta > 0:
        return _plan_dimm_add(model, request, block_kib, delta, context)
    return _plan_dimm_removal(model, request, -delta, size_before, context)


def _plan_dimm_add(model, request, block_kib, delta, context):
    dimm_size = request.dimm_size_kib or delta
    if dimm_size <= 0 or dimm_size % block_kib:
        raise HotplugError('dimm_size %s for domain %s is not a multiple of the guest memory block size (%s)'
                           % (format_kib(dimm_size), context, format_kib(block_kib)))
    if delta % dimm_size:
        raise HotplugError('adding %s to domain %s is not a whole number of DIMMs of dimm_size %s'
                           % (format_kib(delta), context, format_kib(dimm_size)))
    count = delta // dimm_size
    slots_total = model.max_memory_slots or 0
    slots_free = slots_total - model.slots_used
    if count > slots_free:
        raise HotplugError('adding %s to domain %s needs %d DIMM slot%s, but only %d of %d <maxMemory> slots are free'
                           % (format_kib(delta), context, count, '' if count == 1 else 's', max(slots_free, 0),
                              slots_total))
    if model.memory_kib + delta > model.max_memory_kib:
        raise HotplugError('adding %s to domain %s would exceed its maxMemory of %s (libvirt counts %s now%s); '
                           'at most %s can be added'
                           % (format_kib(delta), context, format_kib(model.max_memory_kib),
                              format_kib(model.memory_kib), _virtio_note(model),
                              format_kib(max(model.max_memory_kib - model.memory_kib, 0))))
    nodes = spread_over_cells(node_memory_kib(model), count, dimm_size, request.numa_node)
    return [AddDimm(size_kib=dimm_size, node=node) for node in nodes]


def _virtio_note(model):
    full = sum(d.size_kib for d in model.memory_devices if d.model == VIRTIO_MEM)
    return ', virtio-mem devices with their full size %s' % format_kib(full) if full else ''


def spread_over_cells(loads, count, size_kib, node=None):
    """The cell of each of `count` new devices: `node`, or each time the cell with the least memory (lowest id on ties)."""
    loads = dict(loads)
    nodes = []
    for _count in range(count):
        target = node if node is not None else min(sorted(loads), key=lambda cell: loads[cell])
        nodes.append(target)
        loads[target] += size_kib
    return nodes


def _plan_dimm_removal(model, request, amount, size_before, context):
    candidates = [(i, d) for i, d in enumerate(model.memory_devices)
                  if d.model == DIMM and (request.numa_node is None or d.node == request.numa_node)]
    candidates.reverse()  # newest (last defined) first
    where_text = '' if request.numa_node is None else ' on NUMA cell %d' % request.numa_node
    if not candidates:
        raise HotplugError('cannot remove %s from domain %s: it has no DIMMs%s to detach'
                           % (format_kib(amount), context, where_text))
    chosen, reachable = select_dimms(candidates, amount)
    if chosen is None:
        possible = sorted((size_before - s for s in reachable if s), reverse=True)
        raise HotplugError(
            'cannot remove exactly %s from domain %s: no set of its DIMMs%s (newest first: %s) adds up to it; '
            'possible sizes: %s' % (format_kib(amount), context, where_text,
                                    ', '.join('%s %s' % (d.alias or 'slot %s' % d.slot, format_kib(d.size_kib))
                                              for _i, d in candidates),
                                    _possible_text(possible, size_before - amount)))
    return [RemoveDimm(index=i, dimm=d) for i, d in chosen]


def select_dimms(candidates, amount):
    """Pick DIMMs that add up to exactly `amount`, preferring newer ones.

    candidates: (key, device) pairs, newest first.  Returns (chosen pairs, every
    amount some subset can remove); chosen is None when no subset matches.  A
    DIMM is taken whenever the older ones can still make up the rest, so the
    newest DIMMs go first and older ones only when the sum needs them.
    """
    reachable_from = [None] * (len(candidates) + 1)
    reachable_from[-1] = frozenset([0])
    for i in range(len(candidates) - 1, -1, -1):
        size = candidates[i][1].size_kib
        later = reachable_from[i + 1]
        reachable_from[i] = later | frozenset(s + size for s in later)
    if amount not in reachable_from[0]:
        return None, reachable_from[0]
    chosen = []
    rest = amount
    for i, pair in enumerate(candidates):
        size = pair[1].size_kib
        if size <= rest and rest - size in reachable_from[i + 1]:
            chosen.append(pair)
            rest -= size
    return chosen, reachable_from[0]


def _possible_text(sizes, wanted):
    """The possible sizes nearest to the wanted one, largest first."""
    if len(sizes) > _MAX_LISTED:
        sizes = sorted(sorted(sizes, key=lambda s: abs(s - wanted))[:_MAX_LISTED], reverse=True)
    return ', '.join(format_kib(s) for s in sizes)


# --- virtio-mem ----------------------------------------------------------------

def _plan_virtio_mem(model, request, block_kib, delta, size_before, context):
    devices = [(i, d) for i, d in enumerate(model.memory_devices)
               if d.model == VIRTIO_MEM and (request.numa_node is None or d.node == request.numa_node)]
    unit = block_kib
    for _i, device in devices:
        unit = _lcm(unit, device.block_kib or VIRTIO_MEM_BLOCK_KIB)
    what = 'the guest memory block size (%s)' % format_kib(block_kib)
    if unit != block_kib:
        what = '%s (the guest memory block and the virtio-mem device block)' % format_kib(unit)
    _check_aligned(delta, unit, size_before, boot_memory_kib(model), context, what)
    if not devices:
        if delta < 0:
            raise HotplugError('cannot remove %s from domain %s: it has no virtio-mem device%s to shrink'
                               % (format_kib(-delta), context,
                                  '' if request.numa_node is None else ' on NUMA cell %d' % request.numa_node))
        return [_new_virtio_mem(model, request, unit, delta, context)]
    return _resize_virtio_mem(model, devices, unit, delta, context)


def _new_virtio_mem(model, request, unit, delta, context):
    room = ((model.max_memory_kib - model.memory_kib) // unit) * unit
    if delta > room:
        raise HotplugError('adding %s to domain %s would exceed its maxMemory of %s (libvirt counts %s now%s); '
                           'a new virtio-mem device can have at most %s'
                           % (format_kib(delta), context, format_kib(model.max_memory_kib),
                              format_kib(model.memory_kib), _virtio_note(model), format_kib(room)))
    loads = node_memory_kib(model)
    node = request.numa_node if request.numa_node is not None else min(sorted(loads), key=lambda c: loads[c])
    # The device takes all the room maxMemory leaves, so later resizes need no new device
    # (virtio-mem devices cannot be unplugged).
    return AddVirtioMem(node=node, size_kib=room, requested_kib=delta, block_kib=VIRTIO_MEM_BLOCK_KIB)


def _resize_virtio_mem(model, devices, unit, delta, context):
    loads = node_memory_kib(model)
    requested = dict((i, d.requested_kib or 0) for i, d in devices)
    by_index = dict(devices)
    for _step in range(abs(delta) // unit):
        if delta > 0:
            fits = [i for i, d in devices if requested[i] + unit <= d.size_kib]
            if not fits:
                raise HotplugError(
                    'adding %s to domain %s exceeds what its virtio-mem devices can plug (%s); '
                    'at most %s more' % (format_kib(delta), context, _virtio_sizes(devices),
                                         format_kib(sum(((d.size_kib - (d.requested_kib or 0)) // unit) * unit
                                                        for _i, d in devices))))
            pick = min(fits, key=lambda i: (loads.get(by_index[i].node, 0), i))
            requested[pick] += unit
            loads[by_index[pick].node] = loads.get(by_index[pick].node, 0) + unit
        else:
            fits = [i for i, _d in devices if requested[i] >= unit]
            if not fits:
                raise HotplugError('cannot remove %s from domain %s: its virtio-mem devices have only %s plugged (%s)'
                                   % (format_kib(-delta), context,
                                      format_kib(sum(d.requested_kib or 0 for _i, d in devices)),
                                      _virtio_sizes(devices)))
            pick = max(fits, key=lambda i: (loads.get(by_index[i].node, 0), i))
            requested[pick] -= unit
            loads[by_index[pick].node] = loads.get(by_index[pick].node, 0) - unit
    return [ResizeVirtioMem(index=i, alias=d.alias, node=d.node, from_kib=d.requested_kib or 0, to_kib=requested[i])
            for i, d in devices if requested[i] != (d.requested_kib or 0)]


def _virtio_sizes(devices):
    return ', '.join('%s on cell %s: %s of %s' % (d.alias or 'device %d' % i, d.node,
                                                  format_kib(d.requested_kib or 0), format_kib(d.size_kib))
                     for i, d in devices)


def _lcm(a, b):
    x, y = a, b
    while y:
        x, y = y, x % y
    return a // x * b
