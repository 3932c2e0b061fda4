# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one error every kvm.hotplug module raises: a one-line message for fail_json plus result keys.

It lives apart from libvirt, so that pure planners and the sysfs code can raise it without importing libvirt.
Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations


class HotplugError(Exception):
    """A failure with a one-line message for fail_json, plus result keys to return with it.

    `details` go into the failed result (for example the state that was
    re-read after a failed change), so a user sees what really happened.
    """

    def __init__(self, msg, exception=None, **details):
        super(HotplugError, self).__init__(msg)
        self.msg = msg
        self.exception = exception
        self.details = details
