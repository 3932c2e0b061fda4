# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Planning host CPU and memory block offlining/onlining, and carrying it out with rollback.

plan_host_change() is pure: the host as read from sysfs plus the request give a
HostPlan, or a HotplugError listing every reason to refuse.  Nothing is written
before the plan exists.  offline_memory_blocks() and set_cpus() then write,
one id at a time, and undo what they did when a later step fails.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import KERNEL_ZONES, MOVABLE_ZONE
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError

ONLINE_TYPES = ('auto', 'online', 'online_movable', 'online_kernel')
# errno values a memory block offline may return while the kernel is still migrating or
# isolating pages; anything else (EINVAL for holes or mixed zones, EPERM, ...) is final.
RETRYABLE_ERRNOS = (errno.EBUSY, errno.EAGAIN, errno.EINTR)
_ITEM = re.compile(r'^([0-9]+)(?:-([0-9]+))?$')


# --------------------------------------------------------------------------
# input: ids are plain numbers or ranges of them, nothing else

def parse_ids(value, what, limit):
    """Sorted ids from a list of ints/strings or a list string like "2-5,8".

    Refuses anything that is not a non-negative integer or a range of them
    (names, paths, signs, spaces inside numbers, floats, booleans), naming the bad item.
    Ranges are checked against `limit` (one more than the highest id the host has)
    before they are expanded, so "0-999999999" cannot make the module allocate memory.
    Returns (ids, unknown) where unknown are ids at or above the limit, as a list string.
    """
    if value is None:
        return (), ''
    items = value if isinstance(value, (list, tuple)) else [value]
    ids = set()
    unknown = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise HotplugError('%s %r is not a number or a range like "2-5"; nothing was changed' % (what, item))
        if isinstance(item, int):
            if item < 0:
                raise HotplugError('%s %d is negative; nothing was changed' % (what, item))
            (ids.add(item) if item < limit else unknown.append((item, item)))
            continue
        for part in item.split(','):
            text = part.strip()
            match = _ITEM.match(text)
            if not match:
                raise HotplugError('%s %r is not a number or a range like "2-5" (only digits, "-" and ","); '
                                   'nothing was changed' % (what, text))
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) is not None else first
            if last < first:
                raise HotplugError('%s range %r is reversed; nothing was changed' % (what, text))
            if first < limit:
                ids.update(range(first, min(last, limit - 1) + 1))
            if last >= limit:
                unknown.append((max(first, limit), last))
    unknown_text = ','.join(str(a) if a == b else '%d-%d' % (a, b) for a, b in sorted(unknown))
    return tuple(sorted(ids)), unknown_text


# --------------------------------------------------------------------------
# the plan

@dataclass
class HostPlan:
    state: str                                  # offline | online
    cpus_requested: tuple = ()
    cpus_change: tuple = ()
    cpus_already: tuple = ()
    blocks_requested: tuple = ()
    blocks_change: tuple = ()                   # in the order they will be written
    blocks_already: tuple = ()
    block_online_state: dict = field(default_factory=dict)   # id -> word written to state when onlining
    block_zone_before: dict = field(default_factory=dict)    # id -> zone of a block about to go offline
    online_cpus_after: tuple = ()
    nodes_losing_cpus: tuple = ()               # nodes left without an online CPU by this plan
    nodes_losing_memory: tuple = ()             # nodes left without an online memory block by this plan
    numa_node: int | None = None

    @property
    def changes(self):
        return bool(self.cpus_change or self.blocks_change)

    def to_dict(self):
        return dict(state=self.state, cpus_change=list(self.cpus_change), cpus_already=list(self.cpus_already),
                    memory_blocks_change=list(self.blocks_change), memory_blocks_already=list(self.blocks_already),
                    memory_online_state={str(k): v for k, v in sorted(self.block_online_state.items())},
                    online_cpus_after=format_cpulist(self.online_cpus_after),
                    nodes_losing_cpus=list(self.nodes_losing_cpus),
                    nodes_losing_memory=list(self.nodes_losing_memory))


