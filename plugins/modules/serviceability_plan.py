#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: serviceability_plan
short_description: Find a hypervisor's failing CPU or memory, and plan what its VMs give up before it goes offline
version_added: 0.3.0
description:
  - Runs on the hypervisor. Detects the failing part from the EDAC error counters (and rasdaemon's database where
    there is one), or takes the part named in O(components).
  - A DIMM, rank or CPU fails when its corrected errors within O(ce_window_hours) reach O(ce_threshold), or when it
    has any uncorrected error. EDAC keeps only totals since a reset, so the readings of earlier runs are kept in
    O(state_file) and the rate is computed from them (a counter reset is recognised).
  - Plans the isolation of the part with a pure planner, what the virtualization layer does first. The pinned threads
    on its CPUs are re-pinned onto the CPUs that stay. When the pinned vCPUs would not fit the CPUs that stay
    online (times O(cpu_overcommit)), or the host's free memory less the blocks that go would fall below
    the memory of O(reserve), VMs are shrunk within their declared minimums (O(allow_shrink)), then migrated
    (O(allow_migration)).
  - When none of these suffice, RV(feasible) is false and RV(refusal) names the limit. Nothing is changed either way.
    Apply the plan with M(kvm.hotplug.rebalance_apply) (RV(targets)), the hypervisor_migration role (RV(migrate)) and
    M(kvm.hotplug.host_resource_offline) (RV(offline)), as the role C(kvm.hotplug.serviceability) does.
attributes:
  idempotent:
    support: full
    details: It changes nothing on the host. It writes the detection readings to O(state_file), except in check mode.
author:
  - kvm.hotplug developers (@kvm-hotplug)
options:
  components:
    description:
      - The part named by hand, which bypasses detection. Any of C(cpus), C(memory_blocks), C(numa_nodes) (cpulist
        syntax), C(dimm) (a DIMM label as EDAC shows it) and C(edac) (an EDAC component key such as V(mc0/dimm1) or
        V(cpu1), as the C(kvm.hotplug.edac_errors) event source names it).
    type: dict
  ce_threshold:
    description: Corrected errors within O(ce_window_hours) that make a component fail (rasdaemon's page threshold).
    type: int
    default: 50
  ce_window_hours:
    description: The window of O(ce_threshold).
    type: float
    default: 24
  cpu_siblings:
    description: Also take out the CPUs that share a failing CPU's core (its thread siblings).
    type: bool
    default: false
  allow_shrink:
    description: Shrink VMs, within the C(min_vcpus) and C(min_memory) of O(vms), when re-pinning leaves too little.
    type: bool
    default: true
  allow_migration:
    description: Plan VMs to leave the host when shrinking is not enough.
    type: bool
    default: false
  vms:
    description: The host's C(kvm_hotplug_vms). A VM without a declared minimum is never shrunk.
    type: dict
    default: {}
  cpu_overcommit:
    description: vCPUs of pinned VMs per host CPU that stays online.
    type: float
    default: 1.0
  reserve:
    description:
      - The host's C(kvm_hotplug_host_reserve); its C(memory) (MiB, or a size string such as V(2GiB)) stays free after
        the memory blocks go.
    type: dict
    default: {}
  state_file:
    description: On the host, the earlier EDAC readings that the rate is computed from.
    type: path
    default: /var/lib/kvm-hotplug/serviceability-edac.json
  rasdaemon_db:
    description: rasdaemon's database (default its usual paths, when present).
    type: path
  sysfs_root:
    description: The host's sysfs tree, V(/sys) on a real host.
    type: path
    default: /sys
extends_documentation_fragment: [kvm.hotplug.libvirt, kvm.hotplug.attributes.INFO_MODULE, kvm.hotplug.attributes,
                                 kvm.hotplug.attributes.ACTIONGROUP_LIBVIRT]
seealso:
  - module: kvm.hotplug.host_resource_info
  - module: kvm.hotplug.host_resource_offline
  - module: kvm.hotplug.rebalance_apply
'''

EXAMPLES = r'''
- name: Detect and plan (nothing changes)
  kvm.hotplug.serviceability_plan:
    vms: "{{ kvm_hotplug_vms | default({}) }}"
    allow_migration: true
  register: isolation

- name: Plan taking CPU 5 and its core siblings out, named by hand
  kvm.hotplug.serviceability_plan:
    components: {cpus: "5"}
    cpu_siblings: true
'''

RETURN = r'''
source:
  description: V(detected) or V(named) (O(components)).
  type: str
  returned: always
findings:
  description: The components that crossed the threshold, each with C(key), C(kind), C(label), C(counters),
    C(corrected_in_window), C(uncorrected), C(reason) and C(covers) (the memory blocks, nodes and CPUs it covers).
  type: list
  elements: dict
  returned: always
part:
  description: The C(cpus) and C(memory_blocks) (lists of ids) of the part.
  type: dict
  returned: always
offline:
  description: The C(cpus) and C(memory_blocks) of the part that are online now, the batch for
    M(kvm.hotplug.host_resource_offline).
  type: dict
  returned: always
empty:
  description: Whether nothing of the part is online (nothing to isolate).
  type: bool
  returned: always
plan:
  description: The planner's result, C(feasible), C(refusal), C(repin), C(shrink) (each with C(name), C(vcpus),
    C(memory_mib), C(vcpus_off) and C(before)), C(migrate), C(limits) and C(vms) (what happens to each).
  type: dict
  returned: always
changes:
  description: One entry per VM and resource a shrink takes away, C(name) and C(change) (C(kind), C(action),
    C(resource), C(before), C(after), C(delta)), what a C(kvm_hotplug_hooks) task file is told.
  type: list
  elements: dict
  returned: always
repins:
  description: The VMs whose pins the part's CPUs concern, C(name) and C(change) (C(kind=repin), C(cpus_offline)).
  type: list
  elements: dict
  returned: always
targets:
  description: The shrinks, each C(name), C(vcpus), C(memory_mib) and C(vcpus_off) (the vCPUs that go, those pinned
    to the part first), for M(kvm.hotplug.rebalance_apply).
  type: list
  elements: dict
  returned: always
migrate:
  description: The VMs that must leave the host.
  type: list
  elements: str
  returned: always
feasible:
  description: Whether the part can be isolated with what is allowed.
  type: bool
  returned: always
refusal:
  description: Why not, naming the limit; null when feasible.
  type: str
  returned: always
notes:
  description: What the mapping of a failing component to memory blocks could not tell.
  type: list
  elements: str
  returned: always
vms:
  description: The running VMs as the planner saw them.
  type: list
  elements: dict
  returned: always
'''

from ansible_collections.kvm.hotplug.plugins.module_utils._placement.isolation_run import plan_main


def main():
    plan_main()


if __name__ == '__main__':
    main()
