# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_migrate's run: read both hosts, plan, stop in check mode, migrate, re-read both hosts, verify, report.

MigrationChange supplies the hooks of the shared run skeleton (_common/runner.py)
for a change with two sessions, the source (option uri) and the destination
(option dest_uri, opened in read() so that an unreachable destination is a
refusal like the others).  Whatever happens after the migration call, both
hosts are read again and the result says where the domain runs.

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

from dataclasses import dataclass, field

from ansible_collections.kvm.hotplug.plugins.module_utils._common.argspec import DOMAIN_ARGS
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import SOURCE, Change, Endpoint
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import error_text, is_error, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_check import (
    capabilities_query, parse_domain_capabilities,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import etree, parse_domain_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.metadata import EVACUATION, TCG_HAZARD
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.qemu_monitor import (
    QemuMonitorUnavailable, qemu_vcpus,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.snapshot import state_name
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate import apply as migrate_apply
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate import verify as migrate_verify
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.plan import (
    ALREADY_THERE, TIMEOUT_ACTIONS, DestinationFacts, HostFacts, MigrationRequest, Peer, SourceFacts,
    parse_host_capabilities, plan_migration,
)

MIGRATED = 'migrated'
ABORTED = 'aborted'
POSTCOPY = 'postcopy'
FAILED_SOURCE_RUNNING = 'failed_source_running'
# Not one of the outcomes the module aims for: after a failure the domain is not (only) running on the source.
FAILED = 'failed'
CHECK_MODE = 'check_mode'

DESTINATION = 'destination'
# Waiting for another kvm.hotplug task on the domain, when the migration itself has no timeout.
LOCK_TIMEOUT_SECONDS = 60
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
    """The getDomainCapabilities arguments of a domain XML (emulator, arch, machine, domain type), and its <cpu>
    without the guest NUMA cells, as compareHypervisorCPU takes it (None when it names no model), and the cpu mode."""
    emulator, arch, machine, domain_type = capabilities_query(xml_text)
    root = etree.fromstring(xml_text.encode('utf-8') if isinstance(xml_text, str) else xml_text)
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
    return dict(emulator=emulator, arch=arch, machine=machine, domain_type=domain_type, cpu=cpu_text, cpu_mode=mode)


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


_SCOPE_FLAGS = dict(live='VIR_DOMAIN_AFFECT_LIVE', config='VIR_DOMAIN_AFFECT_CONFIG')


def _metadata(dom, namespace, scope):
    """One of the module's records in one definition, or None (also when libvirt cannot say)."""
    try:
        return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace.uri, getattr(libvirt, _SCOPE_FLAGS[scope]))
    except libvirt.libvirtError:
        return None


def clear_metadata(dom, namespace, scope):
    """Remove one record from one definition; returns None or libvirt's error text."""
    try:
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, namespace.uri,
                        getattr(libvirt, _SCOPE_FLAGS[scope]))
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_DOMAIN_METADATA'):
            return None
        return error_text(exc)
    return None


def build_request(params):
    """The options as a MigrationRequest; sizes and times must be positive."""
    for key in ('bandwidth', 'max_downtime_ms', 'parallel_connections', 'timeout'):
        if params.get(key) is not None and params[key] < 1:
            raise HotplugError('%s must be at least 1, got %d' % (key, params[key]))
    return MigrationRequest(
        name=params['name'], dest_uri=params['dest_uri'], live=params['live'], persistent=params['persistent'],
        undefine_source=params['undefine_source'], bandwidth=params['bandwidth'],
        max_downtime_ms=params['max_downtime_ms'], auto_converge=params['auto_converge'],
        parallel_connections=params['parallel_connections'], timeout=params['timeout'],
        timeout_action=params['timeout_action'], migrate_uri=params['migrate_uri'],
    )


@dataclass
class MigrationState:
    """What read() found on both hosts, and what apply() did."""
    source: SourceFacts
    dest: DestinationFacts
    before: dict
    view_before: dict | None = None
    metadata: dict = field(default_factory=dict)
    downtime_set_ms: int | None = None
    landed: dict | None = None          # both hosts right after the migration call


