#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: host_resource_offline
short_description: Take a hypervisor's CPUs and memory blocks out of service safely, and bring them back
version_added: 0.1.0
description:
  - Sets host CPUs, memory blocks, or all CPUs and memory blocks of a NUMA node offline or online
    through sysfs (C(cpuN/online), C(memoryN/state)).
  - Before CPUs go offline, moves the pinning of every libvirt domain that includes them (vCPU, emulator
    and iothread pinning, live and config) onto host CPUs that stay online, and reports each domain changed.
  - Refuses before any change, with the reasons, when a CPU is not hotpluggable, when the host or a NUMA node
    whose memory pinned domains use would lose its last online CPU or memory block, when a block is not
    removable, when an id is unknown or not a plain number, or when a domain would have no CPU to run on.
  - Memory blocks go offline one by one, highest first, retried while the kernel answers C(EBUSY).
    When one does not go offline within O(timeout), every block this task offlined is brought back online and the
    task fails naming the block that held out. The same happens when re-pinning or a CPU fails. Nothing is left half-done.
  - Idempotent. Returns which ids changed, which were already in the requested state, and the domains re-pinned.
attributes:
  idempotent:
    support: full
    details: A second run finds the CPUs and memory blocks in O(state), and the pins already moved, and changes nothing.
author:
  - kvm.hotplug developers (@kvm-hotplug)
options:
  cpus:
    description:
      - Host CPU ids, as a list or a list string such as V(2-5,8).
      - Only digits, ranges and commas are accepted; names and paths are refused.
    type: list
    elements: str
  memory_blocks:
    description:
      - Memory block ids (the N of C(/sys/devices/system/memory/memoryN)), as a list or a list string such as V(32-35).
    type: list
    elements: str
  numa_node:
    description:
      - A NUMA node whose CPUs and memory blocks are all taken offline or brought online as one unit,
        in addition to O(cpus) and O(memory_blocks).
      - A node can only go offline as a whole when all its memory can be moved elsewhere (in practice, when
        it is in ZONE_MOVABLE); otherwise the kernel refuses a block and the task rolls back.
    type: int
  state:
    description:
      - V(offline) takes the resources out of service; V(online) brings them back.
    type: str
    choices: [offline, online]
    default: offline
  evacuate:
    description:
      - Before CPUs go offline, move every pinned domain thread off them (see the notes), and refuse to take
        the last online CPU or memory block of a NUMA node whose memory running domains are bound to (numatune).
      - With V(false) the module does not look at libvirt at all, so neither happens.
    type: bool
    default: true
  repin_on_online:
    description:
      - With O(state=online), put back the pins that an earlier evacuation moved off these CPUs, as recorded in each
        domain's metadata, once their CPUs are online. Pins changed by someone else since then are left alone.
      - Without it, bringing CPUs online changes no domain.
    type: bool
    default: false
  online_type:
    description:
      - How memory blocks are brought online.
      - V(auto) brings each block back into the zone it was in when this module took it offline (C(online_movable) for
        ZONE_MOVABLE, C(online_kernel) for DMA, DMA32 and Normal), recorded in C(/run/kvm.hotplug/memory-zones.json) for the
        current boot. For a block without a record it follows the host's policy for new memory
        (C(/sys/devices/system/memory/auto_online_blocks)), that is C(online_movable) or C(online_kernel) when that zone is
        offered, else C(online), the kernel's default zone.
      - The kernel's default alone is not enough, a ZONE_MOVABLE block offlined and onlined with plain C(online) comes back
        in ZONE_NORMAL, where the kernel may place unmovable allocations that then keep it from going offline again.
      - V(online), V(online_movable) and V(online_kernel) write that word to the block's C(state).
    type: str
    choices: [auto, online, online_movable, online_kernel]
    default: auto
  timeout:
    description:
      - Seconds each memory block may take to go offline, including retries while the kernel answers C(EBUSY).
    type: int
    default: 30
  sysfs_root:
    description:
      - The sysfs tree to read and write, V(/sys) on a real host.
      - Pointing it at a copy is how the module is tried without touching the host; libvirt domains
        are still the real ones at O(uri), and the CPUs that stay online come from that tree.
    type: path
    default: /sys
extends_documentation_fragment: [kvm.hotplug.libvirt, kvm.hotplug.attributes, kvm.hotplug.attributes.ACTIONGROUP_LIBVIRT]
notes:
  - A thread is pinned when its domain has a C(<vcpupin>), C(<emulatorpin>) or C(<iothreadpin>) for it,
    a C(<vcpu cpuset>), or C(<vcpu placement='auto'>). Domains without any of these run on any online CPU and the kernel
    moves their threads when a CPU goes offline, so they are listed in RV(domains_unpinned) and not changed.
  - A pinned thread whose CPUs include ones going offline keeps the rest of its CPUs. When none is left, it moves to the
    domain's fallback set, which is its C(<vcpu cpuset>) without the CPUs going offline when it has one, otherwise every host
    CPU that stays online and is not isolated (C(isolcpus), C(/sys/devices/system/cpu/isolated)). When the fallback set is
    empty, or a C(<vcpu cpuset>) has no CPU left, the domain would have no CPU to run on and the task is refused.
  - A memory block is offlined by writing C(offline) to its C(state); the kernel migrates its pages elsewhere or
    answers C(EBUSY) (unmovable pages) or C(EINVAL) (holes, several zones). Only C(EBUSY) and C(EAGAIN) are retried.
  - Memory of running domains bound to a node with numatune mode C(strict), C(restrictive) or C(interleave) (or memnode)
    counts as in use by pinned domains; C(preferred) does not.
  - Never use this module to take the CPUs or memory of the machine that runs Ansible's controller out of service
    by mistake; C(check_mode) shows what would happen.
