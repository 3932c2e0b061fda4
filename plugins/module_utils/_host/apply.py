# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Carrying out a HostPlan through sysfs, one id at a time, undoing what was done when a later step fails.

offline_memory_blocks() retries a block while the kernel answers EBUSY and interrupts a write that blocks
past the deadline; set_cpus() writes cpuN/online.  Both roll back on failure and say what they rolled back.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from dataclasses import dataclass

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._host.plan import zone_word

# errno values a memory block offline may return while the kernel is still migrating or
# isolating pages; anything else (EINVAL for holes or mixed zones, EPERM, ...) is final.
RETRYABLE_ERRNOS = (errno.EBUSY, errno.EAGAIN, errno.EINTR)


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