class MigrationChange(Change):
    """domain_migrate's options and hooks for the shared run skeleton."""

    options = dict(
        dest_uri=dict(type='str', required=True),
        live=dict(type='bool', default=True),
        persistent=dict(type='bool', default=True),
        undefine_source=dict(type='bool', default=True),
        bandwidth=dict(type='int'),
        max_downtime_ms=dict(type='int'),
        auto_converge=dict(type='bool', default=False),
        parallel_connections=dict(type='int'),
        timeout=dict(type='int'),
        timeout_action=dict(type='str', choices=list(TIMEOUT_ACTIONS), default='abort'),
        migrate_uri=dict(type='str'),
    )
    option_families = (DOMAIN_ARGS,)

    # The domain may already have left the source (idempotence), so read() looks it up and takes its lock.
    endpoints = (Endpoint(SOURCE, uri_option='uri', name_option=None, lock=False),)

    def request(self, params):
        return build_request(params)

    # ------------------------------------------------------------ reading

    def read(self, run):
        request = run.request
        try:
            run.connect(DESTINATION, request.dest_uri)
        except HotplugError as exc:
            checks = dict(destination=dict(ok=False, value=request.dest_uri, limit=exc.msg))
            raise HotplugError('refusing to migrate domain %s to %s: the destination is unreachable (%s); nothing was '
                               'moved' % (request.name, request.dest_uri, exc.msg), checks=checks, outcome=None)
        source_session = run.session(SOURCE)
        dom = None
        try:
            dom = source_session.conn.lookupByName(request.name)
        except libvirt.libvirtError as exc:
            if not is_error(exc, 'VIR_ERR_NO_DOMAIN'):
                raise HotplugError('cannot look up domain %s on %s: %s' % (request.name, source_session.uri,
                                                                           error_text(exc)))
        if dom is not None:
            source_session.replace(source_session.conn, dom)
            run.lock(dom.UUIDString(), dom.name(), request.timeout or LOCK_TIMEOUT_SECONDS)
        snap = read_domain(dom) if dom is not None else None
        qemu = None
        # libvirt lets no monitor command through while a job (a migration) runs: it would wait 30 s for nothing
        if snap is not None and snap.live is not None and not snap.job.active:
            try:
                qemu = tuple(sorted(qemu_vcpus(dom)))
            except QemuMonitorUnavailable:
                qemu = None
        definition = None
        if snap is not None:
            # the destination keeps the source's persistent definition, or the live one of a transient domain
            flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE
            if snap.persistent and request.persistent:
                flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
            definition = dom.XMLDesc(flags)
        source = SourceFacts(host=host_facts(source_session.conn, source_session.uri), snapshot=snap, qemu_vcpus=qemu,
                             definition_xml=definition)
        dest = read_destination(run.session(DESTINATION).conn, request, dom, snap)
        before = dict(source=_state_from_snapshot(snap, source_session.uri), destination=_state_from_peer(dest, request))
        return MigrationState(source=source, dest=dest, before=before)

    def plan(self, run, state):
        plan = plan_migration(run.request, state.source, state.dest)
        if plan.refusal:
            raise HotplugError(plan.refusal, checks=plan.checks, outcome=None, before=state.before, notes=plan.notes)
        return plan

    def predict(self, run, state, plan):
        if plan.action == ALREADY_THERE:
            return self._result(run, state, plan, False, ALREADY_THERE, after=state.before)
        return self._result(run, state, plan, True, CHECK_MODE, after=None)

    # ------------------------------------------------------------ the move

    def apply(self, run, state, plan):
        request = run.request
        dom = run.dom
        snap = state.source.snapshot
        if snap.live is not None:
            state.view_before = migrate_verify.capture(dom, snap.live)
        state.metadata = dict(before=our_metadata(dom, snap), cleared=[], errors=[])
        if request.live and request.max_downtime_ms is not None:
            value, error = migrate_apply.set_max_downtime(dom, request.max_downtime_ms)
            if error:
                raise HotplugError('refusing to migrate domain %s to %s: cannot set the maximum downtime to %d ms: %s; '
                                   'nothing was moved' % (request.name, request.dest_uri, request.max_downtime_ms,
                                                          error), checks=plan.checks, outcome=None,
                                   before=state.before)
            state.downtime_set_ms = value
        attempt = migrate_apply.migrate(dom, request, clock=run.clock)
        if not attempt.ok and attempt.timeout_action == 'suspend':
            _resume_source(run, snap.uuid)
        state.landed = self._both_hosts(run, snap.uuid)
        attempt.outcome = _outcome(request, attempt, state.landed)
        if attempt.outcome in (MIGRATED, POSTCOPY):
            ddom = _dest_domain(run, snap.uuid)
            if ddom is not None:
                _clear_our_metadata(run, ddom, state.metadata)
        return attempt

    def observe(self, run, state, plan, outcome):
        attempt = outcome  # apply() returns the migration Attempt
        snap = state.source.snapshot
        after = self._both_hosts(run, snap.uuid)
        ddom = _dest_domain(run, snap.uuid) if after['destination'].get('defined') else None
        if attempt.ok:
            job = migrate_apply.completed_job(ddom) or attempt.last_job
        else:
            # a failed or cancelled job keeps hardly any statistics (time_elapsed 0); the watcher's last reading does
            job = attempt.last_job or migrate_apply.completed_job(run.dom)
        verify = None
        if attempt.outcome in (MIGRATED, POSTCOPY):
            verify = _verify(run, ddom, snap, state.view_before)
        return dict(hosts=after, job=job, verify=verify)

    def result(self, run, state, plan, outcome, after):
        attempt = outcome  # apply() returns the migration Attempt; its outcome names where the domain is
        request = run.request
        outcome = attempt.outcome
        moved = outcome in (MIGRATED, POSTCOPY)
        if not moved:
            state.metadata['destination'] = 'not changed: the domain did not move'
        # a failure that still changed where the domain is defined or runs is reported as a change
        changed = moved or _placement(state.before) != _placement(after['hosts'])
        result = self._result(run, state, plan, changed, outcome, after=after['hosts'], attempt=attempt,
                              job=after['job'], verify=after['verify'])
        if not moved:
            raise HotplugError(_failure_message(request, outcome, attempt, after['hosts']),
                               exception=attempt.exception, **result)
        if after['verify']['agree'] is False:
            raise HotplugError('domain %s moved to %s, but the destination differs from what ran on the source: %s'
                               % (request.name, request.dest_uri, '; '.join(after['verify']['differences'])),
                               **result)
        return result

    def reread(self, run, state, plan, exc):
        snap = state.source.snapshot
        return dict(after=self._both_hosts(run, snap.uuid))

    def diff(self, result):
        if result.get('before') is None:
            return None
        return result['before'], result.get('after') or {}

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _both_hosts(run, uuid):
        source = run.session(SOURCE)
        return dict(source=host_state(source.conn, uuid, source.uri),
                    destination=host_state(_reopen_dest(run), uuid, run.request.dest_uri))

    @staticmethod
    def _result(run, state, plan, changed, outcome, after, attempt=None, job=None, verify=None):
        result = dict(
            changed=changed, outcome=outcome, checks=plan.checks, notes=list(plan.notes),
            flags=migrate_apply.migration_flags(run.request)[1], before=state.before, after=after,
            timings=dict(total_s=round(run.elapsed(), 2),
                         migration_s=None if attempt is None else round(attempt.seconds, 2),
                         # a running job's "downtime" is QEMU's expectation; only a completed one's is measured
                         downtime_ms=(job or {}).get('downtime') if attempt is not None and attempt.ok else None,
                         job_elapsed_ms=(job or {}).get('time_elapsed')),
            transferred=_transferred(job),
        )
        if attempt is not None:
            result.update(attempt=attempt.to_dict(), job=_job_report(job), verify=verify, metadata=state.metadata,
                          max_downtime_set_ms=state.downtime_set_ms)
        return result


