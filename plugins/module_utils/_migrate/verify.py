# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""After a migration: is the guest on the destination the guest that left the source?

Before the migration the module reads, on the source, QEMU's vCPUs
(query-cpus-fast) and memory devices (query-memory-devices) and the guest
agent's online CPUs and memory blocks.  Afterwards it reads the same on the
destination and compares them, and compares the destination's persistent
definition with the vCPUs and memory devices the guest ran with, so that
hot-added vCPUs and DIMMs survive the next boot there too.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import time

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.guest_agent import guest_memory, guest_vcpus
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.plan import device_key
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.qemu_monitor import (
    QemuMonitorUnavailable, qemu_memory_devices, qemu_vcpus,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import kib_to_mib


def capture(dom, model, with_guest=True):
    """QEMU's and the guest's view of a running domain, in a form two hosts' views can be compared in."""
    view = dict(qemu=None, qemu_error=None, guest=None, guest_error=None)
    try:
        vcpus = qemu_vcpus(dom)
        devices = qemu_memory_devices(dom)
        view['qemu'] = dict(
            vcpus=sorted(vcpus),
            memory_devices={key: dict(type=d['type'], size=d['size'], node=d['node'], addr=d['addr'],
                                      requested_size=d['requested_size'])
                            for key, d in sorted(devices.items())},
        )
    except QemuMonitorUnavailable as exc:
        view['qemu_error'] = str(exc)
    if with_guest:
        cpus = guest_vcpus(dom, model)
        memory = guest_memory(dom, model) if cpus.get('available') else cpus
        if cpus.get('available') and memory.get('available'):
            view['guest'] = dict(online_cpus=cpus['online_count'], online_cpulist=cpus['online_cpulist'],
                                 memory_online_mib=memory['online_mib'], memory_blocks_online=memory['blocks_online'])
        else:
            view['guest_error'] = cpus.get('reason') if not cpus.get('available') else memory.get('reason')
    return view


def runtime_differences(before, after):
    """One line per way the destination's QEMU and guest differ from the source's; [] when they agree."""
    differences = []
    if before['qemu'] is not None and after['qemu'] is not None:
        old, new = before['qemu'], after['qemu']
        if old['vcpus'] != new['vcpus']:
            differences.append('QEMU vCPUs %s on the source, %s on the destination'
                               % (format_cpulist(old['vcpus']), format_cpulist(new['vcpus'])))
        if old['memory_devices'] != new['memory_devices']:
            differences.append('QEMU memory devices %s on the source, %s on the destination'
                               % (_devices(old['memory_devices']), _devices(new['memory_devices'])))
    if before['guest'] is not None and after['guest'] is not None:
        old, new = before['guest'], after['guest']
        if old['online_cpus'] != new['online_cpus']:
            differences.append('the guest had %d CPUs online (%s), now %d (%s)' % (
                old['online_cpus'], old['online_cpulist'], new['online_cpus'], new['online_cpulist']))
        if old['memory_online_mib'] != new['memory_online_mib']:
            differences.append('the guest had %s MiB of memory blocks online, now %s MiB'
                               % (old['memory_online_mib'], new['memory_online_mib']))
    return differences


def _devices(devices):
    if not devices:
        return 'none'
    return ', '.join('%s (%s %d MiB node %s)' % (key, d['type'], (d['size'] or 0) // (1024 * 1024), d['node'])
                     for key, d in sorted(devices.items()))


def persistent_differences(live_before, config_after):
    """How the destination's persistent definition differs from the vCPUs and memory devices the guest ran with."""
    if config_after is None:
        return ['the destination has no persistent definition of the domain']
    differences = []
    live_vcpus = sorted(live_before.enabled_vcpu_ids)
    config_vcpus = sorted(config_after.enabled_vcpu_ids)
    if live_vcpus != config_vcpus:
        differences.append('the guest ran with vCPUs %s, the destination\'s persistent definition enables %s'
                           % (format_cpulist(live_vcpus), format_cpulist(config_vcpus)))
    if config_after.vcpu_max != live_before.vcpu_max:
        differences.append('the vCPU maximum was %d, the destination\'s persistent definition has %d'
                           % (live_before.vcpu_max, config_after.vcpu_max))
    live_devices = sorted(device_key(d) for d in live_before.memory_devices)
    config_devices = sorted(device_key(d) for d in config_after.memory_devices)
    if live_devices != config_devices:
        differences.append('the guest ran with memory devices %s, the destination\'s persistent definition has %s'
                           % (_keys(live_devices), _keys(config_devices)))
    return differences


def _keys(keys):
    return ', '.join('%s %d MiB node %s' % (m, kib_to_mib(size), node) for m, size, node, _r in keys) or 'none'


def wait_for_guest(dom, read_live_model, before, timeout, clock=time.monotonic, sleep=time.sleep):
    """Capture the destination's view until its guest agent answers (it reconnects after the switch-over).

    Returns (view, seconds waited).  Without a guest view before there is none to wait for.
    """
    started = clock()
    while True:
        model = read_live_model()
        view = capture(dom, model, with_guest=before.get('guest') is not None)
        if before.get('guest') is None or view['guest'] is not None or clock() - started >= timeout:
            return view, clock() - started
        sleep(0.5)
