# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_migrate's one write: the libvirt migration, and the watcher that enforces its timeout.

The migration is peer-to-peer (VIR_MIGRATE_PEER2PEER, as `virsh migrate --p2p`
and OpenStack Nova do): the source daemon opens dest_uri itself and keeps it
alive, so when the destination daemon dies the source daemon notices, cancels
QEMU's migration and the guest keeps running on the source.

While virDomainMigrateToURI3 blocks, a watcher thread reads the source job
(virDomainGetJobStats) every half second and, once `timeout` seconds have
passed, carries out `timeout_action`: virDomainAbortJob (abort),
virDomainMigrateStartPostCopy (postcopy) or virDomainSuspend (suspend: the
paused guest's memory stops changing, so the copy converges; libvirt resumes it
on the destination).  When a suspended guest's migration fails anyway,
resume_source lets it run on again on the source.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field

from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import SOURCE
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import error_code, error_text, libvirt

POLL_SECONDS = 0.5


def migration_flags(request):
    """virDomainMigrateFlags for the request, and their names for the result."""
    names = ['peer2peer', 'live' if request.live else 'offline']
    if request.persistent:
        names.append('persist_dest')
    if request.undefine_source:
        names.append('undefine_source')
    if request.live and request.auto_converge:
        names.append('auto_converge')
    if request.live and request.parallel_connections:
        names.append('parallel')
    if request.live and request.timeout is not None and request.timeout_action == 'postcopy':
        names.append('postcopy')
    flags = 0
    for name in names:
        flags |= getattr(libvirt, 'VIR_MIGRATE_' + name.upper())
    return flags, names


def migration_params(request):
    """Typed parameters of virDomainMigrateToURI3 for the request."""
    params = {}
    if request.migrate_uri and request.live:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = request.migrate_uri
    if request.bandwidth and request.live:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(request.bandwidth)
    if request.parallel_connections and request.live:
        params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = int(request.parallel_connections)
    return params


@dataclass
class Attempt:
    """What happened during the migrate call, as seen from the source."""
    ok: bool = False
    error: str | None = None
    error_code: int | None = None
    exception: str | None = None
    seconds: float = 0.0
    timeout_action: str | None = None    # the action the watcher carried out, if any
    timeout_action_at: float | None = None
    timeout_action_error: str | None = None
    last_job: dict = field(default_factory=dict)
    job_seen: bool = False
    outcome: str | None = None           # set by the run once both hosts have been read again

    def to_dict(self):
        return dict(ok=self.ok, error=self.error, outcome=self.outcome, seconds=round(self.seconds, 2), job_seen=self.job_seen,
                    timeout_action=self.timeout_action,
                    timeout_action_at_s=None if self.timeout_action_at is None else round(self.timeout_action_at, 2),
                    timeout_action_error=self.timeout_action_error)


class Watcher(threading.Thread):
    """Reads the source job while the migration runs and carries out timeout_action when the timeout passes."""

    def __init__(self, dom, attempt, timeout, action, clock=time.monotonic, poll=POLL_SECONDS):
        super(Watcher, self).__init__(name='migration-watcher')
        self.daemon = True
        self.dom = dom
        self.attempt = attempt
        self.timeout = timeout
        self.action = action
        self.clock = clock
        self.poll = poll
        self.done = threading.Event()
        self.started_at = clock()

    def run(self):
        while not self.done.is_set():
            try:
                stats = self.dom.jobStats()
            except libvirt.libvirtError:
                stats = None
            # only a running job's reading: once cancelled or failed, libvirt reports it with every counter at 0
            if stats and stats.get('type') in (libvirt.VIR_DOMAIN_JOB_BOUNDED, libvirt.VIR_DOMAIN_JOB_UNBOUNDED):
                self.attempt.last_job = dict(stats)
                self.attempt.job_seen = True
            elapsed = self.clock() - self.started_at
            if self.timeout is not None and self.attempt.timeout_action is None and elapsed >= self.timeout:
                self._act(elapsed)
            self.done.wait(self.poll)

    def _act(self, elapsed):
        self.attempt.timeout_action = self.action
        self.attempt.timeout_action_at = elapsed
        try:
            if self.action == 'abort':
                self.dom.abortJob()
            elif self.action == 'postcopy':
                self.dom.migrateStartPostCopy(0)
            elif self.action == 'suspend':
                self.dom.suspend()
        except libvirt.libvirtError as exc:
            self.attempt.timeout_action_error = error_text(exc)


def set_max_downtime(dom, milliseconds):
    """Set QEMU's downtime limit for the coming migration; returns the value QEMU reports back (or an error text)."""
    try:
        dom.migrateSetMaxDowntime(int(milliseconds), 0)
    except libvirt.libvirtError as exc:
        return None, error_text(exc)
    try:
        return dom.migrateGetMaxDowntime(0), None
    except (libvirt.libvirtError, AttributeError):
        return int(milliseconds), None


def migrate(dom, request, clock=time.monotonic, poll=POLL_SECONDS):
    """Run the migration of dom to request.dest_uri and return an Attempt; never raises for a libvirt error."""
    attempt = Attempt()
    watcher = None
    if request.live:
        watcher = Watcher(dom, attempt, request.timeout, request.timeout_action, clock=clock, poll=poll)
        watcher.start()
    started = clock()
    try:
        dom.migrateToURI3(request.dest_uri, migration_params(request), migration_flags(request)[0])
        attempt.ok = True
    except libvirt.libvirtError as exc:
        attempt.error = error_text(exc)
        attempt.error_code = error_code(exc)
        attempt.exception = traceback.format_exc()
    finally:
        attempt.seconds = clock() - started
        if watcher is not None:
            watcher.done.set()
            watcher.join(5)
    return attempt


def completed_job(dom):
    """libvirt's statistics of the domain's last completed job (kept on the destination after a migration)."""
    if dom is None:
        return None
    try:
        # KEEP_COMPLETED: libvirt would otherwise discard them once read, from everyone else who asks
        stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED)
    except libvirt.libvirtError:
        return None
    return stats or None


def resume_source(run, uuid):
    """The watcher paused the guest for a switch-over that then failed: let it run on again."""
    try:
        dom = run.session(SOURCE).conn.lookupByUUIDString(uuid)
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
            run.warn('resumed domain %s on the source: it was suspended for a migration that failed' % dom.name())
    except libvirt.libvirtError as exc:
        run.warn('could not resume domain %s on the source: %s' % (run.request.name, error_text(exc)))
