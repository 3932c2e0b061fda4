#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: hypervisor_migration_plan
short_description: Plan the whole evacuation of a hypervisor's components, or of the whole host, before anything moves
version_added: 0.3.0
description:
  - Runs on the hypervisor being serviced (the source). Reads its CPUs, memory blocks and NUMA nodes from sysfs and its
    running domains from libvirt, and every destination's free CPUs and memory, vCPU limit and CPU compatibility from
    its libvirt at the destination's C(uri).
  - With O(phase=evacuate), plans the whole move at once with a pure planner, deciding which domains can stay, re-pinned to the
    CPUs that remain with their memory on the nodes that remain; which must leave; where each one goes, counting the
    earlier placements against every destination's capacity; and in which wave, within O(parallel) and
    O(per_destination). Then the batch of components that goes offline.
  - A domain that cannot be placed refuses the whole plan, naming the domain and the limit it hit (vCPU maximum, free
    memory, CPU model, free CPUs, pinned CPUs), before anything moves. So does a domain with a job (a migration) in
    progress.
  - With O(phase=restore), lists the migrations back of the domains that O(record) says were evacuated from this host,
    from wherever they run now. A domain that runs nowhere or on two hosts is not moved and is named in RV(notes).
  - Never changes anything. M(kvm.hotplug.hypervisor_migration_apply) runs RV(migrations).
attributes:
  idempotent:
    support: full
    details: This module never changes anything.
author:
  - kvm.hotplug developers (@kvm-hotplug)
options:
  source:
    description: The name of the source host (its inventory name), as the plan, the record and messages say it.
    type: str
    required: true
  source_uri:
    description:
      - How the other hosts reach the source's libvirt for live migration (its C(kvm_hotplug_migration_uri)).
      - Required with O(phase=restore). With O(phase=evacuate) it is what RV(migrations) give as C(source_uri)
        (default O(uri)).
    type: str
  phase:
    description: V(evacuate) plans the move off the source; V(restore) plans the way back.
    type: str
    choices: [evacuate, restore]
    default: evacuate
  components:
    description:
      - What is taken out, V(all) for the whole host (every running domain leaves and nothing goes offline), or a
        mapping with any of C(cpus), C(memory_blocks) and C(numa_nodes) in cpulist syntax such as V(2-5,8).
      - Required with O(phase=evacuate). With O(phase=restore), the components to bring online, RV(online).
    type: raw
  destinations:
    description:
      - The hosts that may take domains, in order of preference for ties. Each has C(name) and C(uri) (how the source
        reaches it, its C(kvm_hotplug_migration_uri)), and may have C(online_cpus) (a cpulist or list; default
        libvirt's CPU map) and C(vcpu_max) (a site limit below the hypervisor's own, C(kvm_hotplug_max_vcpus)).
      - An unreachable destination is left out of the plan and named in RV(unreachable).
    type: list
    elements: dict
    default: []
  record:
    description:
      - The evacuation record, a mapping of domain name to origin host. With O(phase=evacuate) it is returned in RV(record) with this
        plan's leaving domains added; with O(phase=restore) its domains from O(source) are the ones brought back.
    type: dict
    default: {}
  domains:
    description:
      - With O(components=all), only these running domains leave; the others stay as they are. This is how the
        serviceability role hands over the VMs it cannot keep. Refused with other O(components).
      - Empty for every running domain.
    type: list
    elements: str
    default: []
  parallel:
    description: Migrations out of the source at once (in one wave).
    type: int
    default: 2
  per_destination:
    description: Migrations into one destination at once.
    type: int
    default: 2
  cpu_overcommit:
    description: vCPUs a destination may run per online host CPU, together.
    type: float
    default: 1.0
  memory_overcommit:
    description: Memory a destination may give its guests per MiB of host memory, together.
    type: float
    default: 1.0
  reserve_memory_mib:
    description: MiB kept free on every host, the source after its memory blocks go and each destination.
    type: int
    default: 0
  sysfs_root:
    description: The source's sysfs tree, V(/sys) on a real host (the lab's simulated tree in tests).
    type: path
    default: /sys
extends_documentation_fragment: [kvm.hotplug.libvirt, kvm.hotplug.attributes.INFO_MODULE, kvm.hotplug.attributes,
                                 kvm.hotplug.attributes.ACTIONGROUP_LIBVIRT]
