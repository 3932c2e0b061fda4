#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: host_resource_info
short_description: Read a hypervisor's CPUs, memory blocks, NUMA nodes and memory error counters
version_added: 0.1.0
description:
  - Returns the host's CPUs (online, hotpluggable, NUMA node, core, die and package ids),
    its memory blocks (state, removable, valid zones, NUMA node, physical range, block size)
    and its NUMA nodes, as the kernel shows them in sysfs.
  - Returns the memory error counters an event-log analyzer works from, the kernel's EDAC memory controllers
    with their csrows and DIMMs or ranks (labels, locations, corrected and uncorrected counts), and,
    when present, a summary of rasdaemon's event database.
  - Maps a failing DIMM or rank to the memory blocks and NUMA node it backs where the kernel exposes enough,
    and says plainly when it cannot (see RV(failing[].mapping)).
  - Never changes anything, and does not need libvirt.
attributes:
  idempotent:
    support: full
    details: It only reads sysfs and the rasdaemon database.
author:
  - kvm.hotplug developers (@kvm-hotplug)
options:
  sysfs_root:
    description:
      - The sysfs tree to read, V(/sys) on a real host.
      - Point it at a copy of a host's tree to look at that host's layout.
    type: path
    default: /sys
  rasdaemon_db:
    description:
      - Path of rasdaemon's SQLite event database, read through a read-only connection.
      - When not set, the first that exists of V(/var/lib/rasdaemon/ras-mc_event.db) (the name rasdaemon
        uses on Debian, Ubuntu, Fedora and RHEL) and V(/var/lib/rasdaemon/ras-mc_ctx.db) is read.
      - Set it to an empty string to not read any database.
    type: path
  ce_threshold:
    description:
      - A DIMM or rank with at least this many corrected errors is listed in RV(failing).
      - Uncorrected errors always make it failing. When not set, corrected errors alone never do.
    type: int
extends_documentation_fragment: [kvm.hotplug.attributes.INFO_MODULE, kvm.hotplug.attributes]
notes:
  - EDAC does not show which physical addresses a DIMM holds, so it cannot tie a DIMM to memory blocks by itself.
    The module maps a DIMM to the blocks holding the physical addresses rasdaemon recorded for its errors
    (level V(memory_block)), else to all blocks of the NUMA node its memory controller serves when the kernel
    ties the controller to a node (level V(node)), else to nothing (level V(none)), always with the reason.
  - The kernel's C(removable) file of a memory block reads 1 for every block on recent kernels;
    whether a block can really go offline shows when it is tried. A block whose valid zones read C(none) never can.
  - Offline CPUs have no topology in sysfs; their core, die and package ids are null.
seealso:
  - module: kvm.hotplug.host_resource_offline
'''

EXAMPLES = r'''
- name: Read the hypervisor's CPUs, memory blocks and memory error counters
  kvm.hotplug.host_resource_info:
    ce_threshold: 100
  register: hw

- name: Show failing DIMMs and where their memory is
  ansible.builtin.debug:
    msg: >-
      {{ item.label }} ({{ item.reason }}): {{ item.mapping.level }}-level mapping,
      blocks {{ item.mapping.memory_blocks | kvm.hotplug.to_cpulist }}, {{ item.mapping.reason }}
  loop: "{{ hw.failing }}"

- name: Take the memory of a failing DIMM out of service when it maps to blocks
  kvm.hotplug.host_resource_offline:
    memory_blocks: "{{ item.mapping.memory_blocks }}"
    state: offline
  loop: "{{ hw.failing | selectattr('mapping.level', 'eq', 'memory_block') }}"

- name: Read the layout of another host from a copy of its sysfs
  kvm.hotplug.host_resource_info:
    sysfs_root: /srv/sysfs-copies/hv07
    rasdaemon_db: ""
'''

RETURN = r'''
sysfs_root:
  description: The sysfs tree that was read.
  returned: always
  type: str
  sample: /sys
cpu_summary:
  description: The kernel's CPU lists (as list strings) and counts.
  returned: always
  type: dict
  sample: {online: "0-3", offline: "", possible: "0-3", present: "0-3", isolated: "", count: 4, online_count: 4}
