# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""QEMU's own view of a domain, through read-only QMP queries passed by libvirt.

libvirt can fall out of step with QEMU (for example after a vCPU unplug that
timed out in libvirt but completed in QEMU).  These queries let a module say
which of the two is right instead of trusting libvirt.  libvirt records a
"custom-monitor" taint on the domain the first time a monitor command is sent;
the queries here change nothing.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import json

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import error_text, libvirt, libvirt_qemu
from ansible_collections.kvm.hotplug.plugins.module_utils._common.waiting import DeadlineExceeded, call_with_deadline


# libvirt itself gives up on a busy monitor after about 30 s (it cannot get the domain's job).
MONITOR_TIMEOUT_SECONDS = 35


class QemuMonitorUnavailable(Exception):
    """QEMU could not be asked (domain not running, monitor busy, no binding)."""


def command_json(command, arguments=None):
    """The JSON text of one QMP or guest agent command (both speak {"execute": ..., "arguments": ...})."""
    request = dict(execute=command)
    if arguments:
        request['arguments'] = arguments
    return json.dumps(request)


def qmp(dom, command, arguments=None):
    """Run one QMP command through libvirt and return its "return" value."""
    if libvirt_qemu is None:
        raise QemuMonitorUnavailable('the libvirt_qemu Python module is not available')
    try:
        reply = json.loads(call_with_deadline(libvirt_qemu.qemuMonitorCommand, MONITOR_TIMEOUT_SECONDS,
                                              dom, command_json(command, arguments), 0))
    except DeadlineExceeded:
        raise QemuMonitorUnavailable('QEMU monitor query %s got no answer within %d s'
                                     % (command, MONITOR_TIMEOUT_SECONDS))
    except libvirt.libvirtError as exc:
        raise QemuMonitorUnavailable('QEMU monitor query %s failed: %s' % (command, error_text(exc)))
    if 'error' in reply:
        raise QemuMonitorUnavailable('QEMU refused %s: %s' % (command, reply['error'].get('desc', reply['error'])))
    return reply.get('return')


def qemu_vcpus(dom):
    """vCPU ids (QEMU cpu-index, which is libvirt's vCPU id) that exist in QEMU, with their thread ids."""
    cpus = qmp(dom, 'query-cpus-fast') or []
    return {int(cpu['cpu-index']): cpu.get('thread-id') for cpu in cpus}


def qemu_memory_devices(dom):
    """QEMU's memory devices by id (libvirt alias): type, size, node, guest-physical address and, for virtio-mem,
    requested size and maximum size (for virtio-mem, size is what the guest has plugged)."""
    devices = {}
    for entry in qmp(dom, 'query-memory-devices') or []:
        data = entry.get('data', {})
        key = data.get('id') or data.get('memdev')
        devices[key] = dict(
            type=entry.get('type'),
            size=data.get('size'),
            requested_size=data.get('requested-size'),
            node=data.get('node'),
            slot=data.get('slot'),
            hotplugged=data.get('hotplugged'),
            addr=data.get('addr', data.get('memaddr')),
            max_size=data.get('max-size'),
        )
    return devices
