# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's own records in a domain's metadata, one XML element per namespace and scope.

Two records live there: the TCG marker (vCPUs a TCG QEMU removed without finalizing them, live only,
_libvirt/tcg_hazard.py) and the evacuation record (pins host_resource_offline moved, live and config,
_host/evacuation.py).  One error policy for both: a record that is not there (or a definition that
does not exist, such as the live one of a domain that is not running) reads as None; any other libvirt
error is a HotplugError naming the domain and the record.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import traceback
from collections import namedtuple

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import error_text, is_error, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.scope import affect_flag

Namespace = namedtuple('Namespace', 'uri prefix what')

TCG_HAZARD = Namespace('https://kvm-hotplug.invalid/xmlns/tcg-hazard/1', 'kvmhp', 'the TCG unplugged-vCPU marker')
EVACUATION = Namespace('https://kvm-hotplug.invalid/host-evacuation', 'kvmhp-evac', 'the evacuation')

_ABSENT = ('VIR_ERR_NO_DOMAIN_METADATA', 'VIR_ERR_OPERATION_INVALID')


def read_metadata(dom, namespace, scope):
    """The record's XML text in one scope's definition, or None when there is none."""
    try:
        return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace.uri, affect_flag(scope))
    except libvirt.libvirtError as exc:
        if is_error(exc, *_ABSENT):
            return None
        raise HotplugError('reading %s in the metadata of domain %s (%s): %s'
                           % (namespace.what, dom.name(), scope, error_text(exc)), exception=traceback.format_exc())


def write_metadata(dom, namespace, scope, text):
    """Write the record (an XML element as text) to one scope's definition; text=None removes it."""
    try:
        if text is None:
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, namespace.uri, affect_flag(scope))
        else:
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, text, namespace.prefix, namespace.uri,
                            affect_flag(scope))
    except libvirt.libvirtError as exc:
        if text is None and is_error(exc, 'VIR_ERR_NO_DOMAIN_METADATA'):
            return
        raise HotplugError('recording %s in the metadata of domain %s (%s): %s'
                           % (namespace.what, dom.name(), scope, error_text(exc)), exception=traceback.format_exc())
