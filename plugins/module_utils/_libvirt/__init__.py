# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Everything that talks to libvirt, QEMU (through libvirt) and the guest agent, and the domain XML model.

connection (session, lookup, error translation), scope (live/config flags and reading one definition),
domain_model (the XML model, pure), snapshot (a domain's state at one moment and its summary, pure), domain_runtime (reading it),
metadata (the collection's namespaced domain metadata), qemu_monitor, guest_agent, resync (restarting libvirt
to resynchronize a stale view), tcg_hazard (the TCG unplugged-vCPU marker).

Private to the kvm.hotplug collection; not a public API.
"""
