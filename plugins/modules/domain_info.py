#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: domain_info
short_description: Read the hotplug-relevant state of libvirt domains
version_added: 0.1.0
description:
  - Returns, for one domain or every domain of a hypervisor, what matters for CPU and memory hotplug
    in both the running (live) and the persistent (config) definition.
  - That is the vCPU maximum and current count, each vCPU's enabled, hotpluggable and order, the CPU topology,
    pinning (C(cputune), C(numatune)), guest NUMA cells, memory, C(maxMemory) and its slots,
    memory devices and the balloon.
  - Also returns the domain state, whether a job (a migration, for example) is running,
    and, when the QEMU guest agent answers, the guest's own view of its online vCPUs.
  - Never changes anything.
attributes:
  idempotent:
    support: full
    details: It only reads libvirt, QEMU and the guest agent.
author:
  - kvm.hotplug developers (@kvm-hotplug)
options:
  name:
    description:
      - Name of the domain to read.
      - When not set, every domain defined or running on the hypervisor is returned.
    type: str
    aliases: [domain]
  guest_agent:
    description:
      - Ask the QEMU guest agent of running domains which vCPUs the guest has online
        (libvirt's C(virDomainGetGuestVcpus), no raw agent command).
      - Domains whose agent channel is not connected are skipped without waiting.
    type: bool
    default: true
  raw_queries:
    description:
      - Also read QEMU's own view through read-only QMP queries (C(query-cpus-fast), C(query-memory-devices))
        and the guest's memory blocks through the guest agent, and compare QEMU's vCPUs with libvirt's.
      - This is how a stale libvirt view is found, for example a vCPU that QEMU removed while libvirt still lists it.
      - libvirt records a C(custom-monitor) and C(custom-ga-command) taint in the domain's log the first time
        such a query is sent. The queries change nothing in the domain.
    type: bool
    default: false
extends_documentation_fragment: [kvm.hotplug.libvirt, kvm.hotplug.attributes.INFO_MODULE, kvm.hotplug.attributes,
                                 kvm.hotplug.attributes.ACTIONGROUP_LIBVIRT]
notes:
  - Sizes are in MiB. vCPU ids are libvirt's; the guest numbers its CPUs itself, so compare guest counts, not ids.
seealso:
  - module: kvm.hotplug.vcpu_hotplug
    description: Changes the vCPUs this module reports, live and in the persistent definition.
  - module: kvm.hotplug.memory_hotplug
    description: Changes the memory devices and balloon this module reports.
'''

EXAMPLES = r'''
- name: Read one domain
  kvm.hotplug.domain_info:
    name: web01
  register: web01

- name: Show how many vCPUs the guest really has online
  ansible.builtin.debug:
    msg: >-
      libvirt enables {{ web01.domains[0].live.vcpus.current }} vCPUs,
      the guest has {{ web01.domains[0].guest.vcpus.online_count | default('?') }} online

- name: Every domain on a remote hypervisor, with QEMU's own view to find stale libvirt state
  kvm.hotplug.domain_info:
    uri: qemu+ssh://root@hv01.example.com/system
    raw_queries: true
  register: all_domains

- name: Domains whose libvirt view disagrees with QEMU
  ansible.builtin.debug:
    msg: "{{ all_domains.domains | selectattr('consistency.vcpus.agree', 'defined')
             | rejectattr('consistency.vcpus.agree') | map(attribute='name') | list }}"
'''

RETURN = r'''
uri:
  description: The libvirt URI the module talked to.
  returned: always
  type: str
  sample: qemu:///system
