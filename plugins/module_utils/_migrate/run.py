# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_migrate's run: read both hosts, plan, stop in check mode, migrate, re-read both hosts, verify, report.

MigrationChange supplies the hooks of the shared run skeleton (_common/runner.py)
for a change with two sessions, the source (option uri) and the destination
(option dest_uri, opened in read() so that an unreachable destination is a
refusal like the others).  Whatever happens after the migration call, both
hosts are read again and the result says where the domain runs.  The work is
in the files next to this one: read, plan, apply, own_metadata, verify,
outcomes, report.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.kvm.hotplug.plugins.module_utils._common.argspec import DOMAIN_ARGS
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import SOURCE, Change, Endpoint
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import error_text, is_error, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate import apply as migrate_apply
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate import verify as migrate_verify
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.facts import (
    DESTINATION, TIMEOUT_ACTIONS, DestinationFacts, MigrationRequest, SourceFacts,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.outcomes import (
    CHECK_MODE, MOVED, decide_outcome, failure_message, placement,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.own_metadata import (
    clear_our_metadata, our_metadata,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.plan import ALREADY_THERE, plan_migration
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.read import (
    placement_before, read_destination, read_source,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.report import build_result

# Waiting for another kvm.hotplug task on the domain, when the migration itself has no timeout.
LOCK_TIMEOUT_SECONDS = 60


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
        source = read_source(source_session, dom, request)
        dest = read_destination(run.session(DESTINATION).conn, request, dom, source.snapshot)
        return MigrationState(source=source, dest=dest,
                              before=placement_before(source, dest, source_session.uri, request))

    def plan(self, run, state):
        plan = plan_migration(run.request, state.source, state.dest)
        if plan.refusal:
            raise HotplugError(plan.refusal, checks=plan.checks, outcome=None, before=state.before, notes=plan.notes)
        return plan

    def predict(self, run, state, plan):
        if plan.action == ALREADY_THERE:
            return build_result(run, state, plan, False, ALREADY_THERE, after=state.before)
        return build_result(run, state, plan, True, CHECK_MODE, after=None)

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
            migrate_apply.resume_source(run, snap.uuid)
        state.landed = migrate_verify.both_hosts(run, snap.uuid)
        attempt.outcome = decide_outcome(request, attempt, state.landed)
        if attempt.outcome in MOVED:
            ddom = migrate_verify.dest_domain(run, snap.uuid)
            if ddom is not None:
                clear_our_metadata(run, ddom, state.metadata)
        return attempt

    def observe(self, run, state, plan, outcome):
        attempt = outcome  # apply() returns the migration Attempt
        snap = state.source.snapshot
        after = migrate_verify.both_hosts(run, snap.uuid)
        ddom = migrate_verify.dest_domain(run, snap.uuid) if after['destination'].get('defined') else None
        if attempt.ok:
            job = migrate_apply.completed_job(ddom) or attempt.last_job
        else:
            # a failed or cancelled job keeps hardly any statistics (time_elapsed 0); the watcher's last reading does
            job = attempt.last_job or migrate_apply.completed_job(run.dom)
        verify = None
        if attempt.outcome in MOVED:
            verify = migrate_verify.verify_destination(run, ddom, snap, state.view_before)
        return dict(hosts=after, job=job, verify=verify)

    def result(self, run, state, plan, outcome, after):
        attempt = outcome  # apply() returns the migration Attempt; its outcome names where the domain is
        request = run.request
        outcome = attempt.outcome
        moved = outcome in MOVED
        if not moved:
            state.metadata['destination'] = 'not changed: the domain did not move'
        # a failure that still changed where the domain is defined or runs is reported as a change
        changed = moved or placement(state.before) != placement(after['hosts'])
        result = build_result(run, state, plan, changed, outcome, after=after['hosts'], attempt=attempt,
                              job=after['job'], verify=after['verify'])
        if not moved:
            raise HotplugError(failure_message(request, outcome, attempt, after['hosts']),
                               exception=attempt.exception, **result)
        if after['verify']['agree'] is False:
            raise HotplugError('domain %s moved to %s, but the destination differs from what ran on the source: %s'
                               % (request.name, request.dest_uri, '; '.join(after['verify']['differences'])),
                               **result)
        return result

    def reread(self, run, state, plan, exc):
        snap = state.source.snapshot
        return dict(after=migrate_verify.both_hosts(run, snap.uuid))

    def diff(self, result):
        if result.get('before') is None:
            return None
        return result['before'], result.get('after') or {}
