# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading and changing domains' pinning through libvirt, for the evacuation planned in _host/evacuation.py.

read_domains() reads every domain's pinning per scope (XML plus libvirt's effective pinning where the XML is
silent) and its evacuation record; apply_plan() pins, records and verifies, and puts everything back when a
step fails; reread_views() is the pinning as libvirt reports it afterwards.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.scope import CONFIG, LIVE
from ansible_collections.kvm.hotplug.plugins.module_utils._host.evacuation import (
    BINDING_MODES, DomainPins, ScopePins, format_record, parse_record, thread_name,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import call, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.metadata import (
    EVACUATION, read_metadata, write_metadata,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.scope import affect_flag, read_model

EVACUATION_NS = EVACUATION.uri


def _ids_from_map(cpumap):
    return tuple(i for i, on in enumerate(cpumap) if on)


def read_scope(dom, model, scope):
    """ScopePins of one definition, from its XML model plus libvirt's effective pinning where XML is silent."""
    flag = affect_flag(scope)
    pinning = model.pinning
    result = ScopePins(cpuset=pinning.vcpu_cpuset, placement=model.vcpu_placement)
    auto = model.vcpu_placement == 'auto'
    vcpu_maps = None
    if auto:
        try:
            vcpu_maps = dom.vcpuPinInfo(flag)
        except libvirt.libvirtError:
            vcpu_maps = None
    for vcpu in range(model.vcpu_max):
        if vcpu in pinning.vcpupin:
            result.pins[('vcpu', vcpu)] = ('vcpupin', tuple(pinning.vcpupin[vcpu]))
        elif pinning.vcpu_cpuset:
            result.pins[('vcpu', vcpu)] = ('cpuset', tuple(pinning.vcpu_cpuset))
        elif auto and vcpu_maps is not None and vcpu < len(vcpu_maps):
            result.pins[('vcpu', vcpu)] = ('placement-auto', _ids_from_map(vcpu_maps[vcpu]))
        else:
            result.unpinned.append(thread_name('vcpu', vcpu))
    if pinning.emulatorpin is not None:
        result.pins[('emulator', None)] = ('emulatorpin', tuple(pinning.emulatorpin))
    elif pinning.vcpu_cpuset:
        result.pins[('emulator', None)] = ('cpuset', tuple(pinning.vcpu_cpuset))
    elif auto:
        try:
            result.pins[('emulator', None)] = ('placement-auto', _ids_from_map(dom.emulatorPinInfo(flag)))
        except libvirt.libvirtError:
            result.unpinned.append('emulator')
    else:
        result.unpinned.append('emulator')
    try:
        iothreads = dom.ioThreadInfo(flag)
    except libvirt.libvirtError:
        iothreads = []
    for ident, cpumap in iothreads:
        if ident in pinning.iothreadpin:
            result.pins[('iothread', ident)] = ('iothreadpin', tuple(pinning.iothreadpin[ident]))
        elif pinning.vcpu_cpuset:
            result.pins[('iothread', ident)] = ('cpuset', tuple(pinning.vcpu_cpuset))
        elif auto:
            result.pins[('iothread', ident)] = ('placement-auto', _ids_from_map(cpumap))
        else:
            result.unpinned.append(thread_name('iothread', ident))
    result.record = parse_record(read_metadata(dom, EVACUATION, scope))
    return result


def read_domains(conn):
    """DomainPins for every domain libvirt knows on conn (running and defined)."""
    domains = []
    for dom in call('listing the domains', conn.listAllDomains, 0):
        snapshot = read_domain(dom)
        scopes = {}
        if snapshot.live is not None:
            scopes['live'] = read_scope(dom, snapshot.live, LIVE)
        if snapshot.config is not None:
            scopes['config'] = read_scope(dom, snapshot.config, CONFIG)
        bound = ()
        if snapshot.live is not None:
            bound = _bound_nodes(dom, snapshot.live.pinning)
        domains.append(DomainPins(
            name=snapshot.name, uuid=snapshot.uuid, state=snapshot.state, active=snapshot.active,
            persistent=snapshot.persistent, migrating=snapshot.job.migrating, job_operation=snapshot.job.operation,
            scopes=scopes, bound_nodes=bound, dom=dom))
    return sorted(domains, key=lambda d: d.name)


def _bound_nodes(dom, pin):
    """Host nodes a running domain's memory is bound to (numatune), asking libvirt when placement='auto' left
    the XML without a nodeset (numad chose it)."""
    if pin.numa_memory_mode not in BINDING_MODES and not pin.numa_memnodes:
        return ()
    nodes = set()
    if pin.numa_memory_mode in BINDING_MODES:
        nodeset = pin.numa_memory_nodeset
        if nodeset is None:
            try:
                nodeset = parse_cpulist(dom.numaParameters(libvirt.VIR_DOMAIN_AFFECT_LIVE).get('numa_nodeset'))
            except (libvirt.libvirtError, ValueError, AttributeError):
                nodeset = ()
        nodes.update(nodeset or ())
    for cell_nodes in pin.numa_memnodes.values():
        nodes.update(cell_nodes)
    return tuple(sorted(nodes))


def _cpumap(cpus, length):
    return tuple(i in set(cpus) for i in range(length))


def _pin(dom, change, cpus, length):
    flag = affect_flag(change.scope)
    cpumap = _cpumap(cpus, length)
    action = 'pinning %s of domain %s (%s) to CPU %s' % (change.thread, dom.name(), change.scope,
                                                         format_cpulist(cpus))
    if change.kind == 'vcpu':
        call(action, dom.pinVcpuFlags, change.id, cpumap, flag)
    elif change.kind == 'emulator':
        call(action, dom.pinEmulator, cpumap, flag)
    elif change.kind == 'iothread':
        call(action, dom.pinIOThread, change.id, cpumap, flag)


def apply_plan(plan, cpumap_length):
    """Pin every planned thread, record the evacuation, then re-read and verify each domain.

    On any failure, pins and records already changed are put back and HotplugError is raised.
    Returns the verified per-domain views.
    """
    done = []               # (dom, change) applied
    records_done = []       # (dom, scope, previous record)
    try:
        for dchange in plan.changes:
            dom = dchange.domain.dom
            for change in dchange.changes:
                _pin(dom, change, change.after, cpumap_length)
                done.append((dom, change))
            for scope, record in sorted(dchange.records_after.items()):
                previous = dchange.domain.scopes[scope].record
                write_metadata(dom, EVACUATION, scope, format_record(record))
                records_done.append((dom, scope, previous))
        problems = verify_plan(plan)
        if problems:
            raise HotplugError('re-pinning was not applied as planned: %s' % '; '.join(problems),
                               verify_problems=problems)
    except HotplugError as exc:
        undone, failed = undo_plan(done, records_done, cpumap_length)
        suffix = ('; put back %d pin(s) as they were' % undone) if undone else ''
        if failed:
            suffix += '; ROLLBACK INCOMPLETE: %s' % '; '.join(failed)
        details = dict(exc.details)
        details.update(repin_rollback_failed=failed)
        raise HotplugError(exc.msg + suffix, exception=exc.exception, **details)


def undo_plan(done, records_done, cpumap_length):
    undone = 0
    failed = []
    for dom, change in reversed(done):
        try:
            _pin(dom, change, change.before, cpumap_length)
            undone += 1
        except HotplugError as exc:
            failed.append(exc.msg)
    for dom, scope, previous in reversed(records_done):
        try:
            write_metadata(dom, EVACUATION, scope, format_record(previous))
        except HotplugError as exc:
            failed.append(exc.msg)
    return undone, failed


def verify_plan(plan):
    """Re-read each changed domain (XML, vcpuPinInfo, emulatorPinInfo, ioThreadInfo); list what differs."""
    problems = []
    for dchange in plan.changes:
        dom = dchange.domain.dom
        for scope in sorted(set(c.scope for c in dchange.changes)):
            flag = affect_flag(scope)
            model = read_model(dom, scope, dom.name(), 'reading domain %s again' % dom.name())
            pinning = model.pinning
            vcpu_maps = None
            for change in (c for c in dchange.changes if c.scope == scope):
                want = tuple(change.after)
                if change.kind == 'vcpu':
                    got = tuple(pinning.vcpupin.get(change.id, ()))
                    if vcpu_maps is None:
                        vcpu_maps = call('reading the vCPU pinning of %s' % dom.name(), dom.vcpuPinInfo, flag)
                    if change.id < len(vcpu_maps) and _ids_from_map(vcpu_maps[change.id]) != want:
                        problems.append('domain %s (%s): libvirt reports vcpu %d on CPU %s, expected %s'
                                        % (dom.name(), scope, change.id,
                                           format_cpulist(_ids_from_map(vcpu_maps[change.id])), format_cpulist(want)))
                        continue
                elif change.kind == 'emulator':
                    got = tuple(pinning.emulatorpin or ())
                    effective = _ids_from_map(call('reading the emulator pinning of %s' % dom.name(),
                                                   dom.emulatorPinInfo, flag))
                    if effective != want:
                        problems.append('domain %s (%s): libvirt reports the emulator on CPU %s, expected %s'
                                        % (dom.name(), scope, format_cpulist(effective), format_cpulist(want)))
                        continue
                else:
                    got = tuple(pinning.iothreadpin.get(change.id, ()))
                    info = dict(call('reading the iothread pinning of %s' % dom.name(), dom.ioThreadInfo, flag))
                    if change.id in info and _ids_from_map(info[change.id]) != want:
                        problems.append('domain %s (%s): libvirt reports iothread %d on CPU %s, expected %s'
                                        % (dom.name(), scope, change.id, format_cpulist(_ids_from_map(info[change.id])),
                                           format_cpulist(want)))
                        continue
                if got != want:
                    problems.append('domain %s (%s): the XML pins %s to CPU %s, expected %s'
                                    % (dom.name(), scope, change.thread, format_cpulist(got) or 'nothing',
                                       format_cpulist(want)))
    return problems


def reread_views(plan):
    """The pinning of every changed domain as libvirt reports it now: {name: {scope: {thread: cpus}}}."""
    views = {}
    for dchange in plan.changes:
        dom = dchange.domain.dom
        views[dchange.domain.name] = {}
        for scope in sorted(set(c.scope for c in dchange.changes)):
            model = read_model(dom, scope, dom.name(), 'reading domain %s again' % dom.name())
            views[dchange.domain.name][scope] = read_scope(dom, model, scope).pinned_view()
    return views
