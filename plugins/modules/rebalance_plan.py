#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: rebalance_plan
short_description: Plan the vCPUs and memory of every VM on a libvirt host from declared or measured demand
version_added: 0.2.0
description:
  - Reads every domain of the host (allocation and hotplug limits) and the host's CPUs and memory, takes each VM's
    bounds, priority and declared demand from O(vms), or measures the demand (O(mode=measured)), and returns the
    changes that give each VM what it needs within its bounds and the host's capacity less O(reserve).
  - The plan comes from a pure planner; it never changes anything. Apply it with M(kvm.hotplug.rebalance_apply).
  - Every VM that gets less than it asked for has the reason in the C(reasons) of its RV(plan.vms) entry.
    Removals come before additions in RV(plan.steps).
attributes:
  idempotent:
    support: full
    details: This module never changes anything.
author:
  - kvm.hotplug developers (@kvm-hotplug)
options:
  vms:
    description:
      - The host's C(kvm_hotplug_vms), keyed by domain name. Each entry may have C(vcpus) and C(memory) (the declared
        demand), C(min_vcpus), C(max_vcpus), C(min_memory), C(max_memory) and C(priority) (higher gets served first).
      - Memory sizes are MiB as a number, or a string with a unit such as V(1GiB).
      - A running domain not listed here keeps its allocation.
    type: dict
    default: {}
  reserve:
    description:
      - The host's C(kvm_hotplug_host_reserve), with C(cpus) and C(memory) (MiB or a size string) kept for the host.
    type: dict
    default: {}
  cpu_overcommit:
    description: vCPUs the VMs may have per host CPU, together.
    type: float
    default: 1.0
  memory_overcommit:
    description: Memory the VMs may have per MiB of host memory, together.
    type: float
    default: 1.0
  mode:
    description:
      - V(declared) takes the demand from O(vms); V(measured) measures it over O(sample_seconds) (see the policy in
        the collection's C(docs/rebalance.md)); bounds and priority still come from O(vms).
    type: str
    choices: [declared, measured]
    default: declared
  sample_seconds:
    description: The measurement window of O(mode=measured).
    type: float
    default: 10
  target_utilization:
    description: In O(mode=measured), the share of its vCPUs (and memory) a VM should use.
    type: float
    default: 0.7
  headroom:
    description: In O(mode=measured), C(vcpus) and C(memory_mib) added to each measured demand.
    type: dict
    default: {}
  max_step:
    description: The most C(vcpus) and C(memory_mib) a VM may gain or lose in one run.
    type: dict
    default: {}
  hysteresis:
    description:
      - C(vcpus) and C(memory_mib), the smallest change worth making, and C(rounds), the number of runs in a row an
        imbalance must be seen before it is acted on.
    type: dict
    default: {}
  state:
    description: The RV(plan.state) of the previous run on this host (for C(rounds) in O(hysteresis)).
    type: dict
    default: {}
  facts:
    description:
      - Plan from these facts instead of reading libvirt, C(host) (C(cpus), C(memory_mib)) and C(vms) (a list of the
        planner's VM facts). For tests and what-if runs; O(mode=measured) needs libvirt.
    type: dict
extends_documentation_fragment: [kvm.hotplug.libvirt, kvm.hotplug.attributes.INFO_MODULE, kvm.hotplug.attributes,
                                 kvm.hotplug.attributes.ACTIONGROUP_LIBVIRT]
seealso:
  - module: kvm.hotplug.rebalance_apply
  - module: kvm.hotplug.domain_info
'''

EXAMPLES = r'''
- name: Plan the host's VMs from the inventory
  kvm.hotplug.rebalance_plan:
    vms: "{{ kvm_hotplug_vms }}"
    reserve: "{{ kvm_hotplug_host_reserve }}"
    max_step: {vcpus: 2, memory_mib: 1024}
  register: rebalance
'''

RETURN = r'''
plan:
  description: The plan.
  type: dict
  returned: always
  contains:
    changed:
      description: Whether any VM changes.
      type: bool
    capacity:
      description: C(vcpus) and C(memory_mib) the VMs may have together (capacity x overcommit, less the reserve).
      type: dict
    totals:
      description: Sums of C(before), C(demand) and C(target) over the running VMs.
      type: dict
    vms:
      description: One entry per domain, in name order, with C(before), C(demand), C(target), C(reasons) and C(range).
      type: list
      elements: dict
    steps:
      description: The changes, removals first, each with C(name), C(resource), C(before), C(after) and C(delta).
      type: list
      elements: dict
    state:
      description: What the next run needs for hysteresis rounds.
      type: dict
  sample:
    changed: true
    capacity: {vcpus: 6, memory_mib: 15360}
    steps: [{name: web, resource: vcpus, before: 4, after: 2, delta: -2}]
targets:
  description: The VMs that change, each with C(name), C(vcpus) and C(memory_mib), for M(kvm.hotplug.rebalance_apply).
  type: list
  elements: dict
  returned: always
  sample: [{name: web, vcpus: 2, memory_mib: 2048}]
mode:
  description: The mode, O(mode).
  type: str
  returned: always
host:
  description: The host's C(cpus) and C(memory_mib) as read.
  type: dict
  returned: always
measured:
  description: Per domain, C(busy_cpus), C(used_mib) and the balloon statistics of the sample.
  type: dict
  returned: when O(mode=measured)
'''

from ansible_collections.kvm.hotplug.plugins.module_utils._placement.run import plan_main


def main():
    plan_main()


if __name__ == '__main__':
    main()