def resolve_request(host, cpus, memory_blocks, numa_node):
    """Turn the options into (cpu ids, block ids, node id), refusing unknown or malformed ids."""
    problems = []
    cpu_limit = max(host.cpus) + 1 if host.cpus else 0
    block_limit = max(host.memory.blocks) + 1 if host.memory.blocks else 0
    cpu_ids, cpu_unknown = parse_ids(cpus, 'CPU', cpu_limit)
    block_ids, block_unknown = parse_ids(memory_blocks, 'memory block', block_limit)
    missing_cpus = [c for c in cpu_ids if c not in host.cpus]
    missing_blocks = [b for b in block_ids if b not in host.memory.blocks]
    if cpu_unknown or missing_cpus:
        problems.append('unknown CPU %s (the host has CPUs %s)'
                        % (','.join(x for x in (format_cpulist(missing_cpus), cpu_unknown) if x),
                           format_cpulist(host.cpus) or 'none'))
    if block_unknown or missing_blocks:
        problems.append('unknown memory block %s (the host has blocks %s)'
                        % (','.join(x for x in (format_cpulist(missing_blocks), block_unknown) if x),
                           format_cpulist(host.memory.blocks) or 'none'))
    node_id = None
    if numa_node is not None:
        if isinstance(numa_node, bool) or not (isinstance(numa_node, int) or
                                               (isinstance(numa_node, str) and re.match(r'^[0-9]+$', numa_node.strip()))):
            raise HotplugError('numa_node %r is not a number; nothing was changed' % (numa_node,))
        node_id = int(numa_node)
        if node_id not in host.nodes:
            problems.append('unknown NUMA node %d (the host has nodes %s)'
                            % (node_id, format_cpulist(host.nodes) or 'none'))
        else:
            node = host.nodes[node_id]
            cpu_ids = tuple(sorted(set(cpu_ids) | set(node.cpus)))
            block_ids = tuple(sorted(set(block_ids) | set(node.memory_blocks)))
    if problems:
        raise HotplugError('; '.join(problems) + '; nothing was changed', refusals=problems)
    return cpu_ids, block_ids, node_id


def zone_word(zone):
    """The word written to a block's state to bring it back into zone."""
    if zone == MOVABLE_ZONE:
        return 'online_movable'
    if zone in KERNEL_ZONES:
        return 'online_kernel'
    return 'online'


def auto_online_word(block, recorded_zone, policy):
    """online_type=auto: back into the recorded zone, else the host's policy for new memory, else the default.

    policy is the kernel's memory/auto_online_blocks (online, online_movable, online_kernel, offline).
    """
    zones = block.valid_zones
    if recorded_zone and (not zones or recorded_zone in zones):
        return zone_word(recorded_zone)
    if policy == 'online_movable' and MOVABLE_ZONE in zones:
        return 'online_movable'
    if policy == 'online_kernel' and any(z in KERNEL_ZONES for z in zones):
        return 'online_kernel'
    return 'online'


