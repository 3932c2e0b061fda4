#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: vcpu_hotplug
short_description: Declarative, verified vCPU hot-add and hot-remove for libvirt domains
version_added: 0.1.0
description:
  - Makes a libvirt domain have the number of vCPUs you state (O(count)), or enables or disables individual vCPUs (O(vcpus)),
    in the running domain and/or its persistent config. Running it again changes nothing.
  - Every limit is checked before anything changes, and the failure message names the limit.
    The limits are the maximum vCPU count, vCPU 0 and vCPUs that are not hotpluggable, ids out of range,
    guest NUMA cells, C(<cputune>) pinning, the CPU topology, a running job (a migration), and the domain state.
  - After a live change the module does not trust libvirt's return code. It re-reads libvirt's live definition,
    QEMU's own list of vCPUs (O(raw_queries)) and, when asked (O(wait_for_guest)), the guest's online CPUs
    through the guest agent, and reports what really happened in RV(outcome).
  - A hot-unplug needs the guest to eject the vCPU. When libvirt's wait for that times out,
    the module checks QEMU. If the guest and QEMU removed the vCPU but libvirt still lists it,
    libvirt's view is stale (QEMU never sent C(DEVICE_DELETED)); the module says so and, with O(stale_view=resync),
    restarts the libvirt daemon so that it re-reads the domain from QEMU.
attributes:
  idempotent:
    support: full
    details: A second run finds the requested vCPUs enabled (and the maximum set) and plans nothing.
author:
  - kvm.hotplug developers (@kvm-hotplug)
options:
  count:
    description:
      - The number of vCPUs that should be enabled.
      - New vCPUs are the lowest-numbered disabled ones (of O(numa_node) when set); removed vCPUs are the highest-numbered
        enabled ones that are hotpluggable and not pinned by C(<cputune>) (of O(numa_node) when set).
      - With O(guest_agent=true), the number of CPUs the guest should have online.
      - Mutually exclusive with O(vcpus).
    type: int
  vcpus:
    description:
      - vCPU ids to enable or disable (O(state)), as a list of ids or ranges such as V(2-3).
      - These are libvirt's vCPU ids; with O(guest_agent=true) they are the guest's own CPU numbers.
      - vCPU 0 cannot be changed. Live changes need vCPUs that are hotpluggable.
      - A pinned vCPU named here is removed even though O(count) would not pick it; its pinning stays in the definition
        and applies again when it is enabled.
    type: list
    elements: str
  state:
    description:
      - What to do with the vCPUs in O(vcpus). Needs O(vcpus).
      - Defaults to V(enabled).
    type: str
    choices: [enabled, disabled]
  numa_node:
    description:
      - Guest NUMA cell whose vCPUs are added (or removed) when O(count) changes the number of vCPUs.
      - The cell must exist and have enough free (or removable) vCPUs.
      - With a raised O(maximum), the cell that gets the new vCPUs in the persistent config. A domain with guest NUMA
        cells needs it, because every vCPU must belong to a cell.
    type: int
  config:
    description:
      - Change the persistent definition, so the change survives a shutdown and start.
      - With O(live=true) on a running domain the config enables exactly the vCPUs the running domain has after the change,
        and it is written only when the live change completed.
      - Ignored with a warning on a transient domain.
  maximum:
    description:
      - The maximum vCPU count in the persistent config. It takes effect at the next boot of the domain; the result says so.
      - Must be whole sockets of the CPU topology (dies x cores x threads vCPUs each; the number of sockets follows the
        maximum), must cover the guest NUMA cells, and must not be below a pinned vCPU id (libvirt would drop that
        pinning without a word). New vCPUs go to the guest NUMA cell O(numa_node) names.
      - Before anything is written, the new persistent definition is checked against the hypervisor's domain
        capabilities for the domain's emulator, machine type and virt type (the machine type's vCPU limit, more
        than 255 vCPUs on x86 needing an IOMMU with extended interrupt mode, the topology, the guest NUMA cells).
        A maximum the domain could not boot with is refused, naming the limit, and nothing is changed.
      - After writing, the persistent definition is read back; if libvirt wrote something other than planned, the
        previous definition is put back and the task fails with the difference.
    type: int
  guest_agent:
    description:
      - Change the number of CPUs the guest has online through the QEMU guest agent, instead of ACPI hotplug.
      - The vCPUs stay plugged in QEMU and libvirt; only the guest's own online state changes. O(live) and O(config) are
        not used, and O(maximum) and O(numa_node) cannot be combined with it.
    type: bool
    default: false
  wait_for_guest:
    description:
      - After the change, wait until the guest agent reports exactly the expected number of online CPUs.
      - Fails with libvirt's, QEMU's and the guest's views when that does not happen within O(timeout).
      - The guest must online new CPUs itself (most distributions do it with udev rules).
  timeout:
    description:
      - Seconds to wait, in total, for the lock on the domain, for the guest to eject removed vCPUs and,
        with O(wait_for_guest), for the guest to show the change.
  raw_queries:
    description:
      - Verify live changes against QEMU's own view with the read-only QMP query C(query-cpus-fast).
      - Without it the module can only trust libvirt and cannot tell a stale libvirt view from a pending unplug.
      - libvirt records a C(custom-monitor) taint in the domain log the first time. The query changes nothing.
    type: bool
    default: true
  stale_view:
    description:
      - What to do when libvirt's view disagrees with QEMU's (needs O(raw_queries)), before or after the change.
      - V(fail) reports the disagreement and fails.
      - V(resync) restarts the libvirt daemon of the host (O(libvirt_service)) so that it re-reads every running domain
        from QEMU, then checks again. Running guests are not affected, but other libvirt clients lose their connection;
        the restart is refused for a remote hypervisor and while another domain has a running job (a migration, a save).
    type: str
    choices: [fail, resync]
    default: fail
  libvirt_service:
    description:
      - The service to restart with O(stale_view=resync).
      - Defaults to V(virtqemud) when the modular daemons run, else V(libvirtd).
      - Restarted with C(systemctl) when systemd runs, else with the C(service) command.
    type: str