cpus:
  description: One entry per CPU the kernel shows.
  returned: always
  type: list
  elements: dict
  sample: [{id: 0, online: true, hotpluggable: false, node: 0, core_id: 0, package_id: 0, die_id: 0, thread_siblings: "0"},
           {id: 2, online: false, hotpluggable: true, node: 1, core_id: null, package_id: null, die_id: null,
            thread_siblings: null}]
  contains:
    id:
      description: CPU number.
      type: int
    online:
      description: Whether the CPU is online.
      type: bool
    hotpluggable:
      description: Whether the kernel lets it go offline (it offers C(cpuN/online)).
      type: bool
    node:
      description: NUMA node of the CPU, null when the kernel does not say.
      type: int
    core_id:
      description: Core id, null while the CPU is offline.
      type: int
    package_id:
      description: Physical package (socket) id, null while the CPU is offline.
      type: int
    die_id:
      description: Die id, null while offline or when the kernel does not show it.
      type: int
    thread_siblings:
      description: The CPUs sharing its core, as a list string; null while offline.
      type: str
memory:
  description: Memory block size, how the kernel onlines new blocks, counts and the blocks themselves.
  returned: always
  type: dict
  contains:
    available:
      description: Whether the kernel shows memory blocks (memory hotplug support).
      type: bool
    block_size_bytes:
      description: Size of one memory block.
      type: int
      sample: 134217728
    block_size_mib:
      description: Size of one memory block in MiB.
      type: int
    auto_online_blocks:
      description: How the kernel onlines hot-added blocks (C(offline), C(online), C(online_movable), ...).
      type: str
    count:
      description: Number of memory blocks.
      type: int
    online_count:
      description: Number of online memory blocks.
      type: int
    online_mib:
      description: Online memory in MiB, counted in blocks.
      type: int
    offline:
      description: Ids of offline blocks.
      type: list
      elements: int
    movable:
      description: Ids of online blocks in ZONE_MOVABLE (the ones most likely to go offline).
      type: list
      elements: int
    blocks:
      description: One entry per memory block.
      type: list
      elements: dict
      sample:
        - {id: 32, state: online, online: true, removable: true, valid_zones: [Movable], node: 0,
           phys_index: 32, phys_device: 0, start: "0x100000000", end: "0x107ffffff", size_mib: 128}
numa_nodes:
  description: One entry per NUMA node.
  returned: always
  type: list
  elements: dict
  sample: [{id: 1, cpus: [2, 3], cpulist: "2-3", online_cpus: [3], memory_blocks: [4, 5, 34, 35],
            online_memory_blocks: [4, 5, 34, 35], mem_total_mib: 511, mem_free_mib: 400}]
edac:
  description:
    - The EDAC memory controllers. V(available) is false with a V(reason) when the kernel shows none.
    - Each controller has V(id), V(name), V(size_mib), V(ce_count), V(ue_count), V(ce_noinfo_count),
      V(ue_noinfo_count), V(dimms) (DIMMs or ranks, each with V(kind), V(label), V(location), V(size_mib),
      V(ce_count), V(ue_count), V(mem_type), V(edac_mode), V(failing), V(mapping) and V(rasdaemon)),
      V(csrows) (legacy view with per-channel counts and labels) and V(mapping).
  returned: always
  type: dict
  sample:
    available: true
    controllers:
      - id: 0
        name: "Skylake Socket#0 IMC#0"
        ce_count: 12
        ue_count: 0
        mapping: {level: node, nodes: [0], memory_blocks: [0, 1, 2], reason: "..."}
        dimms: [{id: 0, kind: dimm, label: "CPU0_DIMM_A1", location: "channel 0 slot 0", ce_count: 12, ue_count: 0}]