def plan_host_change(host, state, cpu_ids, block_ids, online_type='auto', bound_nodes=None, numa_node=None,
                     recorded_zones=None):
    """The plan for taking cpu_ids and block_ids to state, or HotplugError with every reason to refuse.

    bound_nodes maps a NUMA node to the running domains whose memory is bound to it
    (numatune); such a node must keep an online CPU and an online memory block.
    None means the domains were not looked at (evacuate=false).
    recorded_zones maps blocks to the zone they were in when this collection offlined them.
    """
    if state not in ('offline', 'online'):
        raise HotplugError('state must be offline or online, not %r' % (state,))
    if online_type not in ONLINE_TYPES:
        raise HotplugError('online_type must be one of %s' % ', '.join(ONLINE_TYPES))
    problems = []
    want_online = state == 'online'
    cpus_change = [c for c in cpu_ids if host.cpus[c].online != want_online]
    cpus_already = [c for c in cpu_ids if host.cpus[c].online == want_online]
    blocks_change = []
    blocks_already = []
    online_state = {}
    for block_id in block_ids:
        block = host.memory.blocks[block_id]
        if block.state == 'going-offline':
            problems.append('memory block %d is going offline right now (another task is offlining it)' % block_id)
        elif (block.state == 'online') == want_online:
            blocks_already.append(block_id)
        elif block.state not in ('online', 'offline'):
            problems.append('memory block %d is in state %r, which this module does not handle'
                            % (block_id, block.state))
        else:
            blocks_change.append(block_id)

    if not want_online:
        not_hotpluggable = [c for c in cpus_change if not host.cpus[c].hotpluggable]
        if not_hotpluggable:
            problems.append('the kernel marks CPU %s not hotpluggable (no online file in sysfs)'
                            % format_cpulist(not_hotpluggable))
        for block_id in blocks_change:
            block = host.memory.blocks[block_id]
            if block.removable is False:
                problems.append('the kernel marks memory block %d not removable' % block_id)
            elif not block.offlinable_zone:
                problems.append('memory block %d spans several zones or nodes (valid_zones "none"); '
                                'the kernel cannot offline it' % block_id)
    else:
        for block_id in blocks_change:
            zones = host.memory.blocks[block_id].valid_zones
            word = online_type
            if online_type == 'auto':
                word = auto_online_word(host.memory.blocks[block_id], (recorded_zones or {}).get(block_id),
                                        host.memory.auto_online_blocks)
            elif online_type == 'online_movable' and zones and MOVABLE_ZONE not in zones:
                problems.append('memory block %d cannot be onlined movable (valid zones: %s)'
                                % (block_id, ' '.join(zones)))
            elif online_type == 'online_kernel' and zones and not any(z in KERNEL_ZONES for z in zones):
                problems.append('memory block %d cannot be onlined into a kernel zone (valid zones: %s)'
                                % (block_id, ' '.join(zones)))
            online_state[block_id] = word

    online_after = set(host.online_cpus)
    online_after.difference_update(cpus_change) if not want_online else online_after.update(cpus_change)
    losing_cpus = []
    losing_memory = []
    if not want_online:
        if cpus_change and not online_after:
            problems.append('offlining CPU %s would leave the host without an online CPU'
                            % format_cpulist(cpus_change))
        for node in sorted(host.nodes.values(), key=lambda n: n.id):
            if node.online_cpus and not (set(node.online_cpus) & online_after):
                losing_cpus.append(node.id)
            online_blocks = [b for b in node.memory_blocks if b in host.memory.blocks
                             and host.memory.blocks[b].online]
            if online_blocks and set(online_blocks) <= set(blocks_change):
                losing_memory.append(node.id)
        for node_id in sorted(set(losing_cpus) | set(losing_memory)):
            users = (bound_nodes or {}).get(node_id)
            if not users:
                continue
            what = ' and '.join(w for w, lost in (('CPU', node_id in losing_cpus),
                                                  ('memory block', node_id in losing_memory)) if lost)
            problems.append('this would take the last online %s of NUMA node %d, whose memory is in use by '
                            'pinned domains %s (numatune)' % (what, node_id, ', '.join(sorted(users))))
    if problems:
        raise HotplugError('refusing to %s: %s; nothing was changed'
                           % ('offline' if not want_online else 'online', '; '.join(problems)), refusals=problems)
    # Offline from the highest block down: ZONE_MOVABLE sits at the top of each node, and a block
    # that holds out is then found before the lower (kernel) blocks were touched in vain.
    blocks_change.sort(reverse=not want_online)
    return HostPlan(state=state, cpus_requested=tuple(cpu_ids), cpus_change=tuple(sorted(cpus_change)),
                    cpus_already=tuple(cpus_already), blocks_requested=tuple(block_ids),
                    blocks_change=tuple(blocks_change), blocks_already=tuple(blocks_already),
                    block_online_state=online_state,
                    block_zone_before={b: host.memory.blocks[b].valid_zones[0] for b in blocks_change
                                       if not want_online and host.memory.blocks[b].valid_zones},
                    online_cpus_after=tuple(sorted(online_after)),
                    nodes_losing_cpus=tuple(losing_cpus), nodes_losing_memory=tuple(losing_memory),
                    numa_node=numa_node)


