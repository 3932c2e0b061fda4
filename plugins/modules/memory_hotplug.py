#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: memory_hotplug
short_description: Set the memory of a running libvirt domain by hot-adding and hot-removing memory devices
version_added: 0.1.0
description:
  - You state how much memory a domain should have (O(size)); the module adds or removes DIMMs, or changes the
    requested size of a virtio-mem device, to reach it. Running it again changes nothing.
  - Every limit (C(maxMemory), free DIMM slots, the guest's memory block size, the guest NUMA cells, the DIMMs that
    can make up a removal) is checked before the first change; a request that cannot be met is refused with a message
    naming the limit, and nothing is changed.
  - Removal is asynchronous in the guest. After asking the guest to release memory the module watches libvirt and QEMU
    until the memory is really gone or O(timeout) passes. Memory the guest has not released is reported with
    RV(unplug=pending) (or V(rejected) when the guest refused), the task fails, and the device stays listed in
    RV(memory.after); the module never reports memory as removed while the domain still has it.
  - With O(wait_for_guest=true) the module also waits until the guest has every memory block of every memory device
    online, read through the QEMU guest agent.
  - O(current_memory) sets the balloon target, independently of O(size).
  - Changes of one domain are serialized on the managed host, so concurrent tasks on one domain take turns.
attributes:
  idempotent:
    support: full
    details: A second run finds the requested size and balloon target and plans nothing.
author:
  - kvm.hotplug developers (@kvm-hotplug)
