# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a domain is doing right now: run state, running job (migration), live and persistent definitions.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import DomainXMLError, parse_domain_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import HotplugError, call, libvirt

_STATE_NAMES = ('nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended')
_JOB_TYPES = ('none', 'bounded', 'unbounded', 'completed', 'failed', 'cancelled')
_JOB_OPERATIONS = ('unknown', 'start', 'save', 'restore', 'migration_in', 'migration_out', 'snapshot',
                   'snapshot_revert', 'dump', 'backup', 'snapshot_delete')
# States in which QEMU runs and live changes are possible.
_ACTIVE_STATES = ('running', 'blocked', 'paused', 'pmsuspended')


@dataclass(frozen=True)
class JobInfo:
    active: bool
    type: str
    operation: str | None

    @property
    def migrating(self):
        return self.active and self.operation in ('migration_in', 'migration_out')

    def to_dict(self):
        return dict(active=self.active, type=self.type, operation=self.operation, migrating=self.migrating)


@dataclass(frozen=True)
class DomainSnapshot:
    """Everything read about one domain at one moment."""
    name: str
    uuid: str
    id: int | None
    state: str
    state_reason: int
    persistent: bool
    autostart: bool | None
    job: JobInfo
    live: object   # DomainModel of the running definition, None when not running
    config: object  # DomainModel of the persistent definition, None for a transient domain

    @property
    def active(self):
        return self.state in _ACTIVE_STATES

    def to_dict(self):
        return dict(
            name=self.name, uuid=self.uuid, id=self.id, state=self.state, active=self.active,
            persistent=self.persistent, autostart=self.autostart, job=self.job.to_dict(),
            migrating=self.job.migrating,
            live=self.live.to_dict() if self.live is not None else None,
            config=self.config.to_dict() if self.config is not None else None,
        )


def state_name(code):
    return _STATE_NAMES[code] if 0 <= code < len(_STATE_NAMES) else 'unknown'


def read_job(dom):
    """The domain's running job; a domain that is not running has none."""
    try:
        stats = dom.jobStats()
    except libvirt.libvirtError:
        return JobInfo(active=False, type='none', operation=None)
    job_type = stats.get('type', 0)
    operation = stats.get('operation')
    return JobInfo(
        active=job_type in (libvirt.VIR_DOMAIN_JOB_BOUNDED, libvirt.VIR_DOMAIN_JOB_UNBOUNDED),
        type=_JOB_TYPES[job_type] if 0 <= job_type < len(_JOB_TYPES) else str(job_type),
        operation=(_JOB_OPERATIONS[operation] if operation is not None and 0 <= operation < len(_JOB_OPERATIONS)
                   else None),
    )


def read_domain(dom):
    """Read state, job and both definitions of dom in one go."""
    name = dom.name()
    state_code, reason = call('reading the state of domain %s' % name, dom.state)
    state = state_name(state_code)
    persistent = bool(call('reading domain %s' % name, dom.isPersistent))
    live = None
    if state in _ACTIVE_STATES:
        live = _model(name, call('reading the live XML of domain %s' % name, dom.XMLDesc, 0))
    config = None
    if persistent:
        config = _model(name, call('reading the persistent XML of domain %s' % name,
                                   dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE))
    try:
        autostart = bool(dom.autostart())
    except libvirt.libvirtError:
        autostart = None
    domain_id = dom.ID()
    return DomainSnapshot(
        name=name, uuid=dom.UUIDString(), id=domain_id if domain_id >= 0 else None,
        state=state, state_reason=reason, persistent=persistent, autostart=autostart,
        job=read_job(dom) if state in _ACTIVE_STATES else JobInfo(False, 'none', None),
        live=live, config=config,
    )


def _model(name, xml_text):
    try:
        return parse_domain_xml(xml_text)
    except DomainXMLError as exc:
        raise HotplugError('domain %s: %s' % (name, exc))


def refuse_during_migration(snapshot, what):
    """Refuse a change while a job runs on the domain.

    A migration above all: the change would race the copy of the domain to the
    other host.  Any other job (save, dump, snapshot) too: libvirt would make the
    change wait for it and then time out, after the module had already planned.
    """
    if snapshot.job.active:
        operation = (snapshot.job.operation or snapshot.job.type).replace('_', ' ')
        raise HotplugError('refusing to %s on domain %s: a %s job is running (wait for it to finish or abort it)'
                           % (what, snapshot.name, operation), job=snapshot.job.to_dict())