# --------------------------------------------------------------------------
# carrying it out

class _Deadline(Exception):
    pass


class _alarm(object):
    """Interrupt a blocking sysfs write after `seconds` (main thread only; otherwise no interruption).

    The kernel's memory offlining keeps migrating pages until it succeeds or a
    signal arrives; SIGALRM makes the write return, and the handler turns it into _Deadline.
    """

    def __init__(self, seconds):
        self.seconds = max(0.01, seconds)
        self.active = threading.current_thread() is threading.main_thread() and hasattr(signal, 'setitimer')
        self.previous = None

    def _fire(self, _signum, _frame):
        raise _Deadline()

    def __enter__(self):
        if self.active:
            self.previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc_info):
        if self.active:
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
            finally:
                signal.signal(signal.SIGALRM, self.previous)
        return False


@dataclass
class BlockAttempt:
    block: int
    attempts: int = 0
    seconds: float = 0.0
    last_error: str | None = None


def _errno_text(exc):
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return '%s (%s)' % (name, os.strerror(exc.errno) if exc.errno else exc)


def offline_one_block(tree, block_id, timeout, interval=0.5, clock=time.monotonic, sleep=time.sleep):
    """Write "offline" to the block's state until it takes or `timeout` seconds pass.

    Returns a BlockAttempt.  Raises HotplugError (with .details['attempt']) when
    the block held out: EBUSY/EAGAIN until the deadline, or a final error at once.
    A write still blocked at the deadline (the kernel keeps migrating pages) is
    interrupted with SIGALRM; the block's state is then read again, because the
    write may have completed just before the signal.
    """
    attempt = BlockAttempt(block=block_id)
    started = clock()
    deadline = started + timeout
    last_os_error = None
    while True:
        attempt.attempts += 1
        try:
            with _alarm(max(deadline - clock(), 0.05)):
                tree.set_memory_state(block_id, 'offline')
            attempt.seconds = clock() - started
            return attempt
        except _Deadline:
            attempt.seconds = clock() - started
            if tree.read(tree.memory_path(block_id, 'state')) == 'offline':
                return attempt
            attempt.last_error = (('the kernel kept answering %s' % last_os_error) if last_os_error
                                  else 'the write did not return: the kernel was still migrating its pages')
            raise HotplugError('memory block %d did not go offline within %s s (%s)'
                               % (block_id, timeout, attempt.last_error), attempt=attempt)
        except OSError as exc:
            last_os_error = attempt.last_error = _errno_text(exc)
            attempt.seconds = clock() - started
            if exc.errno not in RETRYABLE_ERRNOS:
                raise HotplugError('memory block %d cannot go offline: %s' % (block_id, attempt.last_error),
                                   attempt=attempt)
        if clock() >= deadline:
            raise HotplugError('memory block %d did not go offline within %s s: the kernel kept answering %s '
                               '(%d attempts)' % (block_id, timeout, attempt.last_error, attempt.attempts),
                               attempt=attempt)
        sleep(max(0.0, min(interval, deadline - clock())))


def offline_memory_blocks(tree, plan, timeout, offline_one=offline_one_block):
    """Offline plan.blocks_change one by one; on the first that holds out, online again what was done.

    Returns the list of BlockAttempts.  Raises HotplugError naming the block that
    held out and what was rolled back (and, loudly, anything that could not be).
    """
    done = []
    attempts = []
    for block_id in plan.blocks_change:
        try:
            attempts.append(offline_one(tree, block_id, timeout))
            done.append(block_id)
        except HotplugError as exc:
            attempt = exc.details.get('attempt')
            if attempt is not None:
                attempts.append(attempt)
            if tree.read(tree.memory_path(block_id, 'state')) == 'offline':
                done.append(block_id)  # it went offline after all (interrupted right after the write)
            restored, failed = online_blocks_again(tree, done, plan)
            raise HotplugError(
                exc.msg + '; ' + rollback_text('memory block', restored, failed),
                failed_block=block_id, rolled_back_memory_blocks=restored, rollback_failed=failed,
                attempts=[a.__dict__ for a in attempts])
    return attempts


