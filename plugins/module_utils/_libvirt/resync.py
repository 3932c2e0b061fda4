# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Resynchronizing a stale libvirt view by restarting the libvirt daemon that runs the domain.

When QEMU removed a vCPU but never told libvirt (no DEVICE_DELETED event),
libvirt keeps listing it and refuses or mis-plans later changes.  libvirt
re-reads every running domain from QEMU when its daemon starts, and running
guests are not touched by a daemon restart, so a restart is the documented way
to resynchronize.  It is only done when the user asks for it, only for a local
hypervisor, and only while no other domain has a job (a migration, a save)
that the restart would abort.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import os
import time

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import (
    error_text, libvirt, open_connection,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_job

MODULAR_QEMU_SOCKET = '/run/libvirt/virtqemud-sock'
SYSTEMD_RUNTIME_DIR = '/run/systemd/system'


def detect_service():
    """The daemon that runs QEMU domains: virtqemud with modular daemons, else libvirtd."""
    return 'virtqemud' if os.path.exists(MODULAR_QEMU_SOCKET) else 'libvirtd'


def restart_command(module, service):
    """The service manager's restart command as an argument list (no shell)."""
    if os.path.isdir(SYSTEMD_RUNTIME_DIR):
        systemctl = module.get_bin_path('systemctl')
        if systemctl:
            return [systemctl, 'restart', service]
    helper = module.get_bin_path('service')
    if helper:
        return [helper, service, 'restart']
    raise HotplugError('cannot resynchronize libvirt: neither systemctl (with systemd running) nor the service '
                       'command is available to restart %s' % service)


def _is_local(uri):
    # qemu:///system, qemu:///session: no host part, so the daemon runs where the module runs.
    return '://' in uri and uri.split('://', 1)[1].startswith('/')


def other_jobs(conn, domain_uuid):
    """Names and operations of other domains with a running job (a restart would abort them)."""
    busy = []
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        if dom.UUIDString() == domain_uuid:
            continue
        job = read_job(dom)
        if job.active:
            busy.append('%s (%s)' % (dom.name(), job.operation or job.type))
    return busy


def resync(module, conn, domain_uuid, domain_name, service=None, timeout=30):
    """Restart the libvirt daemon and return (new connection, domain, report dict)."""
    uri = conn.getURI()
    if not _is_local(uri):
        raise HotplugError('cannot resynchronize libvirt for %s: the hypervisor %s is remote; restart its libvirt '
                           'daemon there (running guests are not affected)' % (domain_name, uri))
    busy = other_jobs(conn, domain_uuid)
    if busy:
        raise HotplugError('not restarting libvirt to resynchronize %s: other domains have running jobs that a '
                           'restart would abort: %s' % (domain_name, ', '.join(busy)))
    service = service or detect_service()
    command = restart_command(module, service)
    started = time.monotonic()
    try:
        conn.close()
    except libvirt.libvirtError:
        pass
    rc, out, err = module.run_command(command)
    if rc != 0:
        raise HotplugError('restarting %s to resynchronize libvirt failed (rc=%d): %s'
                           % (service, rc, (err or out).strip().splitlines()[-1:] or ''))
    new_conn, dom = _reconnect(uri, domain_uuid, domain_name, timeout)
    return new_conn, dom, dict(performed=True, service=service, command=command,
                               seconds=round(time.monotonic() - started, 2))


def _reconnect(uri, domain_uuid, domain_name, timeout):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            conn = open_connection(uri)
            return conn, conn.lookupByUUIDString(domain_uuid)
        except HotplugError as exc:
            last_error = exc.msg
        except libvirt.libvirtError as exc:
            last_error = error_text(exc)
        time.sleep(0.5)
    raise HotplugError('libvirt did not come back within %d s after the restart to resynchronize %s: %s'
                       % (timeout, domain_name, last_error))
