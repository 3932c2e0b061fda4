# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host_resource_info and host_resource_offline: sysfs (reading and writing the host's CPUs, memory blocks and
nodes), edac (EDAC and rasdaemon), edac_rate (pure: EDAC totals and earlier readings -> the components over the
error threshold, for the serviceability role and the edac_errors event source), plan (pure: host + request ->
plan or refusal), apply (sysfs writes with rollback), zone_record (the zone of each offlined memory block),
evacuation (pure: moving pins off CPUs), pins (reading and changing domain pinning through libvirt), run (the
runner's hooks).

Private to the kvm.hotplug collection; not a public API.
"""
