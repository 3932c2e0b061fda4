# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The persistent definition a planned change will leave: the same edits libvirt makes, on a copy of the XML.

Each function takes a domain XML and returns a new one.  They serve two ends:
the result is checked against the hypervisor's limits before anything is
written (_definition_check), and compared with what libvirt really kept after
the write.  A new vCPU maximum is written from here as a whole definition,
because libvirt's own setVcpusFlags places new vCPUs in guest NUMA cells by
itself, without saying so.

Pure: no libvirt calls.  Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import etree


def _parse(xml_text):
    return etree.fromstring(xml_text.encode('utf-8') if isinstance(xml_text, str) else xml_text)


def _text(root):
    return etree.tostring(root, encoding='unicode')


def with_vcpu_maximum(xml_text, maximum, topology=None, cells=None):
    """A definition with `maximum` vCPUs: new ones disabled and hotpluggable, topology and cells as given.

    topology: a Topology for <cpu><topology> (None leaves it); cells: NumaCell tuples whose cpus replace the
    cells' cpus attributes (None leaves them).
    """
    root = _parse(xml_text)
    vcpu = root.find('vcpu')
    old_maximum = int(vcpu.text)
    vcpu.text = str(maximum)
    if int(vcpu.get('current', old_maximum)) > maximum or vcpu.get('current') is None:
        vcpu.set('current', str(min(int(vcpu.get('current', old_maximum)), maximum)))
    listed = root.find('vcpus')
    if listed is not None:
        for entry in listed.findall('vcpu'):
            if int(entry.get('id')) >= maximum:
                listed.remove(entry)
        for vcpu_id in range(old_maximum, maximum):
            etree.SubElement(listed, 'vcpu', id=str(vcpu_id), enabled='no', hotpluggable='yes')
    if topology is not None:
        element = root.find('cpu/topology')
        element.set('sockets', str(topology.sockets))
    if cells is not None:
        by_id = dict((cell.id, cell) for cell in cells)
        for element in root.findall('cpu/numa/cell'):
            element.set('cpus', format_cpulist(by_id[int(element.get('id', 0))].cpus))
    return _text(root)


def with_enabled_vcpus(xml_text, enabled):
    """A definition whose enabled vCPUs are exactly `enabled` (what setVcpu on the config leaves)."""
    root = _parse(xml_text)
    enabled = set(enabled)
    root.find('vcpu').set('current', str(len(enabled)))
    listed = root.find('vcpus')
    if listed is None and enabled != set(range(len(enabled))):
        # libvirt lists every vCPU once any but the first `current` ones is enabled
        listed = etree.Element('vcpus')
        root.find('vcpu').addnext(listed)
        for vcpu_id in range(int(root.find('vcpu').text)):
            etree.SubElement(listed, 'vcpu', id=str(vcpu_id))
    if listed is not None:
        for entry in listed.findall('vcpu'):
            entry.set('enabled', 'yes' if int(entry.get('id')) in enabled else 'no')
    return _text(root)


def with_memory_device(xml_text, device_xml):
    """A definition with one more memory device."""
    root = _parse(xml_text)
    root.find('devices').append(_parse(device_xml))
    return _text(root)


def without_memory_device(xml_text, index):
    """A definition without its index-th <memory> device."""
    root = _parse(xml_text)
    device = root.findall('devices/memory')[index]
    device.getparent().remove(device)
    return _text(root)


def set_requested(device, requested_kib):
    """Set a virtio-mem <memory> element's <target><requested> size, in place."""
    target = device.find('target')
    requested = target.find('requested')
    if requested is None:
        requested = etree.SubElement(target, 'requested')
    requested.set('unit', 'KiB')
    requested.text = str(requested_kib)


def with_requested_size(xml_text, index, requested_kib):
    """A definition whose index-th <memory> device (virtio-mem) is asked to plug requested_kib."""
    root = _parse(xml_text)
    set_requested(root.findall('devices/memory')[index], requested_kib)
    return _text(root)
