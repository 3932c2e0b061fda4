# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_placement: pure planners that decide where VMs and resources go across hosts
(evacuate: hypervisor_migration's whole-move plan). Private to the kvm.hotplug collection; not a public API.

rebalance: host capacity, bounds and demand -> per-VM changes (with read, apply and run for rebalance_plan and
rebalance_apply).  The planners import no libvirt, use no clock and no randomness; errors come from
_common/errors.py.
"""
