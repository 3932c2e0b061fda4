# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_migrate's pre-checks: pure functions over what was read from both hosts, before anything moves.

The inputs are the parsed facts of facts.py only (the domain model, the
destination's domain capabilities and host capabilities, the result of
libvirt's CPU comparison, the destination's free memory and online CPUs, the
domains of that name or UUID there, the job and QEMU's vCPUs on the source), so
every refusal can be tested on captured XML without libvirt.  This file imports
no libvirt.

Every check is returned with its value; the first one that fails becomes the
refusal, one line naming the limit.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import kib_to_mib
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_check import definition_problems
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.facts import (
    device_key, format_version, needed_memory_kib, pinned_host_cpus,
)

# QEMU's x86 machines have at most 256 memory slots (ACPI_MAX_RAM_SLOTS); more are refused at start.
QEMU_MAX_MEMORY_SLOTS = 256
# Device memory (DIMMs, virtio-mem) is mapped above 4 GiB: the guest physical address space must reach past it.
DEVICE_MEMORY_BASE_KIB = 4 * 1024 * 1024

ALREADY_THERE = 'already_there'
MIGRATE = 'migrate'


@dataclass
class Plan:
    action: str | None                  # MIGRATE, ALREADY_THERE, or None when refused
    checks: dict = field(default_factory=dict)
    refusal: str | None = None
    notes: list = field(default_factory=list)

    @property
    def changed(self):
        return self.action == MIGRATE


class Checks(object):
    """Ordered checks; the first failure is the refusal (also used by _placement/evacuate.py per destination)."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.checks = {}
        self.refusal = None

    def add(self, name, ok, value=None, limit=None):
        self.checks[name] = dict(ok=ok, value=value, limit=limit if ok is False else None)
        if ok is False and self.refusal is None:
            self.refusal = '%s: %s; nothing was moved' % (self.prefix, limit)
        return ok

    def skip(self, name, why):
        self.checks[name] = dict(ok=None, value=None, limit=why)


def plan_migration(request, source, dest):
    """Check every limit of moving request.name from source to dest; return a Plan (refusal or action)."""
    name = request.name
    checks = Checks('refusing to migrate domain %s to %s' % (name, request.dest_uri))
    snap = source.snapshot
    notes = []

    if request.timeout_action != 'abort' and request.timeout is None:
        notes.append('timeout_action %s has no effect without timeout' % request.timeout_action)
    if request.timeout_action == 'postcopy' and not request.live:
        checks.add('options', False, limit='timeout_action postcopy needs live: true')
    if not request.live and not request.persistent:
        checks.add('options', False, limit='live: false moves the persistent definition, so it needs persistent: true')

    # --- where the domain is now
    there = _peer_is_it(dest.by_name, dest.by_uuid, snap)
    if snap is None:
        if there is not None and _arrived(request, there):
            checks.add('placement', True, value=dict(source=None, destination=there.state))
            return Plan(action=ALREADY_THERE, checks=checks.checks, notes=notes)
        checks.add('placement', False, value=dict(source=None, destination=there.state if there else None),
                   limit='domain %s is not defined on the source %s%s' % (
                       name, source.host.uri, ' and is %s on the destination' % there.state if there
                       else ' nor on the destination'))
        return Plan(action=None, checks=checks.checks, refusal=checks.refusal, notes=notes)

    if there is not None and there.active and not snap.active:
        checks.add('placement', True, value=dict(source=snap.state, destination=there.state))
        if request.undefine_source and snap.persistent:
            notes.append('domain %s runs on the destination; its shut-off definition is still on the source' % name)
        return Plan(action=ALREADY_THERE, checks=checks.checks, notes=notes)
    if there is not None and not request.live and not snap.active and not there.active and not request.undefine_source:
        checks.add('placement', True, value=dict(source=snap.state, destination=there.state))
        return Plan(action=ALREADY_THERE, checks=checks.checks, notes=notes)
    checks.add('placement', True, value=dict(source=snap.state, destination=there.state if there else None))

    # --- the domain on the source
    if request.live:
        checks.add('state', snap.active, value=snap.state,
                   limit='domain %s is %s; live migration needs a running domain (live: false moves a shut-off '
                         'domain\'s definition)' % (name, snap.state))
    else:
        checks.add('state', not snap.active, value=snap.state,
                   limit='domain %s is %s; live: false only moves the definition of a shut-off domain' % (name, snap.state))
        if not snap.persistent:
            checks.add('persistent_source', False, limit='domain %s is transient: there is no definition to move' % name)
    checks.add('job', not snap.job.active, value=snap.job.to_dict(),
               limit='a %s job is running on domain %s (wait for it to finish or abort it)'
                     % ((snap.job.operation or snap.job.type).replace('_', ' '), name))

    model = snap.live if snap.live is not None else snap.config
    if request.live and snap.live is not None:
        _check_views(checks, snap.live, source.qemu_vcpus, name)

    # --- the destination
    _check_destination(checks, request, source, dest, snap, there, name)
    _check_hypervisor(checks, source.host, dest.host)
    _check_capabilities(checks, dest, model, name, source.definition_xml)
    if request.live:
        _check_free_memory(checks, dest.host, model, name)
    else:
        checks.skip('free_memory', 'not needed: live: false does not start the domain')
    _check_pinning(checks, dest.host, model, name)
    if request.persistent:
        _check_persistent_definition(checks, snap, name)
    else:
        checks.skip('persistent_definition', 'persistent: false leaves the domain transient on the destination')

    if checks.refusal:
        return Plan(action=None, checks=checks.checks, refusal=checks.refusal, notes=notes)
    return Plan(action=MIGRATE, checks=checks.checks, notes=notes)


def _peer_is_it(by_name, by_uuid, snap):
    """The destination's domain when it has both this name and this UUID (the same domain), else None."""
    if by_name is None or by_uuid is None or by_name.uuid != by_uuid.uuid:
        return None
    if snap is not None and by_name.uuid.lower() != snap.uuid.lower():
        return None
    return by_name


def _arrived(request, there):
    return there.active if request.live else there.persistent


def _check_views(checks, live, qemu_vcpus, name):
    if qemu_vcpus is None:
        checks.skip('views', 'QEMU could not be asked for its vCPUs')
        return
    enabled = set(live.enabled_vcpu_ids)
    present = set(qemu_vcpus)
    value = dict(libvirt=format_cpulist(sorted(enabled)), qemu=format_cpulist(sorted(present)))
    checks.add('views', enabled == present, value=value,
               limit='libvirt\'s view of domain %s is stale (libvirt enables vCPUs %s, QEMU has %s); the destination '
                     'would start a different QEMU: resynchronize first (vcpu_hotplug stale_view: resync)'
                     % (name, value['libvirt'], value['qemu']))


def _check_destination(checks, request, source, dest, snap, there, name):
    same_host = (source.host.host_uuid is not None and source.host.host_uuid == dest.host.host_uuid)
    checks.add('destination_host', not same_host, value=dest.host.host_uuid,
               limit='the destination %s is the same host as the source (host UUID %s)'
                     % (request.dest_uri, dest.host.host_uuid))
    clash = None
    if there is not None:
        if there.active:
            clash = 'domain %s is running on the destination too (state %s there, %s here)' % (
                name, there.state, snap.state)
        else:
            clash = ('domain %s (same UUID) is already defined on the destination, %s: undefine it there or start it '
                     'there' % (name, there.state))
    elif dest.by_name is not None:
        clash = 'another domain named %s (UUID %s) is defined on the destination' % (name, dest.by_name.uuid)
    elif dest.by_uuid is not None:
        clash = 'domain %s on the destination has the UUID %s of domain %s' % (dest.by_uuid.name, snap.uuid, name)
    checks.add('name_uuid', clash is None, value=dict(
        by_name=None if dest.by_name is None else dict(name=dest.by_name.name, uuid=dest.by_name.uuid,
                                                       state=dest.by_name.state),
        by_uuid=None if dest.by_uuid is None else dict(name=dest.by_uuid.name, uuid=dest.by_uuid.uuid,
                                                       state=dest.by_uuid.state)), limit=clash)


def _check_hypervisor(checks, src, dst):
    value = dict(source=dict(type=src.hypervisor, version=format_version(src.version),
                             libvirt=format_version(src.lib_version)),
                 destination=dict(type=dst.hypervisor, version=format_version(dst.version),
                                  libvirt=format_version(dst.lib_version)))
    if src.hypervisor != dst.hypervisor:
        checks.add('hypervisor', False, value=value, limit='the destination runs %s, the source %s'
                   % (dst.hypervisor, src.hypervisor))
        return
    older = src.version is not None and dst.version is not None and dst.version < src.version
    checks.add('hypervisor', not older, value=value,
               limit='the destination\'s %s %s is older than the source\'s %s (migration only goes to the same or a '
                     'newer version)' % (dst.hypervisor, format_version(dst.version), format_version(src.version)))


def _check_capabilities(checks, dest, model, name, definition_xml):
    if dest.domcaps is None:
        checks.add('machine', False, value=None,
                   limit='the destination has no emulator for domain %s: %s' % (name, dest.domcaps_error))
        return
    caps = dest.domcaps
    checks.add('machine', True, value=dict(emulator=caps.emulator, machine=caps.machine, domain_type=caps.virt_type))
    _check_max_memory(checks, dest.host, model, name)
    check_cpu(checks, dest.cpu_compare, dest.cpu_detail, name)
    # The definition the destination keeps, against its capabilities (issue 15's check): the vCPU maximum of the
    # machine (the maximum, not the current count: a domain must not land where its last vCPUs cannot be hot-added),
    # more than 255 vCPUs without an IOMMU in extended interrupt mode, the topology, the NUMA cells, memory devices.
    problems = definition_problems(definition_xml, caps) if definition_xml else []
    checks.add('bootable', not problems,
               value=dict(vcpu_max=dict(domain=model.vcpu_max, destination=caps.vcpu_max), problems=problems),
               limit='the definition of domain %s would not start on the destination: %s' % (name, '; '.join(problems)))


def check_cpu(checks, cpu_compare, cpu_detail, name):
    """libvirt's comparison of the domain's CPU with the destination's (read.py compare_cpu): only incompatible refuses."""
    if cpu_compare == 'incompatible':
        checks.add('cpu', False, value=cpu_compare,
                   limit='the CPU of domain %s is incompatible with the destination: %s' % (name, cpu_detail))
    elif cpu_compare in ('identical', 'superset'):
        checks.add('cpu', True, value=cpu_compare)
    else:
        checks.skip('cpu', cpu_detail or 'not compared')


def _check_max_memory(checks, host, model, name):
    if model.max_memory_kib is None:
        checks.skip('max_memory', 'domain has no <maxMemory>')
        return
    value = dict(max_memory_mib=kib_to_mib(model.max_memory_kib), slots=model.max_memory_slots,
                 slots_used=model.slots_used, phys_addr_bits=host.phys_addr_bits)
    slots = model.max_memory_slots or 0
    if not checks.add('max_memory', slots <= QEMU_MAX_MEMORY_SLOTS, value=value,
                      limit='domain %s has %d memory slots, QEMU allows %d' % (name, slots, QEMU_MAX_MEMORY_SLOTS)):
        return
    if host.phys_addr_bits:
        end_kib = DEVICE_MEMORY_BASE_KIB + model.max_memory_kib
        space_kib = (1 << host.phys_addr_bits) // 1024
        checks.add('max_memory', end_kib <= space_kib, value=value,
                   limit='domain %s\'s maxMemory of %d MiB (mapped above 4 GiB) does not fit the destination\'s %d-bit '
                         'guest physical address space' % (name, kib_to_mib(model.max_memory_kib),
                                                           host.phys_addr_bits))


def _check_free_memory(checks, host, model, name):
    boot, plugged = needed_memory_kib(model)
    check_free_memory(checks, boot, plugged, host.free_memory_kib, name)


def check_free_memory(checks, boot, plugged, free_kib, name):
    """The domain's boot plus hot-added memory (KiB, facts.py needed_memory_kib) against the destination's free KiB."""
    needed = boot + plugged
    value = dict(needed_mib=kib_to_mib(needed), boot_mib=kib_to_mib(boot), hotplugged_mib=kib_to_mib(plugged),
                 free_mib=kib_to_mib(free_kib))
    if free_kib is None:
        checks.skip('free_memory', 'the destination did not say how much memory is free')
        return
    checks.add('free_memory', needed <= free_kib, value=value,
               limit='domain %s needs %d MiB (%d MiB boot memory + %d MiB hot-added), the destination has %d MiB free'
                     % (name, value['needed_mib'], value['boot_mib'], value['hotplugged_mib'], value['free_mib']))


def _check_pinning(checks, host, model, name):
    pinned = pinned_host_cpus(model)
    if not pinned:
        checks.skip('pinning', 'domain %s is not pinned to host CPUs' % name)
        return
    check_pinned_cpus(checks, pinned, host.online_cpus, name)


def check_pinned_cpus(checks, pinned, online_cpus, name):
    """The host CPUs a domain is pinned to (sorted ids) must be online on the destination."""
    if online_cpus is None:
        checks.skip('pinning', 'the destination did not list its online CPUs')
        return
    missing = sorted(set(pinned) - set(online_cpus))
    checks.add('pinning', not missing, value=dict(pinned=format_cpulist(pinned),
                                                  online=format_cpulist(online_cpus)),
               limit='domain %s is pinned to host CPUs %s, which the destination does not have online'
                     % (name, format_cpulist(missing)))


def _check_persistent_definition(checks, snap, name):
    """The destination's persistent definition is the source's: it must already hold the live hot-plugs."""
    if snap.config is None:
        checks.add('persistent_definition', True, value='transient: libvirt makes the live definition persistent')
        return
    if snap.live is None:
        checks.add('persistent_definition', True, value='shut off: the persistent definition moves as it is')
        return
    live, config = snap.live, snap.config
    live_vcpus = sorted(live.enabled_vcpu_ids)
    config_vcpus = sorted(config.enabled_vcpu_ids)
    live_devices = sorted(device_key(d) for d in live.memory_devices)
    config_devices = sorted(device_key(d) for d in config.memory_devices)
    value = dict(live_vcpus=format_cpulist(live_vcpus), config_vcpus=format_cpulist(config_vcpus),
                 live_memory_devices=len(live_devices), config_memory_devices=len(config_devices))
    problems = []
    missing_vcpus = sorted(set(live_vcpus) - set(config_vcpus))
    if missing_vcpus:
        problems.append('vCPUs %s' % format_cpulist(missing_vcpus))
    missing_devices = _multiset_minus(live_devices, config_devices)
    if missing_devices:
        problems.append('%d memory device(s) (%s)' % (len(missing_devices), ', '.join(
            '%s %d MiB node %s' % (m, kib_to_mib(size), node) for m, size, node, _r in missing_devices)))
    checks.add('persistent_definition', not problems, value=value,
               limit='domain %s runs with %s that its persistent definition lacks; the destination\'s persistent '
                     'definition would lose them at the next boot: make them persistent first (config: true) or '
                     'set persistent: false' % (name, ' and '.join(problems)))


def _multiset_minus(left, right):
    rest = list(right)
    missing = []
    for item in left:
        if item in rest:
            rest.remove(item)
        else:
            missing.append(item)
    return missing
