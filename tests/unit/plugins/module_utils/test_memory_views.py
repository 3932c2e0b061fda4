"""Comparing libvirt's, QEMU's and the guest's view of memory devices, and the device XML the module sends."""
from __future__ import annotations

import pytest
from lxml import etree

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import MemoryDevice, parse_domain_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.devices import (
    dimm_xml, existing_device_xml, virtio_mem_xml, with_requested,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.verify import compare_memory_views

MIB = 1024
BLOCK = 128 * 1024 * 1024
BASE = 4 * 1024 ** 3


def dimm(alias, size_mib=512):
    return MemoryDevice(model='dimm', alias=alias, size_kib=size_mib * MIB, node=0, slot=0, base=hex(BASE))


def vmem(alias, requested_mib, current_mib=None):
    return MemoryDevice(model='virtio-mem', alias=alias, size_kib=1024 * MIB, node=0, slot=None, base=None,
                        requested_kib=requested_mib * MIB, current_kib=None if current_mib is None else current_mib * MIB,
                        block_kib=2048)


def qemu_dimm(size_mib=512, addr=BASE):
    return dict(type='dimm', size=size_mib * 1024 * 1024, addr=addr, max_size=None)


def qemu_vmem(plugged_mib, addr=BASE):
    return dict(type='virtio-mem', size=plugged_mib * 1024 * 1024, addr=addr, max_size=1024 * 1024 * 1024,
                requested_size=None)


def blocks(online_ids, offline_ids=()):
    return dict(available=True, block_bytes=BLOCK, online=list(online_ids), offline=list(offline_ids))


BOOT = list(range(4))        # 512 MiB boot memory
DIMM_BLOCKS = list(range(32, 36))  # 512 MiB at 4 GiB


@pytest.mark.parametrize('devices, qemu, guest, agree, detail', [
    # the guest onlined every block of the DIMM
    ([dimm('dimm0')], {'dimm0': qemu_dimm()}, blocks(BOOT + DIMM_BLOCKS), True, 512),
    # one block still offline
    ([dimm('dimm0')], {'dimm0': qemu_dimm()}, blocks(BOOT + DIMM_BLOCKS[:3], DIMM_BLOCKS[3:]), False, 384),
    # virtio-mem: blocks online in the device range equal the requested size
    ([vmem('virtiomem0', 256, 256)], {'virtiomem0': qemu_vmem(256)}, blocks(BOOT + [32, 33]), True, 256),
    # virtio-mem: the guest driver has not plugged everything yet
    ([vmem('virtiomem0', 512, 256)], {'virtiomem0': qemu_vmem(256)}, blocks(BOOT + [32, 33]), False, 256),
    # virtio-mem shrunk to nothing
    ([vmem('virtiomem0', 0, 0)], {'virtiomem0': qemu_vmem(0)}, blocks(BOOT), True, 0),
    # virtio-mem asked for 200 MiB (set outside the module): two memory blocks online, one of them in part
    ([vmem('virtiomem0', 200, 200)], {'virtiomem0': qemu_vmem(200)}, blocks(BOOT + [32, 33]), True, 256),
    ([vmem('virtiomem0', 200, 200)], {'virtiomem0': qemu_vmem(200)}, blocks(BOOT + [32]), False, 128),
])
def test_device_views(devices, qemu, guest, agree, detail):
    view = compare_memory_views(devices, qemu, guest)
    assert view['agree'] is agree
    assert view['devices'][0]['guest_online_mib'] == detail
    assert view['guest_view'] and view['qemu_view']


def test_boot_blocks_are_not_judged():
    # boot memory offline in the guest is the guest's business, not a hotplug device's
    view = compare_memory_views([dimm('dimm0')], {'dimm0': qemu_dimm()}, blocks(DIMM_BLOCKS, BOOT))
    assert view['agree'] is True


def test_libvirt_lagging_behind_qemu_for_virtio_mem():
    view = compare_memory_views([vmem('virtiomem0', 256, 384)], {'virtiomem0': qemu_vmem(256)},
                                blocks(BOOT + [32, 33]))
    assert view['agree'] is False
    assert view['devices'][0]['libvirt_current_mib'] == 384


def test_stale_and_unknown_devices():
    view = compare_memory_views([dimm('dimm0'), dimm('dimm1', 256)], {'dimm0': qemu_dimm(), 'dimm2': qemu_dimm()},
                                blocks(BOOT + DIMM_BLOCKS))
    assert view['agree'] is False
    assert view['stale_in_libvirt'] == ['dimm1'] and view['unknown_to_libvirt'] == ['dimm2']


def test_unknown_guest_view_is_not_agreement():
    view = compare_memory_views([dimm('dimm0')], {'dimm0': qemu_dimm()},
                                dict(available=False, reason='the guest agent is not connected'))
    assert view['agree'] is None and view['guest_view'] is False
    assert compare_memory_views([], {}, None)['agree'] is True


# --- device XML ------------------------------------------------------------------------

LIVE = """<domain><name>d</name><memory unit='KiB'>1572864</memory><devices>
<memory model='dimm'><target><size unit='KiB'>524288</size><node>0</node></target><alias name='dimm0'/>
<address type='dimm' slot='0' base='0x100000000'/></memory>
<memory model='virtio-mem'><target><size unit='KiB'>1048576</size><node>1</node><block unit='KiB'>2048</block>
<requested unit='KiB'>262144</requested><current unit='KiB'>262144</current></target><alias name='virtiomem0'/>
<address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></memory>
</devices></domain>"""


def test_new_device_xml():
    dimm_el = etree.fromstring(dimm_xml(512 * MIB, 1))
    assert (dimm_el.get('model'), dimm_el.findtext('target/size'), dimm_el.find('target/size').get('unit'),
            dimm_el.findtext('target/node')) == ('dimm', str(512 * MIB), 'KiB', '1')
    vm_el = etree.fromstring(virtio_mem_xml(3584 * MIB, 0, 2048, 512 * MIB))
    assert vm_el.get('model') == 'virtio-mem'
    assert [vm_el.findtext('target/' + t) for t in ('size', 'node', 'block', 'requested')] == [
        str(3584 * MIB), '0', '2048', str(512 * MIB)]


def test_existing_device_is_passed_back_as_listed():
    model = parse_domain_xml(LIVE)
    text = existing_device_xml(LIVE, 0, model.memory_devices[0])
    element = etree.fromstring(text)
    assert element.find('address').get('base') == '0x100000000' and element.find('alias').get('name') == 'dimm0'
    # a position that holds another device is refused
    assert existing_device_xml(LIVE, 1, model.memory_devices[0]) is None
    assert existing_device_xml(LIVE, 5, model.memory_devices[0]) is None


def test_with_requested_keeps_identity():
    model = parse_domain_xml(LIVE)
    updated = etree.fromstring(with_requested(existing_device_xml(LIVE, 1, model.memory_devices[1]), 0))
    assert updated.findtext('target/requested') == '0'
    assert updated.find('alias').get('name') == 'virtiomem0' and updated.find('address').get('slot') == '0x04'
