# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):

    # Every module: check mode and diff mode in full (see INFO_MODULE for *_info modules).  Each module sets the
    # support of idempotent itself.
    DOCUMENTATION = r'''
options: {}
attributes:
  idempotent:
    description:
      - When run twice in a row with the same arguments, the second run changes nothing and reports C(changed=false).
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
    support: full
'''

    # Read-only *_info modules: list it before kvm.hotplug.attributes, whose check_mode and diff_mode it overrides
    # (what a module or an earlier fragment says wins over a later fragment).
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    details: This module never changes anything.
  diff_mode:
    support: N/A
    details: This module never changes anything.
'''

    # Modules listed in the kvm.hotplug.libvirt action group of meta/runtime.yml.
    ACTIONGROUP_LIBVIRT = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/kvm.hotplug.libvirt) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - kvm.hotplug.libvirt
'''