requirements:
  - libvirt-python on the managed host when O(evacuate=true) and CPUs go offline, or with O(repin_on_online=true)
seealso:
  - module: kvm.hotplug.host_resource_info
'''

EXAMPLES = r'''
- name: Take CPUs 6 and 7 out of service, moving pinned vCPUs off them first
  kvm.hotplug.host_resource_offline:
    cpus: "6-7"
    state: offline
  register: out

- name: Show which domains were re-pinned
  ansible.builtin.debug:
    msg: "{{ out.domains_repinned | map(attribute='name') | list }}"

- name: Bring them back and restore the pinning moved off them
  kvm.hotplug.host_resource_offline:
    cpus: [6, 7]
    state: online
    repin_on_online: true

- name: Take the memory blocks of a failing DIMM out of service (2 minutes per block at most)
  kvm.hotplug.host_resource_offline:
    memory_blocks: "{{ failing_dimm.mapping.memory_blocks }}"
    timeout: 120

- name: Take a whole NUMA node out of service for a DIMM replacement window
  kvm.hotplug.host_resource_offline:
    numa_node: 1
    state: offline

- name: Try it against a copy of the host's sysfs, with the real libvirt domains
  kvm.hotplug.host_resource_offline:
    cpus: "3"
    sysfs_root: /tmp/sysfs-copy
  check_mode: true
'''

RETURN = r'''
state:
  description: The requested state.
  returned: always
  type: str
  sample: offline
numa_node:
  description: The NUMA node given in O(numa_node), or null.
  returned: always
  type: int
sysfs_root:
  description: The sysfs tree used.
  returned: always
  type: str
uri:
  description: The libvirt URI the module talked to, when it looked at domains.
  returned: when domains were looked at
  type: str
cpus_changed:
  description: CPUs this task set to O(state) (in check mode, would set).
  returned: always
  type: list
  elements: int
  sample: [2, 3]
cpus_already:
  description: Requested CPUs that were already in O(state).
  returned: always
  type: list
  elements: int
memory_blocks_changed:
  description: Memory blocks this task set to O(state), in the order they were written (in check mode, would set).
  returned: always
  type: list
  elements: int
  sample: [35, 34]
memory_blocks_already:
  description: Requested memory blocks that were already in O(state).
  returned: always
  type: list
  elements: int
memory_online_state:
  description: For O(state=online), the word written to each block's C(state) (see O(online_type)).
  returned: always
  type: dict
  sample: {"34": online_movable}
memory_attempts:
  description: For each memory block offlined, how many writes it took and how long.
  returned: always
  type: list
  elements: dict
  sample: [{block: 35, attempts: 1, seconds: 0.2, last_error: null}]
online_cpus_after:
  description: The host's online CPUs after the task (predicted in check mode), as a list string.
  returned: always
  type: str
  sample: "0-1"
domains_checked:
  description: Whether libvirt domains were looked at (only when needed and O(evacuate) or O(repin_on_online) allow it).
  returned: always
  type: bool
domains_repinned:
  description: Domains whose pinning this task changed (in check mode, would change), with each change.
  returned: always
  type: list
  elements: dict
  sample:
    - name: lab-pinned
      state: running
      notes: []
      changes:
        - {scope: live, thread: vcpu 1, source: vcpupin, before: "1", after: "0", fallback: true,
           reason: "all its CPUs go offline; moved to the host CPUs that stay online (not isolated)"}
        - {scope: live, thread: emulator, source: emulatorpin, before: "0-1", after: "0", fallback: false,
           reason: "CPU 1 go offline"}
domains_unpinned:
  description: Domains with no pinning at all; the kernel moves their threads, nothing to change.
  returned: always
  type: list
  elements: str
domains_unaffected:
  description: Pinned domains whose pinning does not include the CPUs concerned.
  returned: always
  type: list
  elements: str
before:
  description: Online state of each requested CPU and memory block, and the pinning of each re-pinned domain, before.
  returned: when something changed or would change
  type: dict
  sample: {cpus: {"1": online}, memory_blocks: {}, domains: {lab-pinned: {live: {vcpu 1: "1", emulator: "0-1"}}}}
after:
  description: The same, read again after the change (predicted in check mode).
  returned: when something changed or would change
  type: dict
  sample: {cpus: {"1": offline}, memory_blocks: {}, domains: {lab-pinned: {live: {vcpu 1: "0", emulator: "0"}}}}
note:
  description: What check mode cannot predict.
  returned: in check mode when memory blocks would go offline
  type: str
elapsed:
  description: Seconds the module took, including the wait for the host lock and the domain locks.
  returned: always
  type: float
'''

from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import change_main
from ansible_collections.kvm.hotplug.plugins.module_utils._host.run import HostChange


def main():
    change_main(HostChange)


if __name__ == '__main__':
    main()
