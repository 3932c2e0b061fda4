# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):

    # The libvirt connection every module of the collection takes.
    DOCUMENTATION = r'''
options:
  uri:
    description:
      - libvirt connection URI of the hypervisor, for example V(qemu:///system) or V(qemu+ssh://root@host/system).
      - When not set, the E(LIBVIRT_DEFAULT_URI) environment variable of the managed host is used,
        and V(qemu:///system) when that is not set either.
      - Set it once for all modules of the collection with C(module_defaults) and the group C(group/kvm.hotplug.libvirt).
    type: str
requirements:
  - libvirt-python (the C(libvirt) Python binding) on the managed host
  - lxml on the managed host
'''

    # The domain a module works on: with the uri above, _common/argspec.py DOMAIN_ARGS (name and uri).
    DOMAIN = r'''
options:
  name:
    description:
      - Name of the domain.
    type: str
    required: true
    aliases: [domain]
'''