rasdaemon:
  description:
    - Summary of rasdaemon's C(mc_event) table, grouped by DIMM label, controller and layer position,
      with corrected and uncorrected totals, first and last timestamps and the memory blocks of the
      recorded physical addresses; V(tables) gives the row count of every table of the database.
    - V(available) is false with a V(reason) when there is no database or it cannot be read.
  returned: always
  type: dict
  sample:
    path: /var/lib/rasdaemon/ras-mc_event.db
    available: true
    events: 3
    tables: {mc_event: 3, mce_record: 0, aer_event: 0, extlog_event: 0}
    groups: [{label: "CPU0_DIMM_A1", mc: 0, layers: [0, 0, null], corrected: 5, uncorrected: 0, events: 3,
              first: "2024-05-01 10:00:00 +0000", last: "2024-05-02 11:00:00 +0000", addresses: 2,
              memory_blocks: [33]}]
failing:
  description:
    - DIMMs or ranks with uncorrected errors, or with at least O(ce_threshold) corrected errors;
      controllers whose errors could not be attributed to a DIMM; rasdaemon labels that match no EDAC DIMM.
    - V(mapping.level) is V(memory_block), V(node) or V(none); V(mapping.reason) says how the mapping was made
      or why it could not be.
  type: list
  elements: dict
  returned: always
  contains:
    source:
      description: Where the counts come from, V(edac) or V(rasdaemon).
      type: str
    controller:
      description: EDAC memory controller number (C(mcN)), or rasdaemon's C(mc) field.
      type: int
    kind:
      description: V(dimm), V(rank), V(controller) (errors not attributed to a DIMM) or V(label) (rasdaemon only).
      type: str
    id:
      description: The N of C(dimmN), C(rankN) or C(mcN); null for rasdaemon labels.
      type: int
    label:
      description: The DIMM label (from the firmware or C(ras-mc-ctl --register-labels)), or the controller name.
      type: str
    location:
      description: EDAC's location of the DIMM, for example V(channel 0 slot 0).
      type: str
    ce_count:
      description: Corrected errors (the larger of EDAC's count since boot and rasdaemon's history).
      type: int
    ue_count:
      description: Uncorrected errors, counted the same way.
      type: int
    reason:
      description: Why it is listed.
      type: str
    mapping:
      description: The memory this DIMM backs, as far as known, with V(level), V(nodes), V(memory_blocks) and V(reason).
      type: dict
  sample:
    - source: edac
      controller: 0
      kind: dimm
      id: 0
      label: CPU0_DIMM_A1
      location: channel 0 slot 0
      ce_count: 120
      ue_count: 0
      reason: 120 corrected errors (threshold 100)
      mapping: {level: memory_block, nodes: [0], memory_blocks: [33],
                reason: rasdaemon recorded errors of this DIMM at physical addresses in these blocks}
'''


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.hotplug.plugins.module_utils._host.edac import (
    analyze, rasdaemon_path, read_edac, read_rasdaemon,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import (
    SysfsTree, cpu_summary, memory_summary, read_host,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import run_module


def gather(module):
    params = module.params
    if params['ce_threshold'] is not None and params['ce_threshold'] < 1:
        raise HotplugError('ce_threshold must be 1 or more')
    tree = SysfsTree(params['sysfs_root'])
    host = read_host(tree)
    edac = read_edac(tree)
    rasdaemon = read_rasdaemon(rasdaemon_path(params['rasdaemon_db']), host.memory)
    failing = analyze(host, edac, rasdaemon, params['ce_threshold'])
    memory = memory_summary(host.memory)
    memory['blocks'] = [b.to_dict() for _i, b in sorted(host.memory.blocks.items())]
    return dict(
        changed=False, sysfs_root=tree.root,
        cpu_summary=cpu_summary(host),
        cpus=[c.to_dict() for _i, c in sorted(host.cpus.items())],
        memory=memory,
        numa_nodes=[n.to_dict(host.memory) for _i, n in sorted(host.nodes.items())],
        edac=edac, rasdaemon=rasdaemon, failing=failing,
    )


def main():
    argument_spec = dict(
        sysfs_root=dict(type='path', default='/sys'),
        rasdaemon_db=dict(type='path'),
        ce_threshold=dict(type='int'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, gather, needs_libvirt=False)


if __name__ == '__main__':
    main()
