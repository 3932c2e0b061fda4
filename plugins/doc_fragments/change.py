# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):

    # The options of a change to a domain, _common/argspec.py CHANGE_ARGS.  A module that means more by one of
    # them (what its timeout covers, what wait_for_guest waits for) gives that option its own description.
    DOCUMENTATION = r'''
options:
  live:
    description:
      - Change the running domain.
      - On a domain that is not running, this is ignored with a warning when O(config=true), and refused otherwise.
    type: bool
    default: true
  config:
    description:
      - Change the persistent definition, so the change survives a shutdown and start.
      - With O(live=true) on a running domain the persistent definition is changed only after the live change has
        completed, and is left alone when it did not.
      - Ignored with a warning on a transient domain.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for another task's lock on the domain and for the guest to carry out the change.
      - Must not be negative.
    type: int
    default: 60
  wait_for_guest:
    description:
      - After the change, wait until the guest shows it, read through the QEMU guest agent, and fail when it does not
        within O(timeout).
    type: bool
    default: false
'''
