# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_migrate: facts (the request and the pure facts a plan reads), read (reading source and destination from
libvirt), plan (pure: facts -> plan or refusal), own_metadata (the collection's namespaced records, cleared on the
destination), apply (starting and watching the libvirt migration job), outcomes (where the domain ended up),
verify (both hosts re-read: the guest runs exactly once, and as it ran on the source), report (the result),
run (the runner's hooks).

Private to the kvm.hotplug collection; not a public API.
"""
