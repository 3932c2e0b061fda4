# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure planners the roles share: rebalance (host capacity, bounds and demand -> per-VM changes).

No libvirt here; errors come from _common/errors.py.
Private to the kvm.hotplug collection; not a public API.
"""
