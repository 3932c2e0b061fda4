# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A domain as read at one moment (run state, job, both definitions), its five-word summary, and the refusal
while a job runs.

Pure: built by domain_runtime.read_domain from libvirt, and by unit tests from XML.
Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError

_STATE_NAMES = ('nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended')
# States in which QEMU runs and live changes are possible.
ACTIVE_STATES = ('running', 'blocked', 'paused', 'pmsuspended')


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


@dataclass
class DomainSummary:
    """Which domain, and where it stands: what the host evacuation and the migration compare domains by."""
    name: str
    uuid: str
    state: str
    active: bool        # state is one of ACTIVE_STATES: QEMU runs
    persistent: bool


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
        return self.state in ACTIVE_STATES

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