def read_destination(conn, request, dom, snap):
    """DestinationFacts: the destination host, domains of that name or UUID, and its view of the domain's needs."""
    by_name = find_peer(conn.lookupByName, request.name)
    if snap is None:
        by_uuid = find_peer(conn.lookupByUUIDString, by_name.uuid) if by_name is not None else None
        return DestinationFacts(host=host_facts(conn, request.dest_uri), by_name=by_name, by_uuid=by_uuid)
    by_uuid = find_peer(conn.lookupByUUIDString, snap.uuid)
    flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE
    if snap.live is None:
        flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
    xml = dom.XMLDesc(flags)
    platform = domain_platform(xml)
    domcaps, domcaps_error = None, None
    try:
        domcaps = parse_domain_capabilities(conn.getDomainCapabilities(
            platform['emulator'], platform['arch'], platform['machine'], platform['domain_type'], 0))
    except libvirt.libvirtError as exc:
        domcaps_error = error_text(exc)
    cpu_compare, cpu_detail = compare_cpu(conn, platform)
    return DestinationFacts(host=host_facts(conn, request.dest_uri), by_name=by_name, by_uuid=by_uuid,
                            domcaps=domcaps, domcaps_error=domcaps_error, cpu_compare=cpu_compare,
                            cpu_detail=cpu_detail)


