# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Polling until something is true, with a deadline, keeping the last observation for the report.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import time


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