extends_documentation_fragment: [kvm.hotplug.libvirt, kvm.hotplug.libvirt.DOMAIN, kvm.hotplug.change,
                                 kvm.hotplug.attributes, kvm.hotplug.attributes.ACTIONGROUP_LIBVIRT]
notes:
  - Only one kvm.hotplug task changes a domain at a time on a host; a second one waits for the first (up to O(timeout))
    and then plans from the state the first one left.
  - "QEMU under TCG (libvirt C(<domain type='qemu'>)) has a bug up to at least QEMU 10.0: a hot-unplugged x86 vCPU is
    never finalized, so QEMU never sends C(DEVICE_DELETED) (libvirt times out and keeps listing the vCPU), and the next
    memory-map change of that QEMU process crashes it. When the module sees this, it records the vCPU ids in the
    domain's live metadata and refuses further vCPU hot-add on that domain until it has been shut down and started
    again. KVM domains are not affected."
  - QEMU refuses vCPU hot-unplug until the guest's kernel has initialized ACPI (QEMU's legacy CPU hotplug mode);
    the error message says so.
seealso:
  - module: kvm.hotplug.domain_info
  - module: kvm.hotplug.memory_hotplug
'''

EXAMPLES = r'''
- name: Give web01 four vCPUs, live and persistently, and wait until the guest uses them
  kvm.hotplug.vcpu_hotplug:
    name: web01
    count: 4
    wait_for_guest: true

- name: Take two vCPUs away again
  kvm.hotplug.vcpu_hotplug:
    name: web01
    count: 2
    wait_for_guest: true
    timeout: 120

- name: Add vCPUs from guest NUMA cell 1
  kvm.hotplug.vcpu_hotplug:
    name: db01
    count: 6
    numa_node: 1

- name: Allow up to 12 vCPUs from the next boot on, the 4 new ones in guest NUMA cell 1
  kvm.hotplug.vcpu_hotplug:
    name: db01
    maximum: 12
    numa_node: 1

- name: Enable two particular vCPUs in the running domain only
  kvm.hotplug.vcpu_hotplug:
    name: db01
    vcpus: [4, 5]
    state: enabled
    config: false

- name: Raise the maximum for the next boot (16 = 2 sockets x 8 cores in the topology)
  kvm.hotplug.vcpu_hotplug:
    name: db01
    maximum: 16
  register: raised