def compare_cpu(conn, platform):
    """libvirt's comparison of the domain's CPU with what the destination's hypervisor can give it."""
    if platform['cpu'] is None:
        return 'not_compared', 'the domain has no <cpu> model (QEMU\'s default CPU model)'
    if platform['cpu_mode'] == 'host-passthrough':
        return 'not_compared', 'host-passthrough: libvirt cannot compare it; the hosts need the same CPU'
    args = (platform['emulator'], platform['arch'], platform['machine'], platform['domain_type'], platform['cpu'])
    try:
        answer = conn.compareHypervisorCPU(*args, 0)
    except libvirt.libvirtError as exc:
        return 'not_compared', 'libvirt could not compare the CPU: %s' % error_text(exc)
    name = _CPU_COMPARE.get(answer, 'not_compared')
    if name != 'incompatible':
        return name, None
    try:
        conn.compareHypervisorCPU(*args, libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)
    except libvirt.libvirtError as exc:
        return name, error_text(exc)
    return name, 'libvirt gave no reason'


def _state_from_snapshot(snap, uri):
    if snap is None:
        return dict(uri=uri, reachable=True, defined=False, state=None, persistent=None)
    return dict(uri=uri, reachable=True, defined=True, state=snap.state, active=snap.active,
                persistent=snap.persistent)


def _state_from_peer(dest, request):
    found = dest.by_uuid or dest.by_name
    if found is None:
        return dict(uri=request.dest_uri, reachable=True, defined=False, state=None, persistent=None)
    return dict(uri=request.dest_uri, reachable=True, defined=True, state=found.state, active=found.active,
                persistent=found.persistent, name=found.name, uuid=found.uuid)


def _reopen_dest(run):
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


def _dest_domain(run, uuid):
    conn = _reopen_dest(run)
    if conn is None:
        return None
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError:
        return None


def _resume_source(run, uuid):
    """The watcher paused the guest for a switch-over that then failed: let it run on again."""
    try:
        dom = run.session(SOURCE).conn.lookupByUUIDString(uuid)
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
            run.warn('resumed domain %s on the source: it was suspended for a migration that failed' % dom.name())
    except libvirt.libvirtError as exc:
        run.warn('could not resume domain %s on the source: %s' % (run.request.name, error_text(exc)))


