# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Polling until something is true, with a deadline, keeping the last observation for the report.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import threading
import time


class DeadlineExceeded(Exception):
    """A call did not return in time; it may still be running (and may still take effect).

    `worker` is the thread still running the call, so a caller can tell when it has ended.
    """

    def __init__(self, msg, worker=None):
        super(DeadlineExceeded, self).__init__(msg)
        self.worker = worker


def call_with_deadline(func, timeout, *args):
    """Run func(*args) and return its result, or raise DeadlineExceeded after timeout seconds.

    For library calls that can block without a limit of their own, such as a
    libvirt guest agent request to a guest whose agent hangs (libvirt's default
    agent timeout is to wait forever).  The call runs in a daemon thread, which
    is left behind when the deadline passes and ends with the module process.
    """
    outcome = {}

    def target():
        try:
            outcome['value'] = func(*args)
        except BaseException as exc:  # pylint: disable=broad-except
            outcome['error'] = exc

    worker = threading.Thread(target=target, name='deadline-call')
    worker.daemon = True
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise DeadlineExceeded('no answer within %s s' % timeout, worker)
    if 'error' in outcome:
        raise outcome['error']
    return outcome.get('value')


def wait_for(observe, is_done, timeout, interval=0.25, sleep=time.sleep, clock=time.monotonic):
    """Call observe() until is_done(observation) or timeout seconds passed.

    Returns (done, last_observation, seconds_waited).  The observation is
    always taken at least once, so a zero timeout still reports the state.
    """
    started = clock()
    while True:
        observation = observe()
        if is_done(observation):
            return True, observation, clock() - started
        if clock() - started >= timeout:
            return False, observation, clock() - started
        sleep(interval)