def online_blocks_again(tree, block_ids, plan=None):
    """Online blocks this task offlined, in reverse order, into the zone each was in before.

    Returns (restored, {block: error}).
    """
    zones_before = plan.block_zone_before if plan is not None else {}
    restored = []
    failed = {}
    for block_id in reversed(block_ids):
        word = zone_word(zones_before.get(block_id))
        try:
            tree.set_memory_state(block_id, word)
            restored.append(block_id)
        except OSError as exc:
            try:  # the kernel may not offer that zone any more; any zone is better than offline
                tree.set_memory_state(block_id, 'online')
                restored.append(block_id)
            except OSError:
                failed[block_id] = _errno_text(exc)
    return restored, failed


def rollback_text(what, restored, failed):
    parts = []
    if restored:
        parts.append('brought %s %s back online' % (what + ('s' if len(restored) > 1 else ''),
                                                    ', '.join(str(i) for i in restored)))
    if failed:
        parts.append('ROLLBACK INCOMPLETE: %s %s stayed offline (%s)'
                     % (what, ', '.join(str(i) for i in failed), '; '.join('%s: %s' % kv for kv in failed.items())))
    if not parts:
        parts.append('nothing had been changed')
    elif not failed:
        parts.append('the host is as it was before the task')
    return ', '.join(parts)


def set_cpus(tree, cpu_ids, online, rollback=True):
    """Write online=1/0 for each CPU; on the first failure, undo the ones done (when rollback) and raise HotplugError.

    Onlining is not rolled back: CPUs that did come online are safe to keep, and the failure lists them.
    """
    done = []
    for cpu_id in cpu_ids:
        try:
            tree.set_cpu_online(cpu_id, online)
            done.append(cpu_id)
        except OSError as exc:
            restored = []
            failed = {}
            if not rollback:
                raise HotplugError('CPU %d cannot go %s: %s (CPUs set %s before it: %s)'
                                   % (cpu_id, 'online' if online else 'offline', _errno_text(exc),
                                      'online' if online else 'offline', format_cpulist(done) or 'none'),
                                   failed_cpu=cpu_id, changed_cpus=done)
            for prev in reversed(done):
                try:
                    tree.set_cpu_online(prev, not online)
                    restored.append(prev)
                except OSError as exc2:
                    failed[prev] = _errno_text(exc2)
            word = 'offline' if not online else 'online'
            undo = 'online' if not online else 'offline'
            parts = []
            if restored:
                parts.append('set CPU %s %s again' % (format_cpulist(restored), undo))
            if failed:
                parts.append('ROLLBACK INCOMPLETE: CPU %s stayed %s (%s)'
                             % (format_cpulist(failed), word, '; '.join('%s: %s' % kv for kv in failed.items())))
            raise HotplugError('CPU %d cannot go %s: %s%s' % (cpu_id, word, _errno_text(exc),
                                                              ('; ' + ', '.join(parts)) if parts else ''),
                               failed_cpu=cpu_id, rolled_back_cpus=restored, rollback_failed=failed)
    return done


def online_memory_blocks(tree, plan):
    """Online plan.blocks_change with the planned state words; stops at the first failure (no rollback:
    onlining is the safe direction, and the failed result lists what did come online)."""
    done = []
    for block_id in plan.blocks_change:
        try:
            tree.set_memory_state(block_id, plan.block_online_state.get(block_id, 'online'))
            done.append(block_id)
        except OSError as exc:
            raise HotplugError('memory block %d cannot go online as %s: %s (blocks onlined before it: %s)'
                               % (block_id, plan.block_online_state.get(block_id, 'online'), _errno_text(exc),
                                  ', '.join(str(b) for b in done) or 'none'),
                               failed_block=block_id, onlined_memory_blocks=done)
    return done