domains:
  description: One entry per domain, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
      sample: lab-numa
    uuid:
      description: Domain UUID.
      type: str
    id:
      description: libvirt domain id while running, else null.
      type: int
    state:
      description: Domain state.
      type: str
      sample: running
      choices: [nostate, running, blocked, paused, shutdown, shutoff, crashed, pmsuspended]
    active:
      description: Whether QEMU runs for this domain, so live changes are possible.
      type: bool
    persistent:
      description: Whether the domain has a persistent definition.
      type: bool
    autostart:
      description: Whether the domain starts with the host.
      type: bool
    migrating:
      description: Whether a migration job (in or out) is running.
      type: bool
    job:
      description: The domain's running job.
      type: dict
      contains:
        active:
          description: Whether a job runs.
          type: bool
        type:
          description: libvirt job type.
          type: str
          sample: none
        operation:
          description: What the job does, for example V(migration_out); null when libvirt does not say.
          type: str
        migrating:
          description: Whether the job is a migration.
          type: bool
    live:
      description:
        - The running definition, null when the domain is not running.
        - Same keys as RV(domains[].config).
      type: dict
    config:
      description: The persistent definition, null for a transient domain.
      type: dict
      contains:
        vcpus:
          description: vCPU maximum, current, enabled ids, placement, per-vCPU details and topology.
          type: dict
          sample:
            maximum: 8
            current: 2
            enabled: [0, 1]
            placement: static
            details: [{id: 0, enabled: true, hotpluggable: false, order: 1}]
            topology: {sockets: 2, dies: 1, cores: 4, threads: 1}
        numa_cells:
          description: Guest NUMA cells with their vCPU ids, memory and the vCPUs enabled in each.
          type: list
          elements: dict
          sample: [{id: 0, cpus: [0, 1, 2, 3], cpuset: "0-3", memory_mib: 256, vcpus_enabled: [0, 1]}]
        pinning:
          description: vCPU, emulator and iothread pinning to host CPUs, and the memory placement (numatune).
          type: dict
        memory:
          description:
            - Memory in MiB, total (V(total_mib)), balloon target (V(current_mib)), C(maxMemory) (V(max_mib)),
              memory added by devices (V(hotplugged_mib)), slots (V(total), V(used), V(free)), memory devices and balloon model.
          type: dict
          sample:
            total_mib: 512
            current_mib: 512
            max_mib: 4096
            hotplugged_mib: 0
            slots: {total: 8, used: 0, free: 8}
            devices: []
            balloon: virtio
        guest_agent_channel:
          description: Whether the guest agent channel is defined and (live only) connected.
          type: dict
    guest:
      description:
        - The guest's own view through the guest agent, when O(guest_agent=true) and the domain runs.
        - V(vcpus.available) is false with a V(reason) when the agent cannot be asked.
      type: dict
      returned: when the domain is running and O(guest_agent=true)
      sample:
        vcpus: {available: true, present: [0, 1], online: [0, 1], offlinable: [1], online_count: 2, online_cpulist: "0-1"}
    qemu:
      description: QEMU's own view, when O(raw_queries=true) and the domain runs.
      type: dict
      returned: when the domain is running and O(raw_queries=true)
      sample: {available: true, vcpus_present: [0, 1], memory_devices: {}}
    consistency:
      description:
        - Comparison of libvirt's enabled vCPUs, QEMU's present vCPUs and the guest's online count.
        - V(stale_in_libvirt) lists vCPUs libvirt still shows that QEMU no longer has.
      type: dict
      returned: when the domain is running and O(raw_queries=true)
      sample:
        vcpus: {agree: true, libvirt_enabled: [0, 1], qemu_present: [0, 1], guest_online_count: 2,
                stale_in_libvirt: [], unknown_to_libvirt: []}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.hotplug.plugins.module_utils._common.argspec import URI_ARGS, argument_spec
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import run_module
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.guest_agent import guest_memory, guest_vcpus
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import (
    LibvirtSession, call, conn_uri, lookup_domain,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.qemu_monitor import (
    QemuMonitorUnavailable, qemu_memory_devices, qemu_vcpus,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu.verify import compare_vcpu_views


def describe_domain(dom, with_guest_agent, with_raw_queries):
    snapshot = read_domain(dom)
    entry = snapshot.to_dict()
    if not snapshot.active:
        return entry
    if with_guest_agent:
        entry['guest'] = dict(vcpus=guest_vcpus(dom, snapshot.live))
    if with_raw_queries:
        entry.setdefault('guest', {})['memory'] = guest_memory(dom, snapshot.live)
        try:
            present = qemu_vcpus(dom)
            entry['qemu'] = dict(available=True, vcpus_present=sorted(present),
                                 memory_devices=qemu_memory_devices(dom))
        except QemuMonitorUnavailable as exc:
            present = None
            entry['qemu'] = dict(available=False, reason=str(exc))
        guest_view = entry.get('guest', {}).get('vcpus', {})
        entry['consistency'] = dict(vcpus=compare_vcpu_views(
            snapshot.live.enabled_vcpu_ids,
            sorted(present) if present is not None else None,
            guest_view.get('online_count') if guest_view.get('available') else None,
        ))
    return entry


def gather(module):
    params = module.params
    with LibvirtSession(params['uri']) as conn:
        if params['name']:
            domains = [lookup_domain(conn, params['name'])]
        else:
            domains = call('listing domains on %s' % conn_uri(conn), conn.listAllDomains, 0)
        entries = [describe_domain(dom, params['guest_agent'], params['raw_queries']) for dom in domains]
        return dict(changed=False, uri=conn_uri(conn), domains=sorted(entries, key=lambda d: d['name']))


def main():
    module = AnsibleModule(argument_spec=argument_spec(dict(
        name=dict(type='str', aliases=['domain']),
        guest_agent=dict(type='bool', default=True),
        raw_queries=dict(type='bool', default=False),
    ), URI_ARGS), supports_check_mode=True)
    run_module(module, gather)


if __name__ == '__main__':
    main()
