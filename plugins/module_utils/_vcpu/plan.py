# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Planning a vCPU change: the domain's state plus the request give a plan, or a refusal.

Pure logic, no libvirt calls: every limit (maximum, vCPU 0, hotpluggable,
NUMA cells, pinning, topology, migration, domain state) is checked here, so
that a refused request has changed nothing.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.scope import CONFIG, LIVE, resolve_scopes, scope_words
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import Vcpu
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.snapshot import refuse_during_migration


@dataclass(frozen=True)
class VcpuRequest:
    count: int | None = None
    vcpus: tuple | None = None       # explicit vCPU ids (libvirt ids, or guest CPU ids with guest_agent)
    state: str = 'enabled'           # for vcpus: 'enabled' or 'disabled'
    numa_node: int | None = None
    live: bool = True
    config: bool = True
    maximum: int | None = None
    guest_agent: bool = False


@dataclass(frozen=True)
class DefinitionPlan:
    """The change to one definition (its scope, 'live' or 'config'): which vCPU ids to enable and disable, in order."""
    scope: str
    before: tuple
    after: tuple
    enable: tuple = ()
    disable: tuple = ()

    @property
    def changed(self):
        return bool(self.enable or self.disable)


@dataclass(frozen=True)
class GuestPlan:
    """With guest_agent: CPUs to online or offline inside the guest (guest CPU numbers)."""
    before_online: tuple
    online: tuple = ()
    offline: tuple = ()
    target_count: int | None = None

    @property
    def changed(self):
        return bool(self.online or self.offline)


@dataclass
class VcpuPlan:
    live: DefinitionPlan | None = None
    config: DefinitionPlan | None = None
    maximum_before: int | None = None
    maximum_after: int | None = None   # new config maximum, None when unchanged
    topology_after: object = None      # the config's Topology with the new maximum (sockets follow it)
    cells_after: tuple | None = None   # the config's NumaCells with the new maximum
    guest: GuestPlan | None = None
    warnings: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def changed(self):
        return any(p is not None and p.changed for p in (self.live, self.config, self.guest)) or (
            self.maximum_after is not None and self.maximum_after != self.maximum_before)


def plan_vcpus(request, snapshot, host_online_cpus=None, guest_view=None):
    """Return the VcpuPlan for request on the domain read in snapshot, or raise HotplugError.

    host_online_cpus: host CPU ids that are online (to check pinning of vCPUs
    being added), None when unknown.  guest_view: the guest agent's view, needed
    with guest_agent.
    """
    name = snapshot.name
    plan = VcpuPlan()
    refuse_during_migration(snapshot, 'change vCPUs')

    if request.guest_agent:
        plan.guest = _plan_guest(request, snapshot, guest_view)
        return plan

    scopes = resolve_scopes(snapshot, request.live, request.config, plan.warnings.append)
    live, config = LIVE in scopes, CONFIG in scopes

    if live and snapshot.state == 'pmsuspended':
        raise HotplugError('domain %s is suspended to memory (pmsuspended): wake it up before changing live vCPUs' % name)

    if config:
        plan.maximum_before = snapshot.config.vcpu_max
        config_model = snapshot.config
        if request.maximum is not None:
            _check_maximum(request, snapshot.config, name)
            if request.maximum != snapshot.config.vcpu_max:
                config_model = _with_maximum(request, snapshot.config, name)
                plan.maximum_after = request.maximum
                plan.topology_after = config_model.topology
                plan.cells_after = config_model.numa_cells
                plan.notes.append('the new maximum of %d vCPUs is in the persistent config and takes effect at the '
                                  'next boot of the domain' % request.maximum)
    elif request.maximum is not None:
        raise HotplugError('maximum changes the persistent config of domain %s, but config changes are not possible '
                           'here (config: false, or a transient domain)' % name)

    if request.count is None and request.vcpus is None:
        return plan

    if live:
        plan.live = _plan_definition(LIVE, request, snapshot.live, snapshot.live.vcpu_max, name,
                                     host_online_cpus=host_online_cpus)
        if plan.live.disable and snapshot.state == 'paused':
            raise HotplugError('domain %s is paused: the guest cannot eject vCPUs %s; resume it before removing vCPUs'
                               % (name, format_cpulist(plan.live.disable)))
        if plan.live.enable and snapshot.state == 'paused':
            plan.warnings.append('domain %s is paused: the guest sees the new vCPUs only after it is resumed' % name)
    if config:
        config_max = plan.maximum_after if plan.maximum_after is not None else snapshot.config.vcpu_max
        mirror = plan.live.after if plan.live is not None else None
        plan.config = _plan_definition(CONFIG, request, config_model, config_max, name, mirror=mirror)
        if plan.maximum_after is not None and len(plan.config.after) > plan.maximum_after:
            raise HotplugError('maximum %d is below the %d vCPUs the persistent config of domain %s would enable; '
                               'lower count too' % (plan.maximum_after, len(plan.config.after), name))
    return plan


