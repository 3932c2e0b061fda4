# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The libvirt side of a scope (see _common/scope.py): its flags, and reading its definition.

affect_flag and xml_flags are the one place that turns 'live'/'config' into libvirt flags, and read_model
the one place that reads and parses a definition again, with one error policy: any failure is a
HotplugError naming the domain; a caller that polls catches it and treats the view as unknown.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.scope import LIVE
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import call, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import (
    DomainXMLError, parse_domain_xml,
)


def affect_flag(scope):
    """VIR_DOMAIN_AFFECT_LIVE or VIR_DOMAIN_AFFECT_CONFIG."""
    return libvirt.VIR_DOMAIN_AFFECT_LIVE if scope == LIVE else libvirt.VIR_DOMAIN_AFFECT_CONFIG


def xml_flags(scope):
    """The virDomainGetXMLDesc flags of a scope's definition."""
    return 0 if scope == LIVE else libvirt.VIR_DOMAIN_XML_INACTIVE


def read_xml(dom, scope, name, action=None):
    """The XML text of one definition; HotplugError("<action>: <libvirt's message>") when libvirt refuses."""
    what = 'live' if scope == LIVE else 'persistent'
    return call(action or 'reading the %s XML of domain %s' % (what, name), dom.XMLDesc, xml_flags(scope))


def parse_model(name, xml_text):
    """The DomainModel of an XML text; HotplugError naming the domain when it cannot be read."""
    try:
        return parse_domain_xml(xml_text)
    except DomainXMLError as exc:
        raise HotplugError('domain %s: %s' % (name, exc))


def read_model(dom, scope, name, action=None):
    """The DomainModel of one definition, read now."""
    return parse_model(name, read_xml(dom, scope, name, action))
