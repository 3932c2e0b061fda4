# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_migrate's run: read both hosts, plan, stop in check mode, migrate, re-read both hosts, verify, report.

The run is a sequence of hooks (open, read, plan, apply, reread, verify) over
two sessions, a source and a destination, so that it moves onto the shared run
skeleton by handing these hooks over.  Whatever happens after the migration
call, both hosts are read again and the result says where the domain runs.

Metadata: libvirt migrates the domain's metadata as it is in each definition
(the live metadata with the running domain, the persistent one with the
persistent definition).  The module deliberately clears its own two records on
the destination after a successful migration:
- the TCG-unplug marker (live): it protects one QEMU process that holds
  unfinalized vCPUs; the destination runs a new QEMU process without them;
- the evacuation record (live and persistent): it names the source host's CPUs
  that pins were moved off; on another host it would put pins back onto CPUs that
  never went offline there.
What was on the source is returned in `metadata`.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import time

from ansible_collections.kvm.hotplug.plugins.module_utils._domain_lock import DomainLock
from ansible_collections.kvm.hotplug.plugins.module_utils._domain_model import etree, parse_domain_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._domain_runtime import read_domain, state_name
from ansible_collections.kvm.hotplug.plugins.module_utils._evacuation import EVACUATION_NS
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt_connection import (
    HotplugError, error_text, is_error, libvirt, open_connection, resolve_uri,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate import apply as migrate_apply
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate import verify as migrate_verify
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.plan import (
    ALREADY_THERE, DestinationFacts, HostFacts, Peer, SourceFacts, parse_domain_capabilities,
    parse_host_capabilities, plan_migration,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._qemu_monitor import QemuMonitorUnavailable, qemu_vcpus
from ansible_collections.kvm.hotplug.plugins.module_utils._tcg_hazard import METADATA_URI as TCG_MARKER_NS

MIGRATED = 'migrated'
ABORTED = 'aborted'
POSTCOPY = 'postcopy'
FAILED_SOURCE_RUNNING = 'failed_source_running'
# Not one of the outcomes the module aims for: after a failure the domain is not (only) running on the source.
FAILED = 'failed'
CHECK_MODE = 'check_mode'

# How long to wait for the guest agent on the destination after the switch-over.
GUEST_AGENT_WAIT_SECONDS = 30
_CPU_COMPARE = {0: 'incompatible', 1: 'identical', 2: 'superset'}


# --------------------------------------------------------------- reading hosts

def host_facts(conn, uri):
    caps_uuid, bits = None, None
    try:
        caps_uuid, bits = parse_host_capabilities(conn.getCapabilities())
    except libvirt.libvirtError:
        pass

    def ask(func, *args):
        try:
            return func(*args)
        except libvirt.libvirtError:
            return None
    free = ask(conn.getFreeMemory)
    cpumap = ask(conn.getCPUMap)
    return HostFacts(
        uri=uri, host_uuid=caps_uuid, hypervisor=ask(conn.getType), version=ask(conn.getVersion),
        lib_version=ask(conn.getLibVersion), free_memory_kib=None if free is None else free // 1024,
        online_cpus=None if cpumap is None else tuple(i for i, on in enumerate(cpumap[1]) if on),
        phys_addr_bits=bits,
    )


def domain_platform(xml_text):
    """(emulator, arch, machine, domain type, <cpu> element text or None, cpu mode) of a domain XML."""
    root = etree.fromstring(xml_text.encode('utf-8') if isinstance(xml_text, str) else xml_text)
    os_type = root.find('os/type')
    cpu = root.find('cpu')
    cpu_text = None
    mode = None
    if cpu is not None:
        mode = cpu.get('mode', 'custom')
        if cpu.find('model') is not None or mode != 'custom':
            copy = etree.fromstring(etree.tostring(cpu))
            for numa in copy.findall('numa'):
                copy.remove(numa)
            cpu_text = etree.tostring(copy, encoding='unicode')
    return dict(emulator=root.findtext('devices/emulator'), arch=os_type.get('arch') if os_type is not None else None,
                machine=os_type.get('machine') if os_type is not None else None, domain_type=root.get('type'),
                cpu=cpu_text, cpu_mode=mode)


def peer(dom):
    code, _reason = dom.state()
    state = state_name(code)
    return Peer(name=dom.name(), uuid=dom.UUIDString(), state=state,
                active=state in ('running', 'blocked', 'paused', 'pmsuspended'), persistent=bool(dom.isPersistent()))


def find_peer(func, key):
    try:
        return peer(func(key))
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_DOMAIN'):
            return None
        raise HotplugError('looking up domain %s on the destination: %s' % (key, error_text(exc)))


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


def definition_problems(candidate_xml, caps_xml):
    """The destination-bootability problems of a definition beyond what plan.py checks itself (none yet)."""
    del candidate_xml, caps_xml
    return ()


def _metadata(dom, namespace, flags):
    try:
        return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace, flags)
    except libvirt.libvirtError:
        return None


def clear_metadata(dom, namespace, flags):
    """Remove one metadata element; returns None or the error text."""
    try:
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, namespace, flags)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_DOMAIN_METADATA'):
            return None
        return error_text(exc)
    return None


