# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_migrate's facts: the request, and what the planner is given about both hosts and the domain.

Pure data and the small pure functions that derive a fact from it (versions,
memory needed, pinned CPUs, a memory device's identity).  Read from libvirt by
read.py, used by plan.py and verify.py; no libvirt here.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import etree
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.snapshot import DomainSummary

TIMEOUT_ACTIONS = ('abort', 'postcopy', 'suspend')
# The run's second session (the first is _common/runner.py SOURCE): the host the domain moves to.
DESTINATION = 'destination'


@dataclass(frozen=True)
class MigrationRequest:
    name: str
    dest_uri: str
    live: bool = True
    persistent: bool = True
    undefine_source: bool = True
    bandwidth: int | None = None
    max_downtime_ms: int | None = None
    auto_converge: bool = False
    parallel_connections: int | None = None
    timeout: int | None = None
    timeout_action: str = 'abort'
    migrate_uri: str | None = None


@dataclass(frozen=True)
class HostFacts:
    """One hypervisor, as its daemon describes itself."""
    uri: str
    host_uuid: str | None = None
    hypervisor: str | None = None       # virConnectGetType: 'QEMU'
    version: int | None = None          # virConnectGetVersion: QEMU 7.2.22 is 7002022
    lib_version: int | None = None      # virConnectGetLibVersion
    free_memory_kib: int | None = None  # virNodeGetFreeMemory
    online_cpus: tuple | None = None    # virNodeGetCPUMap
    phys_addr_bits: int | None = None   # capabilities <host><cpu><maxphysaddr bits>


@dataclass
class Peer(DomainSummary):
    """A domain on the destination that has the name or the UUID of the one to migrate."""


@dataclass(frozen=True)
class DestinationFacts:
    host: HostFacts
    by_name: Peer | None = None
    by_uuid: Peer | None = None
    domcaps: object | None = None       # _libvirt/definition_check.DomainCapabilities of the domain's platform there
    domcaps_error: str | None = None    # libvirt's answer when it has no capabilities for that emulator/machine
    cpu_compare: str | None = None      # 'identical', 'superset', 'incompatible', 'not_compared'
    cpu_detail: str | None = None       # why incompatible, or why not compared


@dataclass(frozen=True)
class SourceFacts:
    host: HostFacts
    snapshot: object | None             # DomainSnapshot, None when the source has no such domain
    qemu_vcpus: tuple | None = None     # vCPU ids QEMU has (query-cpus-fast), None when it could not be asked
    definition_xml: str | None = None   # the definition the destination will keep (the persistent one, else the live)


def parse_host_capabilities(xml_text):
    """(host UUID, guest physical address bits or None) from virConnectGetCapabilities."""
    root = etree.fromstring(xml_text.encode('utf-8') if isinstance(xml_text, str) else xml_text)
    bits = root.find('host/cpu/maxphysaddr')
    return root.findtext('host/uuid'), int(bits.get('bits')) if bits is not None and bits.get('bits') else None


def format_version(version):
    """libvirt's encoded version 7002022 as '7.2.22'."""
    if version is None:
        return None
    return '%d.%d.%d' % (version // 1000000, (version // 1000) % 1000, version % 1000)


def needed_memory_kib(model):
    """Memory the destination must have free: boot memory plus what DIMMs and virtio-mem plug into the guest.

    libvirt's <memory> counts every memory device at its full size; the boot
    memory is what remains.  The balloon is not subtracted: the guest may get
    that memory back at any time.
    """
    devices_full = sum(d.size_kib for d in model.memory_devices)
    boot = model.memory_kib - devices_full if model.memory_kib > devices_full else model.numa_memory_kib
    return boot, model.hotplugged_memory_kib


def device_key(device):
    """What identifies a memory device across hosts and definitions (aliases and addresses may differ)."""
    requested = device.requested_kib if device.model == 'virtio-mem' else None
    return (device.model, device.size_kib, device.node, requested)


def pinned_host_cpus(model):
    pinning = model.pinning
    cpus = set()
    for cpuset in list(pinning.vcpupin.values()) + list(pinning.iothreadpin.values()):
        cpus.update(cpuset)
    if pinning.emulatorpin:
        cpus.update(pinning.emulatorpin)
    if pinning.vcpu_cpuset:
        cpus.update(pinning.vcpu_cpuset)
    return sorted(cpus)