options:
  size:
    description:
      - The memory the domain should have, with a unit, for example V(1536MiB) or V(2GiB); plain numbers are MiB.
      - This is the domain's whole memory, boot memory plus memory devices, not the amount to add.
        A domain that booted with 512 MiB and should get 512 MiB more is given O(size=1GiB).
        More exactly, it is the boot memory (the guest NUMA cells) plus the size of every DIMM plus the requested size
        of every virtio-mem device, and it is returned as C(size_mib) in RV(memory).
        libvirt's own C(<memory>) total (C(total_mib)) counts a virtio-mem device with its full maximum size
        instead, so the two differ when virtio-mem devices exist.
      - The boot memory cannot change by hotplug; a size below it is refused.
      - The change must be a whole number of the guest's memory blocks (see RV(block_size)).
      - When not set, the memory devices are left as they are (use O(current_memory) alone to move the balloon).
    type: str
  model:
    description:
      - How memory is added and removed.
      - V(dimm) attaches DIMMs (O(dimm_size)) on free C(maxMemory) slots and removes whole DIMMs, newest first,
        choosing only DIMMs whose sizes add up exactly to the memory to remove; when none do, the module refuses
        and lists the sizes that are possible.
      - V(virtio-mem) changes the requested size of the domain's virtio-mem devices. A domain without one gets a new
        virtio-mem device that can grow to the rest of C(maxMemory) (live when the domain runs and O(live=true),
        in the persistent config when O(config=true)). virtio-mem devices cannot be detached; shrinking one to zero
        leaves the device in place.
    type: str
    choices: [dimm, virtio-mem]
    default: dimm
  dimm_size:
    description:
      - Size of each DIMM added (O(model=dimm)), with a unit; plain numbers are MiB.
      - Default is the whole difference as one DIMM. The difference must be a whole number of DIMMs of this size,
        and the size a whole number of the guest's memory blocks.
    type: str
  numa_node:
    description:
      - The guest NUMA cell that receives added memory, and the only cell whose DIMMs or virtio-mem devices are
        shrunk or removed.
      - Default is to spread added memory over the cells, giving each new DIMM (or each memory block for virtio-mem)
        to the cell that has the least memory (the cell's own memory plus its devices), the lowest cell id on ties;
        removal takes from the cells with the most memory.
      - A cell that does not exist is refused.
    type: int
  current_memory:
    description:
      - The balloon target (libvirt's C(currentMemory), C(virDomainSetMemoryFlags)), with a unit; plain numbers
        are MiB.
      - Independent of O(size), but never above the domain's memory after the change.
      - Live, the module waits until the guest's balloon driver has reached the target (up to O(timeout)); this needs
        the C(virtio_balloon) driver in the guest.
    type: str
  wait_for_guest:
    description:
      - After the change, wait until the guest sees the memory, read through the QEMU guest agent
        (C(guest-get-memory-blocks)) together with QEMU's own view (C(query-memory-devices)).
        For each DIMM every memory block in its address range must be online, for each virtio-mem device the guest
        driver must have plugged exactly its requested size and the memory blocks online in its range must cover it.
      - Fails when the guest agent cannot be asked, saying why.
      - Also applies when nothing needed to change, so a run with this option confirms the guest's view.
  timeout:
    description:
      - Seconds to wait, each, for another task's lock on the domain, for the guest to release removed memory
        or reach the balloon target, and (O(wait_for_guest=true)) for the guest to online its memory.
extends_documentation_fragment: [kvm.hotplug.libvirt, kvm.hotplug.libvirt.DOMAIN, kvm.hotplug.change,
                                 kvm.hotplug.attributes, kvm.hotplug.attributes.ACTIONGROUP_LIBVIRT]
notes:
  - The domain needs C(<maxMemory slots='N'>) and at least one guest NUMA cell (C(<cpu><numa>)) for memory hotplug;
    both can only be added to the persistent definition and take effect at the next boot.
  - A change to the persistent definition (O(config=true), also on a shut-off domain) is checked before anything is
    written against the hypervisor's domain capabilities and the domain's own limits (guest NUMA cells, slots,
    C(<maxMemory>), virtio-mem sizes and blocks), so that the domain can still boot; it is read back afterwards, and a
    definition libvirt wrote other than planned is put back.
  - The guest must online hot-added memory. Linux onlines nothing by itself unless the kernel was built with
    C(MEMORY_HOTPLUG_DEFAULT_ONLINE) or booted with C(memhp_default_state=online_movable); distributions use a udev
    rule (C(SUBSYSTEM=="memory", ACTION=="add", ATTR{state}=="offline", ATTR{state}="online_movable")).
  - Memory can only be removed again when the guest can offline it. Online hot-added memory as C(online_movable)
    (ZONE_MOVABLE); memory onlined as C(online_kernel) can take kernel allocations that cannot be moved, and then the
    guest keeps trying (RV(unplug=pending)) or refuses (RV(unplug=rejected)).
  - virtio-mem needs the C(virtio_mem) driver in the guest (Linux 5.8 or later; a module on most distributions).
    libvirt 9.0 with QEMU 7.2 hot-adds a virtio-mem device to a running C(pc) (i440fx) domain; a C(q35) domain
    needs a free hotpluggable PCIe root port.
  - The guest memory block size comes from the guest agent (C(guest-get-memory-block-info)). When the agent cannot
    tell (the domain is shut off, or no agent runs), 128 MiB is assumed, the x86_64 Linux size for guests below
    64 GiB, and RV(block_size) says so.
  - Sizes in results are MiB.
seealso:
  - module: kvm.hotplug.domain_info
  - module: kvm.hotplug.vcpu_hotplug
'''

EXAMPLES = r'''
- name: Give web01 1 GiB of memory (it booted with 512 MiB, so this adds a 512 MiB DIMM) and wait for the guest
  kvm.hotplug.memory_hotplug:
    name: web01
    size: 1GiB
    wait_for_guest: true

- name: Grow to 2 GiB in 256 MiB DIMMs, all on guest NUMA cell 1
  kvm.hotplug.memory_hotplug:
    name: db01
    size: 2GiB
    dimm_size: 256MiB
    numa_node: 1

- name: Back to the boot memory; fails with unplug=pending if the guest cannot offline the memory within 2 minutes
  kvm.hotplug.memory_hotplug:
    name: web01
    size: 512MiB
    timeout: 120
  register: shrink

- name: Resize the virtio-mem device of a running domain, this boot only
  kvm.hotplug.memory_hotplug:
    uri: qemu+ssh://root@hv01.example.com/system
    name: app01
    model: virtio-mem
    size: 3GiB
    config: false
    wait_for_guest: true

- name: Move the balloon to 768 MiB without changing the memory devices
  kvm.hotplug.memory_hotplug:
    name: web01
    current_memory: 768MiB
'''

RETURN = r'''
memory:
  description:
    - The memory of the domain before and after the task, each as C(live) (null when the domain is not running)
      and C(config) (null for a transient domain), read back from libvirt after the change.
    - In check mode, RV(memory.after) is the prediction.
  returned: success and when a change failed
  type: dict
  contains:
    before:
      description: Memory before the change.
      type: dict
      contains:
        live:
          description: The running definition; same keys as RV(memory.before.config).
          type: dict
        config:
          description: The persistent definition.
          type: dict
          contains:
            size_mib:
              description: The memory in the sense of O(size) (boot memory, DIMMs, virtio-mem requested sizes).
              type: int
              sample: 1024
            boot_mib:
              description: Boot memory (the guest NUMA cells), which hotplug cannot change.
              type: int
              sample: 512
            total_mib:
              description: libvirt's C(<memory>) total (counts virtio-mem devices with their full size).
              type: int
              sample: 1024
            current_mib:
              description: The balloon target (C(currentMemory)).
              type: int
              sample: 1024
            max_mib:
              description: C(maxMemory), null when the domain has none.
              type: int
              sample: 4096
            hotplugged_mib:
              description: Memory on memory devices (virtio-mem counted with what is plugged now).
              type: int
              sample: 512
            slots:
              description: C(maxMemory) slots, C(total), C(used) (DIMMs and NVDIMMs) and C(free).
              type: dict
              sample: {total: 8, used: 1, free: 7}
            devices:
              description: Memory devices in definition order (the newest last).
              type: list
              elements: dict
              sample:
                - {model: dimm, alias: dimm0, size_mib: 512, node: 0, slot: 0, base: "0x100000000"}
                - {model: virtio-mem, alias: virtiomem0, size_mib: 3072, node: 1, slot: null, base: null,
                   requested_mib: 512, current_mib: 512, block_mib: 2}
            balloon:
              description: Balloon device model, null when none.
              type: str
              sample: virtio
    after:
      description: Memory after the change, read again from libvirt; same keys as RV(memory.before).
      type: dict
size_mib:
  description:
    - Per changed definition (C(live), C(config)), the memory in the sense of O(size) before the task and the target
      the plan aimed at. What the domain really has afterwards is C(size_mib) in RV(memory.after).
  returned: when the request could be planned
  type: dict
  sample: {live: {before: 512, target: 1024}, config: {before: 512, target: 1024}}
actions:
  description:
    - What was done, in order, per definition (C(where)), with C(status) V(done), V(pending) (asked, the guest has
      not finished), V(rejected) (the guest refused), V(not run) (an earlier action did not complete) or,
      in check mode, V(planned).
  returned: success and when a change failed
  type: list
  elements: dict
  sample:
    - {where: live, action: attach, model: dimm, size_mib: 512, node: 0, status: done}
    - {where: config, action: attach, model: dimm, size_mib: 512, node: 0, status: done}
unplug:
  description:
    - Outcome of removing memory from the running domain; V(completed), V(pending) (the guest has not released the
      memory within O(timeout); it may still do so later) or V(rejected) (the guest refused).
  returned: when memory was removed live
  type: str
  sample: pending
unplug_devices:
  description: The removal actions that did not complete (status V(pending), V(rejected) or V(not run)).
  returned: when memory was removed live
  type: list
  elements: dict
  sample: [{where: live, action: detach, model: dimm, alias: dimm1, size_mib: 512, status: pending,
            still_listed_by: [libvirt, qemu]}]
block_size:
  description: The guest memory block size every change is a multiple of, and where it came from.
  returned: success and when a change failed
  type: dict
  sample: {mib: 128, source: guest agent}
guest_memory:
  description:
    - The guest's memory blocks through the QEMU guest agent after the task; C(available=false) with a C(reason)
      when the agent cannot be asked.
  returned: when the domain is running
  type: dict
  sample: {available: true, block_size_mib: 128, blocks_online: 8, blocks_offline: 0, online_mib: 1024,
           offline_block_ids: []}
verification:
  description:
    - With O(wait_for_guest=true), the last comparison of libvirt's, QEMU's and the guest's view of each memory
      device, and how long the module waited.
    - C(agree) is true when every device's memory is plugged in QEMU and online in the guest.
  returned: when O(wait_for_guest=true) and the domain was changed live
  type: dict
  sample:
    agree: true
    guest_view: true
    qemu_view: true
    guest_online_mib: 1024
    waited: 1.5
    stale_in_libvirt: []
    unknown_to_libvirt: []
    devices: [{alias: dimm0, model: dimm, expected_mib: 512, qemu_plugged_mib: 512, guest_online_mib: 512,
               agree: true}]
elapsed:
  description: Seconds the task took, including the waits for the domain lock and for the guest.
  returned: always
  type: float
  sample: 2.4
'''

from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import change_main
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.run import MemoryChange


def main():
    change_main(MemoryChange)


if __name__ == '__main__':
    main()