def _check_maximum(request, model, name):
    maximum = request.maximum
    if maximum < 1:
        raise HotplugError('maximum must be at least 1, got %d' % maximum)
    topology = model.topology
    if topology is not None:
        slots = topology.sockets * topology.dies * topology.cores * topology.threads
        per_socket = topology.dies * topology.cores * topology.threads
        if maximum % per_socket:
            raise HotplugError(
                'maximum %d does not fit the CPU topology of domain %s: sockets=%d x dies=%d x cores=%d x threads=%d '
                'gives %d vCPUs, and a maximum must be whole sockets of %d vCPUs; change <cpu><topology> together '
                'with the maximum' % (maximum, name, topology.sockets, topology.dies, topology.cores,
                                      topology.threads, slots, per_socket))
    numa_cpus = [cpu for cell in model.numa_cells for cpu in cell.cpus]
    if numa_cpus and max(numa_cpus) >= maximum:
        raise HotplugError('maximum %d is too small for the guest NUMA cells of domain %s, which place vCPUs up to %d'
                           % (maximum, name, max(numa_cpus)))
    pinned_above = sorted(v for v in model.pinning.vcpupin if v >= maximum)
    if pinned_above:
        raise HotplugError('maximum %d would drop the <cputune> pinning of vCPUs %s of domain %s (libvirt removes it '
                           'silently); unpin them first' % (maximum, format_cpulist(pinned_above), name))


