# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a domain is doing right now: run state, running job (migration), live and persistent definitions.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.snapshot import (
    ACTIVE_STATES, DomainSnapshot, JobInfo, state_name,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import call, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.scope import read_model

_JOB_TYPES = ('none', 'bounded', 'unbounded', 'completed', 'failed', 'cancelled')
_JOB_OPERATIONS = ('unknown', 'start', 'save', 'restore', 'migration_in', 'migration_out', 'snapshot',
                   'snapshot_revert', 'dump', 'backup', 'snapshot_delete')


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
    live = read_model(dom, 'live', name) if state in ACTIVE_STATES else None
    config = read_model(dom, 'config', name) if persistent else None
    try:
        autostart = bool(dom.autostart())
    except libvirt.libvirtError:
        autostart = None
    domain_id = dom.ID()
    return DomainSnapshot(
        name=name, uuid=dom.UUIDString(), id=domain_id if domain_id >= 0 else None,
        state=state, state_reason=reason, persistent=persistent, autostart=autostart,
        job=read_job(dom) if state in ACTIVE_STATES else JobInfo(False, 'none', None),
        live=live, config=config,
    )
