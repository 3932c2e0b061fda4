# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The XML of memory devices: new DIMM and virtio-mem devices, and existing ones taken from a domain XML.

libvirt finds the device to detach or update by comparing the XML it is
given with the domain's devices (model, size, node, address, alias), so
existing devices are always passed back exactly as the domain XML lists them.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_edit import set_requested
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import etree, parse_domain_xml


def _target(device, size_kib, node):
    target = etree.SubElement(device, 'target')
    etree.SubElement(target, 'size', unit='KiB').text = str(size_kib)
    etree.SubElement(target, 'node').text = str(node)
    return target


def dimm_xml(size_kib, node):
    """A new DIMM of size_kib on guest NUMA cell `node`; libvirt picks slot, address and alias."""
    device = etree.Element('memory', model='dimm')
    _target(device, size_kib, node)
    return etree.tostring(device, encoding='unicode')


def virtio_mem_xml(size_kib, node, block_kib, requested_kib):
    """A new virtio-mem device that can grow to size_kib, asking the guest to plug requested_kib now."""
    device = etree.Element('memory', model='virtio-mem')
    target = _target(device, size_kib, node)
    etree.SubElement(target, 'block', unit='KiB').text = str(block_kib)
    etree.SubElement(target, 'requested', unit='KiB').text = str(requested_kib)
    return etree.tostring(device, encoding='unicode')


def device_element(domain_xml, index):
    """The index-th <memory> device of a domain XML, as an lxml element."""
    root = etree.fromstring(domain_xml.encode('utf-8') if isinstance(domain_xml, str) else domain_xml)
    devices = root.findall('devices/memory')
    if index >= len(devices):
        return None
    return devices[index]


def existing_device_xml(domain_xml, index, expected):
    """The index-th <memory> device's XML, or None unless it is still the device `expected` (a MemoryDevice).

    The plan names devices by position; this makes sure the position still
    holds the same device (model, size, node and, in the live XML, alias).
    """
    element = device_element(domain_xml, index)
    if element is None:
        return None
    model = parse_domain_xml(domain_xml)
    found = model.memory_devices[index]
    identity = ('model', 'size_kib', 'node', 'alias')
    if any(getattr(found, key) != getattr(expected, key) for key in identity):
        return None
    return etree.tostring(element, encoding='unicode')


def with_requested(device_xml, requested_kib):
    """A virtio-mem device's XML with a new <requested> size (what virsh update-memory-device sends)."""
    element = etree.fromstring(device_xml)
    set_requested(element, requested_kib)
    return etree.tostring(element, encoding='unicode')
