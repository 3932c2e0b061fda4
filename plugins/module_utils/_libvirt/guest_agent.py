# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guest's own view through the QEMU guest agent: which vCPUs it has online, its memory blocks.

vCPUs go through libvirt's own API (virDomainGetGuestVcpus).  Memory blocks
have no libvirt API, so they use a raw agent command, which libvirt records as
a "custom-ga-command" taint on the domain.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import json
import time

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import error_text, libvirt, libvirt_qemu
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.qemu_monitor import command_json
from ansible_collections.kvm.hotplug.plugins.module_utils._common.waiting import DeadlineExceeded, call_with_deadline


AGENT_TIMEOUT_SECONDS = 10

# Domains (by UUID) whose agent request is still outstanding in this process, with the thread running it
# and when it started: asking again would only queue another request behind it in libvirt, so they are
# reported unavailable until that request ends (a guest busy onlining CPUs answers late, not never).
_HUNG_AGENTS = {}


def unavailable(reason):
    return dict(available=False, reason=reason)


def agent_usable(model):
    """None when the agent can be asked, else the reason it cannot (from the live XML)."""
    if model is None:
        return 'the domain is not running'
    if not model.has_guest_agent_channel:
        return 'the domain has no guest agent channel (org.qemu.guest_agent.0)'
    if model.guest_agent_connected is False:
        return 'the guest agent is not connected (not running in the guest yet?)'
    return None


def guest_vcpus(dom, model):
    """The guest's view of its CPUs, or available=False with the reason.

    Guest CPU numbers are the guest kernel's logical CPU numbers, which need not
    equal libvirt's vCPU ids after hotplug; compare counts, not ids.
    """
    reason = agent_usable(model) or _hung_reason(dom)
    if reason:
        return unavailable(reason)
    try:
        info = call_with_deadline(dom.guestVcpus, AGENT_TIMEOUT_SECONDS)
    except DeadlineExceeded as exc:
        _HUNG_AGENTS[dom.UUIDString()] = (exc.worker, time.monotonic())
        return unavailable('guest agent did not answer within %d s (the guest may be busy or hung)'
                           % AGENT_TIMEOUT_SECONDS)
    except libvirt.libvirtError as exc:
        return unavailable('guest agent did not answer: %s' % error_text(exc))
    if not info or 'vcpus' not in info:
        # libvirt-python returns None instead of raising while the agent is not connected yet
        return unavailable('guest agent gave no answer (not connected yet?)')
    present = parse_cpulist(info.get('vcpus', ''))
    online = parse_cpulist(info.get('online', ''))
    offlinable = parse_cpulist(info.get('offlinable', ''))
    return dict(available=True, present=list(present), online=list(online), offlinable=list(offlinable),
                online_count=len(online), online_cpulist=format_cpulist(online))


def _hung_reason(dom):
    """Why not to ask the agent now: an earlier request of this process is still waiting for its answer."""
    pending = _HUNG_AGENTS.get(dom.UUIDString())
    if pending is None:
        return None
    worker, started = pending
    if worker is None or not worker.is_alive():
        del _HUNG_AGENTS[dom.UUIDString()]  # it was answered late: ask again
        return None
    return ('an earlier guest agent request has not been answered for %d s (the guest may be busy or hung)'
            % (time.monotonic() - started + AGENT_TIMEOUT_SECONDS))


def agent_command(dom, command, arguments=None, timeout=AGENT_TIMEOUT_SECONDS):
    """Run a raw guest agent command and return its "return" value."""
    if libvirt_qemu is None:
        raise RuntimeError('libvirt_qemu is not importable')
    reply = json.loads(libvirt_qemu.qemuAgentCommand(dom, command_json(command, arguments), timeout, 0))
    return reply.get('return')


def guest_memory_blocks(dom, model):
    """The guest's memory blocks by physical index (block address = index x block size), or available=False.

    Returns online and offline block indexes and the block size in bytes, so a
    caller can tell which blocks of a memory device's address range are online.
    """
    reason = agent_usable(model)
    if reason:
        return unavailable(reason)
    try:
        blocks = agent_command(dom, 'guest-get-memory-blocks') or []
        block_info = agent_command(dom, 'guest-get-memory-block-info') or {}
    except (libvirt.libvirtError, RuntimeError, ValueError) as exc:
        text = error_text(exc) if isinstance(exc, libvirt.libvirtError) else str(exc)
        return unavailable('guest agent did not answer: %s' % text)
    return dict(
        available=True,
        block_bytes=int(block_info.get('size', 0)),
        online=sorted(b['phys-index'] for b in blocks if b.get('online')),
        offline=sorted(b['phys-index'] for b in blocks if not b.get('online')),
    )


def guest_memory(dom, model):
    """The guest's memory blocks: online/offline counts, block size and online total in MiB."""
    blocks = guest_memory_blocks(dom, model)
    if not blocks['available']:
        return blocks
    block_bytes = blocks['block_bytes']
    online = blocks['online']
    offline = blocks['offline']
    return dict(
        available=True,
        block_size_mib=block_bytes // (1024 * 1024) if block_bytes else None,
        blocks_online=len(online),
        blocks_offline=len(offline),
        online_mib=len(online) * block_bytes // (1024 * 1024) if block_bytes else None,
        offline_block_ids=offline,
    )
