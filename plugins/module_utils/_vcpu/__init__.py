# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vcpu_hotplug: plan (pure: request + snapshot -> plan or refusal), apply (the libvirt calls), verify (libvirt's,
QEMU's and the guest's views, the outcome and the stale-view definition), run (the runner's hooks).

Private to the kvm.hotplug collection; not a public API.
"""
