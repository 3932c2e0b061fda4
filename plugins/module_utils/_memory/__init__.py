# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""memory_hotplug: plan (pure: one definition + request -> actions or refusal), sizes (what a definition holds),
predict (check-mode prediction and result entries), devices (memory device XML), apply (the libvirt calls and
the waits for unplugs), verify (libvirt's, QEMU's and the guest's views compared), run (the runner's hooks).

Private to the kvm.hotplug collection; not a public API.
"""
