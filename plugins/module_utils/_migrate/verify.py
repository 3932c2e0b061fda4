# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""After a migration: both hosts re-read (the guest runs exactly once), and is the guest on the destination the
guest that left the source?

Both hosts are read again after the migration call, whatever it returned, over
a new destination connection when the old one died with its daemon.

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
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import SOURCE
from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import kib_to_mib
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import error_text, is_error, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import parse_domain_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.guest_agent import guest_memory, guest_vcpus
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.qemu_monitor import (
    QemuMonitorUnavailable, qemu_memory_devices, qemu_vcpus,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.facts import DESTINATION, device_key
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.read import peer

# How long to wait for the guest agent on the destination after the switch-over.
GUEST_AGENT_WAIT_SECONDS = 30


# --------------------------------------------------------------- both hosts again

def host_state(conn, uuid, uri):
    """Where the domain is on one host, re-read: defined or not, state, persistent."""
    if conn is None:
        return dict(uri=uri, reachable=False, defined=None, state=None, persistent=None)
    try:
        dom = conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_DOMAIN'):
            return dict(uri=uri, reachable=True, defined=False, state=None, persistent=None)
        return dict(uri=uri, reachable=False, defined=None, state=None, persistent=None, error=error_text(exc))
    found = peer(dom)
    return dict(uri=uri, reachable=True, defined=True, state=found.state, active=found.active,
                persistent=found.persistent)


def both_hosts(run, uuid):
    source = run.session(SOURCE)
    return dict(source=host_state(source.conn, uuid, source.uri),
                destination=host_state(reopen_dest(run), uuid, run.request.dest_uri))


def reopen_dest(run):
    """The destination connection for a re-read; a new one when the old one died with its daemon."""
    session = run.session(DESTINATION)
    try:
        if session.conn is not None and session.conn.isAlive():
            return session.conn
    except libvirt.libvirtError:
        pass
    try:
        conn = libvirt.open(session.uri)
    except libvirt.libvirtError:
        return None
    old = session.conn
    session.replace(conn, None)
    try:
        old.close()
    except Exception:  # pylint: disable=broad-except
        pass
    return conn


def dest_domain(run, uuid):
    conn = reopen_dest(run)
    if conn is None:
        return None
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError:
        return None


# --------------------------------------------------------------- the guest that arrived

def verify_destination(run, ddom, snap, view_before):
    """The destination's QEMU, guest and persistent definition against what ran on the source."""
    request = run.request
    report = dict(agree=True, differences=[], before=view_before, after=None, persistent_differences=[])
    if ddom is None:
        report.update(agree=False, differences=['the destination domain cannot be looked up'])
        return report
    if request.live and view_before is not None:
        def live_model():
            return parse_domain_xml(ddom.XMLDesc(0))
        after, waited = wait_for_guest(ddom, live_model, view_before, GUEST_AGENT_WAIT_SECONDS, clock=run.clock)
        report.update(after=after, guest_wait_s=round(waited, 2))
        report['differences'] = runtime_differences(view_before, after)
        if view_before.get('guest') is not None and after.get('guest') is None:
            report['differences'].append('the guest agent does not answer on the destination: %s'
                                         % after.get('guest_error'))
    if request.persistent:
        try:
            config = parse_domain_xml(ddom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) if ddom.isPersistent() else None
        except libvirt.libvirtError as exc:
            config = None
            report['differences'].append('cannot read the destination\'s persistent definition: %s' % error_text(exc))
        reference = snap.live if snap.live is not None else snap.config
        report['persistent_differences'] = persistent_differences(reference, config)
        report['differences'].extend(report['persistent_differences'])
    report['agree'] = not report['differences']
    return report


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
