# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every module needs: nothing here talks to libvirt or sysfs, but the runner opens its sessions.

errors (HotplugError), runner (the one run skeleton every module goes through; it opens libvirt sessions
through _libvirt/connection.py), argspec (option families), scope (live/config: which definitions a request
changes), waiting (deadlines and polling), lock (one change at a time per domain or host), cpulist (id lists
such as "0-3,8"), units (memory sizes, KiB inside).  Planners and sysfs code import errors, scope, cpulist and
units from here, never anything from _libvirt.

Private to the kvm.hotplug collection; not a public API.
"""
