#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: hypervisor_migration_apply
short_description: Run the live migrations of a hypervisor_migration plan, wave by wave, with bounded parallelism
version_added: 0.3.0
description:
  - Runs RV(kvm.hotplug.hypervisor_migration_plan#module:migrations) in one invocation. The migrations of one wave run
    at once; the waves run one after the other, so no more than the plan's C(parallel) leave the source and no more
    than C(per_destination) enter one destination at a time.
  - Each migration is M(kvm.hotplug.domain_migrate)'s, with its pre-checks, domain lock, verification of where the
    domain runs afterwards (never on both hosts, never on neither), and re-read after a failure.
  - A failed migration lets the other migrations of its wave finish and skips the later waves, which the result lists
    in RV(skipped); the task then fails naming the first failure. Running the plan again (after re-planning) resumes;
    a domain already on its destination is not migrated again.
attributes:
  idempotent:
    support: full
    details: A domain that already runs on its destination is reported C(already_there) and not moved.
author:
  - kvm.hotplug developers (@kvm-hotplug)
options:
  migrations:
    description:
      - Each with C(name), C(source), C(destination), C(source_uri) (the libvirt the domain runs on now, as this host
        reaches it; default O(uri)), C(dest_uri) and C(wave), as
        RV(kvm.hotplug.hypervisor_migration_plan#module:migrations) lists them.
    type: list
    elements: dict
    required: true
  policy:
    description:
      - M(kvm.hotplug.domain_migrate) options for every migration, C(bandwidth) (MiB/s), C(max_downtime_ms),
        C(auto_converge), C(parallel_connections), C(timeout) (seconds), C(timeout_action) (V(abort), V(postcopy) or
        V(suspend)), C(persistent) and C(undefine_source).
      - An unknown key or a bad value is refused before any migration.
    type: dict
    default: {}
extends_documentation_fragment: [kvm.hotplug.libvirt, kvm.hotplug.attributes, kvm.hotplug.attributes.ACTIONGROUP_LIBVIRT]
seealso:
  - module: kvm.hotplug.hypervisor_migration_plan
  - module: kvm.hotplug.domain_migrate
'''

EXAMPLES = r'''
- name: Run the evacuation planned before
  kvm.hotplug.hypervisor_migration_apply:
    migrations: "{{ evacuation.migrations }}"
    policy: {max_downtime_ms: 300, timeout: 600, timeout_action: abort}
'''

RETURN = r'''
migrations:
  description: One entry per migration run, in wave order, with C(name), C(source), C(destination), C(wave),
    C(changed), C(failed), C(outcome) (M(kvm.hotplug.domain_migrate)'s, such as V(migrated) or V(already_there)),
    C(downtime_ms), C(migration_s), C(total_s), C(after) (where the domain is defined and runs on both hosts, as read
    afterwards), C(runs_on) (the hosts it runs on as read afterwards, one of them unless something went wrong; null in
    check mode) and C(msg) when it failed.
  type: list
  elements: dict
  returned: always
skipped:
  description: The migrations of the waves after a failed one, not run, each with C(reason).
  type: list
  elements: dict
  returned: always
moved:
  description: The names of the domains that moved.
  type: list
  elements: str
  returned: always
'''

from ansible_collections.kvm.hotplug.plugins.module_utils._placement.evacuate_run import apply_main


def main():
    apply_main()


if __name__ == '__main__':
    main()
