#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: domain_migrate
short_description: Verified live migration of a libvirt domain to another host, with every pre-check
version_added: 0.2.0
description:
  - Moves the domain O(name) from the hypervisor at O(uri) to the one at O(dest_uri), live (O(live=true)) or, for a
    shut-off domain, its definition only (O(live=false)).
  - Before anything moves, every limit is checked and the task fails with one line naming the first one that does not
    hold. The checks are the domain's state and running job, libvirt's view against QEMU's, a domain of the same
    name or UUID on the destination, the destination's hypervisor type and version, its emulator and machine type,
    the definition the destination keeps against its domain capabilities (above all the maximum vCPUs of the machine,
    so a domain with vCPUs still to hot-add can hot-add them there), the
    domain's C(maxMemory) and memory slots, its CPU model against the destination (C(compareHypervisorCPU)), the
    destination's free memory for the domain's boot memory plus its hot-added DIMMs and virtio-mem, the host CPUs
    it is pinned to, and, with O(persistent=true), that its persistent definition holds the vCPUs and memory devices
    it runs with. All checks are returned in RV(checks) with their values.
  - The migration is peer-to-peer; the source daemon connects to O(dest_uri) itself.
  - Afterwards the module reads QEMU (C(query-cpus-fast), C(query-memory-devices)) and the guest agent on the
    destination and compares them with what it read on the source before; hot-added vCPUs and DIMMs must be there,
    and in the destination's persistent definition.
  - If the migration fails, both hosts are read again and the result says where the domain is. If the destination
    daemon dies, or O(timeout) aborts the migration, the guest is still running on the source, and RV(outcome) says so.
  - A domain that already runs on the destination and not on the source is left alone (C(changed=false)).
author:
  - kvm.hotplug developers (@kvm-hotplug)