notes:
  - Domains that are not running are not moved; RV(notes) lists them.
  - The planned re-pins of the staying domains are made by M(kvm.hotplug.host_resource_offline) when the components go
    offline, which records them for O(kvm.hotplug.host_resource_offline#module:repin_on_online).
seealso:
  - module: kvm.hotplug.hypervisor_migration_apply
  - module: kvm.hotplug.domain_migrate
  - module: kvm.hotplug.host_resource_offline
'''

EXAMPLES = r'''
- name: Plan taking CPU 1 and memory blocks 34-35 out of hv1
  kvm.hotplug.hypervisor_migration_plan:
    source: hv1
    source_uri: qemu+ssh://hv1/system
    components: {cpus: "1", memory_blocks: "34-35"}
    destinations:
      - {name: hv2, uri: "qemu+ssh://hv2/system"}
      - {name: hv3, uri: "qemu+ssh://hv3/system"}
  register: evacuation

- name: Plan the way back after the parts were replaced
  kvm.hotplug.hypervisor_migration_plan:
    source: hv1
    source_uri: qemu+ssh://hv1/system
    phase: restore
    record: "{{ evacuation.record }}"
    destinations:
      - {name: hv2, uri: "qemu+ssh://hv2/system"}
      - {name: hv3, uri: "qemu+ssh://hv3/system"}
'''

RETURN = r'''
phase:
  description: O(phase).
  type: str
  returned: always
plan:
  description:
    - With O(phase=evacuate), the planner's plan, C(stay) (each with C(name), C(pinning), C(notes)),
      C(leave) (each with C(name), C(destination), C(reason), C(wave), C(vcpus), C(memory_mib)), C(waves), C(offline)
      and C(destinations) (what the plan adds to each).
    - With O(phase=restore), C(moves) and C(skipped) (each with C(name) and C(reason)).
  type: dict
  returned: always
migrations:
  description: The migrations to run, each with C(name), C(source), C(destination), C(source_uri), C(dest_uri) and
    C(wave), in wave order, and C(change) (what a C(kvm_hotplug_hooks) task file is told); the input of
    M(kvm.hotplug.hypervisor_migration_apply).
  type: list
  elements: dict
  returned: always
  sample: [{name: web, source: hv1, destination: hv2, source_uri: "qemu:///system",
            dest_uri: "qemu+ssh://hv2/system", wave: 0}]
repins:
  description: The staying domains whose pinning changes when the components go offline, each with
    C(name) and C(change) (C(kind=repin), the planned C(pinning), C(cpus_offline)).
  type: list
  elements: dict
  returned: always
offline:
  description: The batch of C(cpus), C(memory_blocks) and C(numa_nodes) (lists of ids) that goes offline; empty for
    V(all), for O(phase=restore) and for what is already offline.
  type: dict
  returned: always
  sample: {cpus: [1], memory_blocks: [34, 35], numa_nodes: []}
online:
  description: With O(phase=restore) and O(components), the C(cpus) and C(memory_blocks) (lists of ids) they name on
    the host now, a NUMA node bringing its CPUs and blocks; the batch to bring online.
  type: dict
  returned: with O(phase=restore)
  sample: {cpus: [1], memory_blocks: [34, 35]}
empty:
  description: Whether there is nothing to do, no migration, re-pin or component to take offline.
  type: bool
  returned: always
record:
  description: The evacuation record (domain name to origin host), with this plan's leaving domains added (evacuate), or
    the domains of O(record) that came from O(source) (restore).
  type: dict
  returned: always
notes:
  description: What the plan leaves alone and why (domains not running, unreachable destinations, domains skipped on
    the way back).
  type: list
  elements: str
  returned: always
unreachable:
  description: Hosts whose libvirt could not be read, each with why.
  type: dict
  returned: always
unplaceable:
  description: When the plan is refused, each domain that fits nowhere with its reasons, grouped by check and
    destination.
  type: list
  elements: dict
  returned: on refusal
source_facts:
  description: The source as read, C(online_cpus), C(free_memory_mib) and the running C(domains).
  type: dict
  returned: with O(phase=evacuate)
'''

from ansible_collections.kvm.hotplug.plugins.module_utils._placement.evacuate_run import plan_main


def main():
    plan_main()


if __name__ == '__main__':
    main()