- name: Say when it takes effect
  ansible.builtin.debug:
    msg: "{{ raised.notes }}"

- name: Let the guest offline CPUs itself, without ACPI unplug
  kvm.hotplug.vcpu_hotplug:
    name: batch01
    count: 1
    guest_agent: true

- name: On a lab host under TCG, let the module resynchronize libvirt after an unplug QEMU never reported
  kvm.hotplug.vcpu_hotplug:
    name: lab-vcpu
    count: 2
    stale_view: resync
'''

RETURN = r'''
outcome:
  description:
    - What really happened, from the views the module read after the change.
    - V(none) nothing needed changing; V(check_mode) a change was predicted and not made;
      V(complete) libvirt and QEMU (and the guest, with O(wait_for_guest)) show the requested vCPUs;
      V(unverified) libvirt shows them and QEMU could not be asked;
      V(stale) QEMU shows them but libvirt does not; V(pending) the guest has not ejected vCPUs yet;
      V(guest_pending) libvirt and QEMU are done but the guest does not show it; V(partial) anything else.
    - Anything but V(none), V(check_mode), V(complete) and V(unverified) fails the task.
  returned: always
  type: str
  sample: complete
vcpus:
  description: vCPUs of the running domain (V(live)) and of the persistent config (V(config)) before and after, as read from libvirt.
  returned: always
  type: dict
  contains:
    before:
      description: Before the change. V(live) is null for a domain that is not running, V(config) for a transient one.
      type: dict
      sample: {live: {current: 2, maximum: 8, enabled: [0, 1], numa_cells: [{id: 0, cpuset: "0-3"}, {id: 1, cpuset: "4-7"}]},
               config: {current: 2, maximum: 8, enabled: [0, 1], numa_cells: [{id: 0, cpuset: "0-3"}, {id: 1, cpuset: "4-7"}]}}
    after:
      description: After the change, re-read from libvirt (in check mode, the prediction).
      type: dict
      sample: {live: {current: 4, maximum: 8, enabled: [0, 1, 2, 3]}, config: {current: 4, maximum: 8, enabled: [0, 1, 2, 3]}}
guest_online:
  description: Number of CPUs the guest has online, from the guest agent; null when the agent cannot tell.
  returned: always
  type: int
  sample: 4
guest:
  description: The guest agent's view (V(present), V(online), V(offlinable) guest CPU numbers), or why it is not available.
  returned: when the domain is running
  type: dict
qemu:
  description: QEMU's own view, the vCPU ids that exist in QEMU after the change.
  returned: when a live change was made with O(raw_queries=true)
  type: dict
  sample: {present: [0, 1, 2, 3]}
plan:
  description:
    - The vCPU ids the module planned to enable and disable in each definition, the maximum change and guest changes.
    - Its V(maximum) has the maximum V(before) and V(after), and the persistent config's V(numa_cells) and
      V(topology) with the new maximum.
  returned: always
  type: dict
  sample: {live: null, config: null, guest: null, maximum: {before: 8, after: 12, topology: {sockets: 3, dies: 1, cores: 4, threads: 1},
           numa_cells: [{id: 0, cpuset: "0-3"}, {id: 1, cpuset: "4-11"}]}}
libvirt_calls:
  description: Each live libvirt call for one vCPU and what libvirt answered (a timed-out unplug is not a failure by itself).
  returned: always
  type: list
  elements: dict
  sample: [{vcpu: 3, action: disable, ok: false, timed_out: true, error: "vcpu unplug request timed out"}]
resync:
  description: libvirt daemon restarts made to resynchronize a stale view (O(stale_view=resync)).
  returned: always
  type: list
  elements: dict
  sample: [{performed: true, service: libvirtd, seconds: 1.2, reason: stale after the change}]
notes:
  description: Things worth knowing, such as a new maximum that takes effect at the next boot.
  returned: always
  type: list
  elements: str
elapsed:
  description: Seconds the module took, including the wait for the domain lock.
  returned: always
  type: float
  sample: 1.37
'''

from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import change_main
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu.run import VcpuChange


def main():
    change_main(VcpuChange)


if __name__ == '__main__':
    main()