options:
  dest_uri:
    description:
      - libvirt URI of the destination hypervisor, for example V(qemu+tcp://hv2/system) or V(qemu+ssh://root@hv2/system).
      - The module opens it for its checks and verification, and the source daemon opens it for the migration, so it
        must work from both the managed host and the source hypervisor.
    type: str
    required: true
  live:
    description:
      - Migrate the running domain. V(false) moves the definition of a shut-off domain (an offline migration).
    type: bool
    default: true
  persistent:
    description:
      - Define the domain persistently on the destination, from the source's persistent definition.
      - The source's persistent definition must then hold the vCPUs and memory devices the domain runs with (hot-plug them
        with C(config=true)); otherwise the task is refused, because the destination would lose them at the next boot.
    type: bool
    default: true
  undefine_source:
    description: Undefine the domain on the source once it runs on the destination.
    type: bool
    default: true
  bandwidth:
    description: Migration bandwidth limit in MiB/s.
    type: int
  max_downtime_ms:
    description:
      - The longest pause of the guest, in milliseconds, that QEMU may take for the switch-over.
      - Set on the source domain before the migration starts; it stays set there if the migration fails.
    type: int
  auto_converge:
    description: Let QEMU throttle the guest's vCPUs when its memory changes faster than it can be copied.
    type: bool
    default: false
  parallel_connections:
    description: Copy memory over this many connections at once (QEMU multifd).
    type: int
  timeout:
    description:
      - Seconds the whole migration may take. When it passes, the module does O(timeout_action).
      - Without it the migration takes as long as it takes.
    type: int
  timeout_action:
    description:
      - What to do when O(timeout) passes.
      - V(abort) cancels the migration; the guest goes on running on the source, and the task fails with
        RV(outcome=aborted).
      - V(postcopy) switches to post-copy, so the guest runs on the destination at once and fetches the rest of its memory
        from the source. The domain must run on a host whose kernel allows userfaultfd on the destination. A post-copy
        that fails halfway leaves the guest paused on the destination, because neither host has all its memory.
      - V(suspend) pauses the guest on the source, so its memory stops changing and the copy ends; libvirt resumes it
        on the destination.
    type: str
    choices: [abort, postcopy, suspend]
    default: abort
  migrate_uri:
    description:
      - The address the migration data goes to, for example V(tcp://10.0.0.2) (libvirt's C(VIR_MIGRATE_PARAM_URI)).
      - Without it libvirt uses the destination's C(migration_host), else its host name.
    type: str
extends_documentation_fragment:
  - kvm.hotplug.libvirt
  - kvm.hotplug.libvirt.DOMAIN
  - kvm.hotplug.attributes
  - kvm.hotplug.attributes.ACTIONGROUP_LIBVIRT
attributes:
  idempotent:
    support: full
    details: A domain that already runs on the destination (and not on the source) is not migrated again.
notes:
  - O(uri) is the source hypervisor.
  - "The module's own domain metadata: libvirt migrates metadata with the definitions it belongs to. The module clears
    its TCG-unplug marker (a property of the source's QEMU process; the destination starts a new one) and its
    evacuation record (it names the source host's CPUs) on the destination after a migration, and returns what was on
    the source in RV(metadata)."
  - In check mode nothing moves; the checks are made and returned with RV(outcome=check_mode).
seealso:
  - module: kvm.hotplug.vcpu_hotplug
    description: With O(persistent=true), vCPUs hot-added live must also be in the persistent definition (C(config=true)).
  - module: kvm.hotplug.memory_hotplug
    description: The same holds for hot-added DIMMs and virtio-mem devices; they count in the destination's free memory.
'''

EXAMPLES = r'''
- name: Move web01 from hv1 to hv2, live, within 5 minutes or not at all
  kvm.hotplug.domain_migrate:
    name: web01
    uri: qemu:///system
    dest_uri: qemu+tcp://hv2/system
    migrate_uri: tcp://10.0.0.2
    timeout: 300
    timeout_action: abort

- name: Only check whether db01 could move to hv3
  kvm.hotplug.domain_migrate:
    name: db01
    dest_uri: qemu+ssh://root@hv3/system
  check_mode: true
  register: could

- name: Move a busy guest, pausing it when the copy does not converge within 2 minutes
  kvm.hotplug.domain_migrate:
    name: batch01
    dest_uri: qemu+tcp://hv2/system
    auto_converge: true
    max_downtime_ms: 500
    timeout: 120
    timeout_action: suspend

- name: Move the definition of a shut-off domain
  kvm.hotplug.domain_migrate:
    name: spare01
    dest_uri: qemu+tcp://hv2/system
    live: false
'''

RETURN = r'''
outcome:
  description:
    - V(migrated) the domain runs on the destination (and not on the source).
    - V(already_there) it already ran on the destination and not on the source; nothing was done.
    - V(postcopy) it runs on the destination after O(timeout_action=postcopy) switched to post-copy.
    - V(aborted) O(timeout) passed and the migration was cancelled; the guest runs on the source. The task fails.
    - V(failed_source_running) the migration failed; the guest runs on the source and not on the destination. The task fails.
    - V(failed) the migration failed and the domain is not running on the source alone; see RV(after). The task fails.
    - V(check_mode) in check mode, when every check passed and the domain would move.
    - Null when a check refused the migration.
  returned: always
  type: str
  sample: migrated
checks:
  description: Each check by name, with C(ok) (null when it did not apply), its C(value) and the C(limit) it names when it fails.
  returned: always
  type: dict
  sample: {bootable: {ok: true, value: {vcpu_max: {domain: 8, destination: 255}, problems: []}, limit: null}}
timings:
  description:
    - C(total_s) seconds the task took, C(migration_s) the migration call, C(downtime_ms) the guest's pause at the
      switch-over and C(job_elapsed_ms) the migration job's duration, both from libvirt's job statistics.
  returned: always
  type: dict
  sample: {total_s: 4.1, migration_s: 3.0, downtime_ms: 44, job_elapsed_ms: 1483}
transferred:
  description: From libvirt's job statistics, in bytes (null where unknown).
  returned: always
  type: dict
  sample: {data_total_bytes: 671621120, data_processed_bytes: 122357733, memory_bps: 176380151, memory_iterations: 3}
before:
  description: The domain on the C(source) and the C(destination) before the task (C(defined), C(state), C(persistent)).
  returned: always
  type: dict
after:
  description: The domain on the C(source) and the C(destination) after the task, read again from both daemons.
  returned: when the domain did or would move, or was already there
  type: dict
  sample: {source: {defined: false}, destination: {defined: true, state: running, persistent: true}}
verify:
  description:
    - QEMU's and the guest agent's views on the source before (C(before)) and on the destination after (C(after)),
      C(differences) between them and with the destination's persistent definition, and C(agree).
  returned: when the domain moved
  type: dict
metadata:
  description: The module's own metadata on the source before (C(before)) and what was cleared on the destination (C(cleared)).
  returned: when a migration was attempted
  type: dict
attempt:
  description: The migration call (C(ok), libvirt's C(error)) and the timeout action taken, if any, after how many seconds.
  returned: when a migration was attempted
  type: dict
job:
  description: libvirt's statistics of the migration job (the completed job on the destination after a success).
  returned: when a migration was attempted
  type: dict
flags:
  description: The libvirt migration flags used (or that would be used), lower case without C(VIR_MIGRATE_).
  returned: always
  type: list
  elements: str
  sample: [peer2peer, live, persist_dest, undefine_source]
notes:
  description:
    - Things worth knowing that did not stop the task, such as a O(timeout_action) given without O(timeout), or a
      shut-off definition of the domain still on the source while it runs on the destination.
  returned: always
  type: list
  elements: str
  sample: ["timeout_action suspend has no effect without timeout"]
elapsed:
  description: Seconds the module took.
  returned: always
  type: float
'''

from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import change_main
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.run import MigrationChange


def main():
    change_main(MigrationChange)


if __name__ == '__main__':
    main()
