# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writing a persistent definition safely: check it first, compare it after, put the old one back on a mismatch.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_check import (
    capabilities_query, definition_differences, definition_problems, parse_domain_capabilities,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import call, libvirt


def read_domain_capabilities(conn, xml_text):
    """The DomainCapabilities for the emulator, arch, machine and virt type of a domain XML."""
    emulator, arch, machine, virt_type = capabilities_query(xml_text)
    text = call('reading the domain capabilities of %s %s machine %s (%s)' % (emulator, arch, machine, virt_type),
                conn.getDomainCapabilities, emulator, arch, machine, virt_type, 0)
    return parse_domain_capabilities(text)


def refuse_unbootable(conn, name, xml_text, what, hint=None):
    """Raise HotplugError naming every limit the definition breaks; nothing has been written yet."""
    problems = definition_problems(xml_text, read_domain_capabilities(conn, xml_text))
    if problems:
        raise HotplugError('%s would leave domain %s with a persistent definition it cannot start with: %s.%s '
                           'Nothing was changed.' % (what, name, '; '.join(problems), ' ' + hint if hint else ''),
                           problems=problems)


class PersistentDefinition(object):
    """The persistent definition of one domain through a change.

    `original` is read once, before the first write (with secrets, so that
    putting it back loses nothing); `expected` is what the definition should
    be after the writes made so far.
    """

    def __init__(self, conn, dom, name):
        self.conn = conn
        self.dom = dom
        self.name = name
        self.original = self._read()
        self.expected = self.original

    def _read(self):
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        return call('reading the persistent definition of domain %s' % self.name, self.dom.XMLDesc, flags)

    def refuse_unbootable(self, final_xml, what, hint=None):
        refuse_unbootable(self.conn, self.name, final_xml, what, hint)

    def define(self, xml_text, what):
        """Write xml_text as the persistent definition, then make sure libvirt kept it."""
        call('%s of domain %s (defining the new persistent definition)' % (what, self.name),
             self.conn.defineXML, xml_text)
        self.written(xml_text, what)

    def written(self, planned_xml, what):
        """After a write: the definition must be the planned one, else the original is put back."""
        differences = definition_differences(planned_xml, self._read())
        if not differences:
            self.expected = planned_xml
            return
        call('putting back the persistent definition of domain %s' % self.name, self.conn.defineXML, self.original)
        raise HotplugError('libvirt wrote the persistent definition of domain %s differently than planned for %s '
                           '(%s); the previous persistent definition was put back'
                           % (self.name, what, '; '.join(differences)), differences=differences)