def _with_maximum(request, model, name):
    """The config model with the new maximum: new vCPUs disabled, in whole new sockets, in the cell numa_node names.

    libvirt itself would put vCPUs that no guest NUMA cell holds into a cell of its choosing, without saying so;
    here they go where the user says, or the definition check refuses the change.
    """
    maximum = request.maximum
    topology = model.topology
    if topology is not None:
        topology = replace(topology, sockets=maximum // (topology.dies * topology.cores * topology.threads))
    new_ids = tuple(range(model.vcpu_max, maximum))
    cells = model.numa_cells
    homeless = tuple(v for v in new_ids if model.cell_of_vcpu(v) is None)
    if cells and homeless and request.numa_node is not None:
        # Without numa_node they stay in no cell, and the definition check refuses that with every other limit.
        cell = _cell(request.numa_node, model, name)
        cells = tuple(replace(c, cpus=tuple(sorted(c.cpus + homeless))) if c.id == cell.id else c for c in cells)
    elif request.numa_node is not None and new_ids:
        _cell(request.numa_node, model, name)
    vcpus = tuple(v for v in model.vcpus if v.id < maximum) + tuple(
        Vcpu(id=v, enabled=False, hotpluggable=True, order=None) for v in new_ids)
    return replace(model, vcpu_max=maximum, vcpus=vcpus, topology=topology, numa_cells=cells)


def _plan_definition(scope, request, model, maximum, name, mirror=None, host_online_cpus=None):
    """Plan one definition.  mirror: enable exactly these ids (the config follows the live plan)."""
    before = tuple(model.enabled_vcpu_ids)
    where = scope_words(scope)
    if mirror is not None:
        wanted = tuple(sorted(mirror))
        out_of_range = [v for v in wanted if v >= maximum]
        if out_of_range:
            raise HotplugError('vCPUs %s are beyond the maximum of %d vCPUs in %s of domain %s'
                               % (format_cpulist(out_of_range), maximum, where, name))
    elif request.count is not None:
        wanted = _target_for_count(request, model, maximum, name, where, scope)
    else:
        wanted = _target_for_ids(request, model, maximum, name, where)

    enable = tuple(v for v in wanted if v not in before)
    disable = tuple(sorted((v for v in before if v not in wanted), reverse=True))
    if 0 in disable:
        raise HotplugError('vCPU 0 of domain %s cannot be disabled' % name)
    if scope == LIVE:
        _check_live_hotpluggable(model, enable + disable, name)
        if host_online_cpus is not None:
            _check_pinning_online(model, enable, host_online_cpus, name)
    return DefinitionPlan(scope=scope, before=before, after=tuple(sorted(wanted)), enable=enable, disable=disable)


def _target_for_count(request, model, maximum, name, where, scope):
    count = request.count
    if count < 1:
        raise HotplugError('count must be at least 1 (a domain always keeps vCPU 0), got %d' % count)
    if count > maximum:
        hint = ' (raise it with maximum, which takes effect at the next boot)' if scope == LIVE else ''
        raise HotplugError('count %d is above the maximum of %d vCPUs of %s of domain %s%s'
                           % (count, maximum, where, name, hint))
    enabled = [v.id for v in model.vcpus if v.enabled]
    current = len(enabled)
    cell = _cell(request.numa_node, model, name)
    if count > current:
        # ids from the old to a raised maximum do not exist in the definition yet; they come in disabled
        free = [v.id for v in model.vcpus if not v.enabled] + list(range(model.vcpu_max, maximum))
        candidates = [v for v in free if v < maximum and (cell is None or v in cell.cpus)]
        needed = count - current
        if len(candidates) < needed:
            if cell is not None:
                raise HotplugError('guest NUMA cell %d of domain %s has %d free vCPUs (%s), %d needed'
                                   % (cell.id, name, len(candidates), format_cpulist(candidates) or 'none', needed))
            raise HotplugError('domain %s has %d free vCPUs in %s, %d needed' % (name, len(candidates), where, needed))
        return tuple(sorted(enabled + candidates[:needed]))
    if count < current:
        removable = []
        pinned = []
        for vcpu in sorted(model.vcpus, key=lambda v: v.id, reverse=True):
            if not vcpu.enabled or vcpu.id == 0 or (cell is not None and vcpu.id not in cell.cpus):
                continue
            if scope == LIVE and vcpu.hotpluggable is not True:
                continue
            if vcpu.id in model.pinning.vcpupin:
                pinned.append(vcpu.id)
                continue
            removable.append(vcpu.id)
        needed = current - count
        if len(removable) < needed:
            reasons = ['vCPU 0 always stays']
            fixed = [v.id for v in model.vcpus if v.enabled and v.id != 0 and v.hotpluggable is not True]
            if scope == LIVE and fixed:
                reasons.append('vCPUs %s are not hotpluggable' % format_cpulist(fixed))
            if pinned:
                reasons.append('vCPUs %s are pinned by <cputune> (name them in vcpus with state: disabled to remove '
                               'them anyway)' % format_cpulist(pinned))
            if cell is not None:
                reasons.append('only vCPUs of guest NUMA cell %d were considered' % cell.id)
            raise HotplugError('cannot remove %d vCPU(s) from %s of domain %s: only %d can go (%s)'
                               % (needed, where, name, len(removable), '; '.join(reasons)))
        gone = set(removable[:needed])
        return tuple(v for v in enabled if v not in gone)
    return tuple(enabled)


def _target_for_ids(request, model, maximum, name, where):
    ids = request.vcpus
    out_of_range = [v for v in ids if v >= maximum]
    if out_of_range:
        raise HotplugError('vCPUs %s do not exist in %s of domain %s, which has vCPUs 0-%d'
                           % (format_cpulist(out_of_range), where, name, maximum - 1))
    if 0 in ids:
        raise HotplugError('vCPU 0 of domain %s cannot be hot-plugged or unplugged' % name)
    enabled = set(model.enabled_vcpu_ids)
    if request.state == 'enabled':
        return tuple(sorted(enabled | set(ids)))
    return tuple(sorted(enabled - set(ids)))


def _cell(numa_node, model, name):
    if numa_node is None:
        return None
    if not model.numa_cells:
        raise HotplugError('numa_node %d: domain %s has no guest NUMA cells' % (numa_node, name))
    cell = model.cell_by_id(numa_node)
    if cell is None:
        raise HotplugError('numa_node %d: domain %s has no guest NUMA cell %d (cells: %s)'
                           % (numa_node, name, numa_node, ', '.join(str(c.id) for c in model.numa_cells)))
    return cell


def _check_live_hotpluggable(model, ids, name):
    fixed = [v for v in ids if model.vcpu(v) is not None and model.vcpu(v).hotpluggable is False]
    if fixed:
        raise HotplugError('vCPUs %s of domain %s are not hotpluggable (hotpluggable=\'no\' in the definition); '
                           'they can change only in the persistent config' % (format_cpulist(fixed), name))


def _check_pinning_online(model, enable, host_online_cpus, name):
    online = set(host_online_cpus)
    for vcpu_id in enable:
        pinned = model.pinning.vcpupin.get(vcpu_id, model.pinning.vcpu_cpuset)
        if pinned and not set(pinned) & online:
            raise HotplugError('vCPU %d of domain %s is pinned to host CPUs %s, none of which is online on this host; '
                               'it cannot run there' % (vcpu_id, name, format_cpulist(pinned)))


def _plan_guest(request, snapshot, guest_view):
    name = snapshot.name
    if snapshot.state != 'running':
        raise HotplugError('guest_agent needs a running domain, and %s is %s' % (name, snapshot.state))
    if request.maximum is not None:
        raise HotplugError('maximum cannot be changed through the guest agent')
    if not guest_view or not guest_view.get('available'):
        raise HotplugError('the guest agent of domain %s cannot be asked: %s'
                           % (name, (guest_view or {}).get('reason', 'no answer')))
    present = tuple(guest_view['present'])
    online = tuple(guest_view['online'])
    offlinable = set(guest_view['offlinable'])
    if request.count is not None:
        count = request.count
        if count < 1:
            raise HotplugError('count must be at least 1, got %d' % count)
        if count > len(present):
            raise HotplugError('the guest of domain %s has %d CPUs present; the guest agent can only online CPUs the '
                               'guest already has (hot-add vCPUs first, without guest_agent)' % (name, len(present)))
        if count > len(online):
            to_online = tuple(c for c in present if c not in online)[:count - len(online)]
            return GuestPlan(before_online=online, online=to_online, target_count=count)
        if count < len(online):
            candidates = sorted((c for c in online if c in offlinable), reverse=True)
            needed = len(online) - count
            if len(candidates) < needed:
                raise HotplugError('the guest of domain %s can offline only CPUs %s (%d), %d needed'
                                   % (name, format_cpulist(candidates) or 'none', len(candidates), needed))
            return GuestPlan(before_online=online, offline=tuple(candidates[:needed]), target_count=count)
        return GuestPlan(before_online=online, target_count=count)
    ids = tuple(request.vcpus)
    missing = [c for c in ids if c not in present]
    if missing:
        raise HotplugError('guest CPUs %s do not exist in the guest of domain %s (present: %s)'
                           % (format_cpulist(missing), name, format_cpulist(present)))
    if request.state == 'enabled':
        return GuestPlan(before_online=online, online=tuple(c for c in ids if c not in online))
    blocked = [c for c in ids if c in online and c not in offlinable]
    if blocked:
        raise HotplugError('the guest of domain %s cannot offline CPUs %s (not offlinable)'
                           % (name, format_cpulist(blocked)))
    return GuestPlan(before_online=online, offline=tuple(c for c in ids if c in online))