def _outcome(request, attempt, hosts):
    src, dst = hosts['source'], hosts['destination']
    src_running = bool(src.get('active'))
    dst_running = bool(dst.get('active'))
    if attempt.ok:
        arrived = dst_running if request.live else bool(dst.get('defined'))
        if arrived and not src_running:
            if attempt.timeout_action == 'postcopy' and not attempt.timeout_action_error:
                return POSTCOPY
            return MIGRATED
        return FAILED
    if request.live and src_running and not dst_running:
        if attempt.timeout_action == 'abort' and not attempt.timeout_action_error:
            return ABORTED
        return FAILED_SOURCE_RUNNING
    if not request.live and src.get('defined') and not dst.get('defined'):
        return FAILED_SOURCE_RUNNING
    return FAILED


def _failure_message(request, outcome, attempt, hosts):
    name, dest = request.name, request.dest_uri
    where = 'source %s, destination %s' % (_where(hosts['source']), _where(hosts['destination']))
    if outcome == ABORTED:
        return ('migration of domain %s to %s aborted after the timeout of %d s; it is still running on the source '
                'and not on the destination (%s)' % (name, dest, request.timeout, where))
    if outcome == FAILED_SOURCE_RUNNING:
        return ('migration of domain %s to %s failed: %s; it is still %s on the source and %s (%s)'
                % (name, dest, attempt.error or 'the destination does not run it',
                   'running' if request.live else 'defined',
                   'not on the destination' if hosts['destination'].get('reachable')
                   else 'the destination daemon cannot be asked', where))
    return ('migration of domain %s to %s failed (%s), and the domain is not running on the source alone: %s'
            % (name, dest, attempt.error or 'libvirt reported success', where))


def our_metadata(dom, snap):
    """The module's own records on the source: the TCG-unplug marker's vCPUs and the evacuation record."""
    marker = _metadata(dom, TCG_HAZARD, 'live') if snap.live is not None else None
    return dict(
        tcg_unplug_marker=etree.fromstring(marker.encode()).get('vcpus') if marker else None,
        evacuation_record=dict(live=_metadata(dom, EVACUATION, 'live') if snap.live is not None else None,
                               config=_metadata(dom, EVACUATION, 'config') if snap.persistent else None),
    )


def _clear_our_metadata(run, ddom, report):
    """Clear the TCG-unplug marker and the evacuation record on the destination (see the module docstring)."""
    todo = []
    if run.request.live:
        todo += [('tcg_unplug_marker live', TCG_HAZARD, 'live'), ('evacuation_record live', EVACUATION, 'live')]
    if run.request.persistent:
        todo.append(('evacuation_record config', EVACUATION, 'config'))
    for label, namespace, scope in todo:
        if _metadata(ddom, namespace, scope) is None:
            continue
        error = clear_metadata(ddom, namespace, scope)
        if error:
            report['errors'].append('%s: %s' % (label, error))
            run.warn('could not clear the %s on the destination: %s' % (label, error))
        else:
            report['cleared'].append(label)


def _verify(run, ddom, snap, view_before):
    request = run.request
    report = dict(agree=True, differences=[], before=view_before, after=None, persistent_differences=[])
    if ddom is None:
        report.update(agree=False, differences=['the destination domain cannot be looked up'])
        return report
    if request.live and view_before is not None:
        def live_model():
            return parse_domain_xml(ddom.XMLDesc(0))
        after, waited = migrate_verify.wait_for_guest(ddom, live_model, view_before, GUEST_AGENT_WAIT_SECONDS,
                                                      clock=run.clock)
        report.update(after=after, guest_wait_s=round(waited, 2))
        report['differences'] = migrate_verify.runtime_differences(view_before, after)
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
        report['persistent_differences'] = migrate_verify.persistent_differences(reference, config)
        report['differences'].extend(report['persistent_differences'])
    report['agree'] = not report['differences']
    return report


def _placement(hosts):
    return tuple((hosts[side].get('defined'), hosts[side].get('state')) for side in ('source', 'destination'))


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
