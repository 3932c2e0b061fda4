#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: rebalance_apply
short_description: Give every listed VM of a libvirt host its vCPU and memory target, live, in one invocation
version_added: 0.2.0
description:
  - Makes each domain in O(targets) have the vCPUs and memory stated there, all in one module run, so a host with
    many VMs pays Ansible's per-task cost once.
  - Removals go first, then additions, so the host is never more committed during the run than before or after it.
  - Each change is M(kvm.hotplug.vcpu_hotplug)'s or M(kvm.hotplug.memory_hotplug)'s, with their checks, domain lock,
    verification from libvirt, QEMU and the guest, and re-read after a failure. A failed change stops the ones after it;
    the result lists them in RV(skipped).
  - Afterwards every domain is read again from libvirt and the guest agent, and RV(vms) reports what they say.
attributes:
  idempotent:
    support: full
    details: A second run finds every domain at its target and changes nothing.
author:
  - kvm.hotplug developers (@kvm-hotplug)
options:
  targets:
    description:
      - One entry per domain, C(name) with C(vcpus) and/or C(memory_mib) (the total memory, boot plus DIMMs).
      - C(vcpus_off), a list of vCPU ids, names the vCPUs a decrease removes, in that order; without it the
        highest-numbered unpinned ones go (M(kvm.hotplug.vcpu_hotplug)'s O(kvm.hotplug.vcpu_hotplug#module:count)).
      - Usually the RV(kvm.hotplug.rebalance_plan#module:plan.vms) entries' C(name) and C(target).
    type: list
    elements: dict
    required: true
  timeout:
    description: Seconds each change may take, with its guest's view (see M(kvm.hotplug.vcpu_hotplug)).
    type: int
    default: 120
  wait_for_guest:
    description: After each change, wait until the guest agent shows it (the guest's own view).
    type: bool
    default: true
  config:
    description: Change the persistent definition too, so the allocation survives a restart.
    type: bool
    default: true
extends_documentation_fragment: [kvm.hotplug.libvirt, kvm.hotplug.attributes, kvm.hotplug.attributes.ACTIONGROUP_LIBVIRT]
seealso:
  - module: kvm.hotplug.rebalance_plan
  - module: kvm.hotplug.vcpu_hotplug
  - module: kvm.hotplug.memory_hotplug
'''

EXAMPLES = r'''
- name: Two VMs to their targets, in one invocation
  kvm.hotplug.rebalance_apply:
    targets:
      - {name: web, vcpus: 4}
      - {name: batch, vcpus: 1, memory_mib: 1024}
'''

RETURN = r'''
steps:
  description: The changes made (or, in check mode, predicted), in order, each with C(name), C(resource), C(before),
    C(after), C(changed), C(failed) and C(outcome).
  type: list
  elements: dict
  returned: always
vms:
  description: Per domain, C(before) and C(after) (C(vcpus), C(memory_mib), C(guest_online_vcpus)) as read from libvirt
    and the guest agent, the C(target), C(changed) and its C(steps).
  type: list
  elements: dict
  returned: always
skipped:
  description: Steps not run because an earlier one failed.
  type: list
  elements: dict
  returned: always
uri:
  description: The libvirt URI.
  type: str
  returned: always
'''

from ansible_collections.kvm.hotplug.plugins.module_utils._placement.run import apply_main


def main():
    apply_main()


if __name__ == '__main__':
    main()