class MigrationRun(object):
    """One domain_migrate task.  Hooks: open, read, plan, apply, reread, verify; run() strings them together."""

    def __init__(self, module, request, clock=time.monotonic):
        self.module = module
        self.request = request
        self.clock = clock
        self.started = clock()
        self.source_uri = resolve_uri(module.params.get('uri'))
        self.sconn = None
        self.dconn = None
        self.dom = None
        self.dest_error = None
        self.notes = []
        self.warnings = []

    # ------------------------------------------------------------ sessions

    def open(self):
        self.sconn = open_connection(self.source_uri)
        try:
            self.dconn = open_connection(self.request.dest_uri)
        except HotplugError as exc:
            self.dest_error = exc.msg

    def close(self):
        for conn in (self.sconn, self.dconn):
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # pylint: disable=broad-except
                    pass

    def _reopen_dest(self):
        """A fresh destination connection for the re-read (the old one dies with a killed daemon)."""
        try:
            if self.dconn is not None and self.dconn.isAlive():
                return self.dconn
        except libvirt.libvirtError:
            pass
        try:
            self.dconn = open_connection(self.request.dest_uri)
        except HotplugError:
            self.dconn = None
        return self.dconn

    # ------------------------------------------------------------ reading

    def read(self):
        name = self.request.name
        try:
            self.dom = self.sconn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if not is_error(exc, 'VIR_ERR_NO_DOMAIN'):
                raise HotplugError('cannot look up domain %s on %s: %s' % (name, self.source_uri, error_text(exc)))
            self.dom = None
        snap = read_domain(self.dom) if self.dom is not None else None
        qemu = None
        if snap is not None and snap.live is not None:
            try:
                qemu = tuple(sorted(qemu_vcpus(self.dom)))
            except QemuMonitorUnavailable:
                qemu = None
        source = SourceFacts(host=host_facts(self.sconn, self.source_uri), snapshot=snap, qemu_vcpus=qemu)
        dest = self._read_destination(snap)
        return source, dest

    def _read_destination(self, snap):
        conn = self.dconn
        by_name = find_peer(conn.lookupByName, self.request.name)
        by_uuid = find_peer(conn.lookupByUUIDString, snap.uuid) if snap is not None else None
        if snap is None:
            by_uuid = find_peer(conn.lookupByUUIDString, by_name.uuid) if by_name is not None else None
            return DestinationFacts(host=host_facts(conn, self.request.dest_uri), by_name=by_name, by_uuid=by_uuid)
        flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE
        if snap.live is None:
            flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
        xml = self.dom.XMLDesc(flags)
        platform = domain_platform(xml)
        domcaps, domcaps_error, caps_xml = None, None, None
        try:
            caps_xml = conn.getDomainCapabilities(platform['emulator'], platform['arch'], platform['machine'],
                                                  platform['domain_type'], 0)
            domcaps = parse_domain_capabilities(caps_xml)
        except libvirt.libvirtError as exc:
            domcaps_error = error_text(exc)
        cpu_compare, cpu_detail = self._compare_cpu(conn, platform)
        problems = ()
        if caps_xml is not None:
            candidate = xml if snap.config is None else self.dom.XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_MIGRATABLE)
            problems = tuple(definition_problems(candidate, caps_xml))
        return DestinationFacts(host=host_facts(conn, self.request.dest_uri), by_name=by_name, by_uuid=by_uuid,
                                domcaps=domcaps, domcaps_error=domcaps_error, cpu_compare=cpu_compare,
                                cpu_detail=cpu_detail, definition_problems=problems)

    @staticmethod
    def _compare_cpu(conn, platform):
        if platform['cpu'] is None:
            return 'not_compared', 'the domain has no <cpu> model (QEMU\'s default CPU model)'
        if platform['cpu_mode'] == 'host-passthrough':
            return 'not_compared', 'host-passthrough: libvirt cannot compare it; the hosts need the same CPU'
        args = (platform['emulator'], platform['arch'], platform['machine'], platform['domain_type'], platform['cpu'])
        try:
            result = conn.compareHypervisorCPU(*args, 0)
        except libvirt.libvirtError as exc:
            return 'not_compared', 'libvirt could not compare the CPU: %s' % error_text(exc)
        name = _CPU_COMPARE.get(result, 'not_compared')
        if name != 'incompatible':
            return name, None
        try:
            conn.compareHypervisorCPU(*args, libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)
        except libvirt.libvirtError as exc:
            return name, error_text(exc)
        return name, 'libvirt gave no reason'

    # ------------------------------------------------------------ run

    def run(self):
        self.open()
        try:
            return self._run()
        finally:
            self.close()

    def _run(self):
        request = self.request
        if self.dconn is None:
            checks = dict(destination=dict(ok=False, value=request.dest_uri, limit=self.dest_error))
            raise HotplugError('refusing to migrate domain %s to %s: the destination is unreachable (%s); nothing was '
                               'moved' % (request.name, request.dest_uri, self.dest_error), checks=checks,
                               outcome=None)
        lock_key = None
        try:
            lock_key = self.sconn.lookupByName(request.name).UUIDString()
        except libvirt.libvirtError:
            pass
        if lock_key is None:
            return self._plan_and_go()
        with DomainLock(lock_key, request.name, request.timeout or 60):
            return self._plan_and_go()

    def _plan_and_go(self):
        request = self.request
        source, dest = self.read()
        plan = plan_migration(request, source, dest)
        self.notes.extend(plan.notes)
        snap = source.snapshot
        before = dict(source=self._state_now(self.sconn, snap, self.source_uri),
                      destination=self._dest_state_now(dest))
        if plan.refusal:
            raise HotplugError(plan.refusal, checks=plan.checks, outcome=None, before=before)
        if plan.action == ALREADY_THERE:
            return self._result(False, ALREADY_THERE, plan, before=before, after=before)
        if self.module.check_mode:
            return self._result(True, CHECK_MODE, plan, before=before, after=None)

        view_before = None
        if snap.live is not None:
            view_before = migrate_verify.capture(self.dom, snap.live)
        metadata_before = self._our_metadata(self.dom, snap)
        downtime_set = None
        if request.live and request.max_downtime_ms is not None:
            value, error = migrate_apply.set_max_downtime(self.dom, request.max_downtime_ms)
            if error:
                raise HotplugError('refusing to migrate domain %s to %s: cannot set the maximum downtime to %d ms: %s; '
                                   'nothing was moved' % (request.name, request.dest_uri, request.max_downtime_ms,
                                                          error), checks=plan.checks, outcome=None, before=before)
            downtime_set = value
        attempt = migrate_apply.migrate(self.dom, request, clock=self.clock)
        return self._after(plan, snap, before, attempt, view_before, metadata_before, downtime_set)

    @staticmethod
    def _state_now(conn, snap, uri):
        if snap is None:
            return dict(uri=uri, reachable=True, defined=False, state=None, persistent=None)
        return dict(uri=uri, reachable=True, defined=True, state=snap.state, active=snap.active,
                    persistent=snap.persistent)

    def _dest_state_now(self, dest):
        found = dest.by_uuid or dest.by_name
        if found is None:
            return dict(uri=self.request.dest_uri, reachable=True, defined=False, state=None, persistent=None)
        return dict(uri=self.request.dest_uri, reachable=True, defined=True, state=found.state, active=found.active,
                    persistent=found.persistent, name=found.name, uuid=found.uuid)

    # ------------------------------------------------------------ after the call

    def _after(self, plan, snap, before, attempt, view_before, metadata_before, downtime_set):
        request = self.request
        uuid = snap.uuid
        if not attempt.ok and attempt.timeout_action == 'suspend':
            self._resume_source(uuid)
        after = dict(source=host_state(self.sconn, uuid, self.source_uri),
                     destination=host_state(self._reopen_dest(), uuid, request.dest_uri))
        outcome = self._outcome(attempt, after)
        ddom = self._dest_domain(uuid) if after['destination'].get('defined') else None
        job = migrate_apply.completed_job(ddom) if attempt.ok else None
        if job is None and not attempt.ok and self.dom is not None:
            job = migrate_apply.completed_job(self.dom)
        if not job or 'time_elapsed' not in job:
            job = attempt.last_job or job  # a cancelled job keeps no statistics; the watcher's last reading does
        extra = dict(attempt=attempt.to_dict(), job=_job_report(job), max_downtime_set_ms=downtime_set)
        if outcome in (MIGRATED, POSTCOPY):
            extra['metadata'] = self._clear_our_metadata(ddom, metadata_before)
            extra['verify'] = self._verify(ddom, snap, view_before)
        else:
            extra['metadata'] = dict(before=metadata_before, destination='not changed: the domain did not move')
        result = self._result(outcome in (MIGRATED, POSTCOPY), outcome, plan, before=before, after=after,
                              call=attempt, stats=job, **extra)
        if outcome not in (MIGRATED, POSTCOPY):
            raise HotplugError(self._failure_message(outcome, attempt, after), exception=attempt.exception, **result)
        if extra['verify']['agree'] is False:
            raise HotplugError('domain %s moved to %s, but the destination differs from what ran on the source: %s'
                               % (request.name, request.dest_uri, '; '.join(extra['verify']['differences'])),
                               **result)
        return result

    def _outcome(self, attempt, after):
        src, dst = after['source'], after['destination']
        src_running = bool(src.get('active'))
        dst_running = bool(dst.get('active'))
        if attempt.ok:
            arrived = dst_running if self.request.live else bool(dst.get('defined'))
            if arrived and not src_running:
                return POSTCOPY if attempt.timeout_action == 'postcopy' and not attempt.timeout_action_error \
                    else MIGRATED
            return FAILED
        if src_running and not dst_running:
            if attempt.timeout_action == 'abort' and not attempt.timeout_action_error:
                return ABORTED
            return FAILED_SOURCE_RUNNING
        if not self.request.live and src.get('defined') and not dst.get('defined'):
            return FAILED_SOURCE_RUNNING
        return FAILED

    def _failure_message(self, outcome, attempt, after):
        name, dest = self.request.name, self.request.dest_uri
        where = 'source %s, destination %s' % (_where(after['source']), _where(after['destination']))
        if outcome == ABORTED:
            return ('migration of domain %s to %s aborted after the timeout of %d s; it is still running on the source '
                    'and not on the destination (%s)' % (name, dest, self.request.timeout, where))
        if outcome == FAILED_SOURCE_RUNNING:
            return ('migration of domain %s to %s failed: %s; it is still %s on the source and %s (%s)'
                    % (name, dest, attempt.error or 'the destination does not run it',
                       'running' if self.request.live else 'defined',
                       'not on the destination' if after['destination'].get('reachable')
                       else 'the destination daemon cannot be asked', where))
        return ('migration of domain %s to %s failed (%s), and the domain is not running on the source alone: %s'
                % (name, dest, attempt.error or 'libvirt reported success', where))

    def _resume_source(self, uuid):
        """The watcher paused the guest for the switch-over that then failed: let it run on again."""
        try:
            dom = self.sconn.lookupByUUIDString(uuid)
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
                self.warnings.append('resumed domain %s on the source: it was suspended for a migration that failed'
                                     % self.request.name)
        except libvirt.libvirtError as exc:
            self.warnings.append('could not resume domain %s on the source: %s' % (self.request.name, error_text(exc)))

    def _dest_domain(self, uuid):
        conn = self._reopen_dest()
        if conn is None:
            return None
        try:
            return conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError:
            return None

    # ------------------------------------------------------------ metadata

    @staticmethod
    def _our_metadata(dom, snap):
        live = libvirt.VIR_DOMAIN_AFFECT_LIVE
        config = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        marker = _metadata(dom, TCG_MARKER_NS, live) if snap.live is not None else None
        leaked = None
        if marker:
            leaked = etree.fromstring(marker.encode()).get('vcpus')
        return dict(
            tcg_unplug_marker=leaked,
            evacuation_record=dict(live=_metadata(dom, EVACUATION_NS, live) if snap.live is not None else None,
                                   config=_metadata(dom, EVACUATION_NS, config) if snap.persistent else None),
        )

    def _clear_our_metadata(self, ddom, before):
        report = dict(before=before, cleared=[], errors=[])
        if ddom is None:
            return report
        todo = []
        if self.request.live:
            todo.append(('tcg_unplug_marker live', TCG_MARKER_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE))
            todo.append(('evacuation_record live', EVACUATION_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        if self.request.persistent:
            todo.append(('evacuation_record config', EVACUATION_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG))
        for label, namespace, flags in todo:
            if _metadata(ddom, namespace, flags) is None:
                continue
            error = clear_metadata(ddom, namespace, flags)
            if error:
                report['errors'].append('%s: %s' % (label, error))
                self.warnings.append('could not clear the %s on the destination: %s' % (label, error))
            else:
                report['cleared'].append(label)
        return report

    # ------------------------------------------------------------ verification

    def _verify(self, ddom, snap, view_before):
        report = dict(agree=True, differences=[], before=view_before, after=None, persistent_differences=[])
        if ddom is None:
            report.update(agree=False, differences=['the destination domain cannot be looked up'])
            return report
        if self.request.live and view_before is not None:
            def live_model():
                return parse_domain_xml(ddom.XMLDesc(0))
            after, waited = migrate_verify.wait_for_guest(ddom, live_model, view_before, GUEST_AGENT_WAIT_SECONDS,
                                                           clock=self.clock)
            report.update(after=after, guest_wait_s=round(waited, 2))
            report['differences'] = migrate_verify.runtime_differences(view_before, after)
            if view_before.get('guest') is not None and after.get('guest') is None:
                report['differences'].append('the guest agent does not answer on the destination: %s'
                                             % after.get('guest_error'))
        if self.request.persistent:
            try:
                config = parse_domain_xml(ddom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) if ddom.isPersistent() else None
            except libvirt.libvirtError as exc:
                config = None
                report['differences'].append('cannot read the destination\'s persistent definition: %s'
                                             % error_text(exc))
            reference = snap.live if snap.live is not None else snap.config
            report['persistent_differences'] = migrate_verify.persistent_differences(reference, config)
            report['differences'].extend(report['persistent_differences'])
        report['agree'] = not report['differences']
        return report

    # ------------------------------------------------------------ result

    def _result(self, changed, outcome, plan, before, after, call=None, stats=None, **extra):
        request = self.request
        names = migrate_apply.migration_flags(request)[1]
        result = dict(
            changed=changed, outcome=outcome, checks=plan.checks, notes=self.notes,
            flags=names, before=before, after=after,
            timings=dict(total_s=round(self.clock() - self.started, 2),
                         migration_s=None if call is None else round(call.seconds, 2),
                         # a running job's "downtime" is QEMU's expectation; only a completed one's is measured
                         downtime_ms=(stats or {}).get('downtime') if call is not None and call.ok else None,
                         job_elapsed_ms=(stats or {}).get('time_elapsed')),
            transferred=_transferred(stats),
            elapsed=round(self.clock() - self.started, 2),
        )
        result.update(extra)
        for warning in self.warnings:
            self.module.warn(warning)
        self.warnings = []
        if self.module._diff:
            result['diff'] = dict(before=before, after=after if after is not None else {})
        return result


def _where(state):
    if state.get('reachable') is False:
        return 'unreachable'
    if not state.get('defined'):
        return 'not defined'
    return state.get('state') or '?'


def _transferred(job):
    if not job:
        return dict(data_total_bytes=None, data_processed_bytes=None, memory_processed_bytes=None,
                    memory_bps=None, memory_iterations=None)
    return dict(data_total_bytes=job.get('data_total'), data_processed_bytes=job.get('data_processed'),
                memory_processed_bytes=job.get('memory_processed'), memory_bps=job.get('memory_bps'),
                memory_iterations=job.get('memory_iteration'))


def _job_report(job):
    if not job:
        return None
    keep = ('type', 'operation', 'time_elapsed', 'downtime', 'setup_time', 'data_total', 'data_processed',
            'data_remaining', 'memory_total', 'memory_processed', 'memory_remaining', 'memory_bps',
            'memory_dirty_rate', 'memory_iteration', 'memory_postcopy_requests', 'auto_converge_throttle')
    return {key: job[key] for key in keep if key in job}
