"""One fake hypervisor for unit tests: hosts by URI, and domains with pluggable vCPU, memory and pinning behaviour.

FakeHypervisor stands in for libvirt.open (the conftest fixture `hypervisor` installs it), so a test can have
several hosts (a migration's source and destination).  A domain is a libvirt_fakes.FakeDomain (identity, state,
job, XML, metadata) with one behaviour: SimDomain (vCPUs), MemoryDomain (memory devices, balloon),
PinnableDomain (pinning).  The real behaviour is proven by the integration tests against the lab.
"""
from __future__ import annotations

import json
import os

import libvirt
from lxml import etree

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import parse_domain_xml
from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import (
    FIXTURES, FakeDomain, FakeLibvirtError,
)
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_utils.domain_xml import domain_xml

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
MIB = 1024
BLOCK_BYTES = 128 * 1024 * 1024
HOTPLUG_BASE = 4 * 1024 ** 3


class FakeHypervisor(object):
    """Hosts by URI; open() is what libvirt.open returns.  With one host, every URI reaches it."""

    def __init__(self):
        self.hosts = {}

    def add_host(self, connection):
        self.hosts[connection.uri] = connection
        return connection

    def open(self, uri):
        if uri in self.hosts:
            return self.hosts[uri]
        if len(self.hosts) == 1:
            return next(iter(self.hosts.values()))
        raise FakeLibvirtError('Failed to connect socket to %s: No such file or directory' % uri,
                               libvirt.VIR_ERR_SYSTEM_ERROR)


class SimDomain(FakeDomain):
    """vCPU behaviour: a running domain that keeps libvirt's, the config's, QEMU's and the guest's vCPUs apart.

    `behaviour` says how an unplug goes: 'kvm' (the guest ejects, QEMU sends DEVICE_DELETED), 'tcg' (the guest
    ejects, no DEVICE_DELETED: libvirt times out and goes stale), 'late-event' (DEVICE_DELETED comes after
    libvirt's wait), 'stuck' (the guest never ejects).
    """

    def __init__(self, name='sim', enabled=(0, 1), behaviour='kvm', domain_type='kvm', add_fails=False, job=None,
                 uuid='11111111-2222-3333-4444-555555555555'):
        super(SimDomain, self).__init__(name, job=job, uuid=uuid)
        self.libvirt = set(enabled)
        self.config = set(enabled)
        self.qemu = set(enabled)
        self.guest = set(enabled)
        self.behaviour = behaviour
        self.domain_type = domain_type
        self.add_fails = add_fails
        self.metadata_xml = None
        self.writes = []
        self.config_maximum = 8
        self.config_shape = {}

    def define(self, xml):
        """A new persistent definition (what a new vCPU maximum is written as)."""
        model = parse_domain_xml(xml)
        self.writes.append(('define', model.vcpu_max))
        self.config = set(model.enabled_vcpu_ids)
        self.config_maximum = model.vcpu_max
        self.config_shape = dict(
            cells=tuple((c.id, format_cpulist(c.cpus), c.memory_kib) for c in model.numa_cells),
            topology=(model.topology.sockets, model.topology.dies, model.topology.cores, model.topology.threads))

    def XMLDesc(self, flags=0):
        self._deliver_late_event()
        inactive = flags & libvirt.VIR_DOMAIN_XML_INACTIVE
        enabled = self.config if inactive else self.libvirt
        xml = domain_xml(name=self._name, enabled=tuple(sorted(enabled)), domain_type=self.domain_type,
                         maximum=self.config_maximum if inactive else 8, **(self.config_shape if inactive else {}),
                         devices="<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' "
                                 "state='connected'/></channel>")
        return xml

    # changes
    def setVcpu(self, cpumap, state, flags):
        self.writes.append((cpumap, state, flags))
        ids = set(parse_cpulist(cpumap))
        if flags & libvirt.VIR_DOMAIN_AFFECT_CONFIG:
            self.config = self.config | ids if state else self.config - ids
            return 0
        if state:
            if self.add_fails:
                raise FakeLibvirtError('internal error: unable to execute QEMU command device_add')
            self.libvirt |= ids
            self.qemu |= ids
            self.guest |= ids
            return 0
        if self.behaviour == 'kvm':
            self.libvirt -= ids
            self.qemu -= ids
            self.guest -= ids
            return 0
        if self.behaviour in ('tcg', 'late-event'):
            self.qemu -= ids
            self.guest -= ids
        if self.behaviour == 'late-event':
            self.late_event = ids  # DEVICE_DELETED arrives after libvirt's 5 s wait
        raise FakeLibvirtError('Timed out during operation: vcpu unplug request timed out',
                               libvirt.VIR_ERR_OPERATION_TIMEOUT)

    def setVcpusFlags(self, count, flags):
        self.writes.append(('max', count, flags))
        return 0

    # views
    def _deliver_late_event(self):
        if getattr(self, 'late_event', None):
            self.libvirt -= self.late_event
            self.late_event = None

    def guestVcpus(self, flags=0):
        cpus = ','.join(str(i) for i in sorted(self.guest))
        return {'vcpus': cpus, 'online': cpus, 'offlinable': ','.join(str(i) for i in sorted(self.guest) if i)}

    def qmp(self, command_json):
        assert json.loads(command_json)['execute'] == 'query-cpus-fast'
        return json.dumps({'return': [{'cpu-index': i, 'thread-id': 100 + i} for i in sorted(self.qemu)]})

    def metadata(self, kind, uri, flags):
        if self.metadata_xml is None:
            raise FakeLibvirtError('metadata not found', libvirt.VIR_ERR_NO_DOMAIN_METADATA)
        return self.metadata_xml

    def setMetadata(self, kind, xml, key, uri, flags):
        self.metadata_xml = xml
        return 0

    def restart_libvirt(self):
        """What a libvirt daemon restart does: re-read the vCPUs from QEMU."""
        self.libvirt = set(self.qemu)


class MemoryDomain(FakeDomain):
    """Memory behaviour: a running domain whose memory devices change like libvirt's, with a scriptable guest.

    QEMU's query-memory-devices and the guest agent's memory blocks are computed from the live XML;
    `unplug` says what the guest does with a removal request: 'complete', 'pending' or 'reject'.
    """

    def __init__(self, name='lab-mem', unplug='complete', guest_onlines=True, balloon=True, **kwargs):
        with open(os.path.join(FIXTURES, 'mem-live.xml')) as handle:
            live = handle.read()
        config = live.replace(" id='13'", '').replace(" state='connected'", '')
        super(MemoryDomain, self).__init__(name, live_xml=live, config_xml=config, **kwargs)
        self.unplug = unplug              # 'complete', 'pending' or 'reject'
        self.guest_onlines = guest_onlines
        self.balloon = balloon
        self.writes = []

    # --- libvirt API -------------------------------------------------------------
    def attachDeviceFlags(self, xml, flags):
        self.writes.append(('attach', flags))
        for live in self._targets(flags):
            root = self._root(live)
            device = etree.fromstring(xml)
            model = device.get('model')
            size = int(device.findtext('target/size'))
            if live:
                index = len(root.findall("devices/memory[@model='%s']" % model))
                etree.SubElement(device, 'alias', name='%s%d' % (model.replace('-', ''), index))
                if model == 'dimm':
                    slot = min(set(range(8)) - set(int(a.get('slot')) for a in root.findall('devices/memory/address')))
                    etree.SubElement(device, 'address', type='dimm', slot=str(slot), base=hex(self._next_base(root)))
                else:
                    etree.SubElement(device.find('target'), 'current', unit='KiB').text = (
                        device.findtext('target/requested') if self.guest_onlines else '0')
                    etree.SubElement(device, 'address', type='pci', slot='0x09')
            elif model == 'dimm':
                etree.SubElement(device, 'address', type='dimm', slot=str(len(root.findall('devices/memory'))))
            root.find('devices').append(device)
            gained = size if model == 'dimm' or not live else int(device.findtext('target/current'))
            self._add_memory(root, size, gained)
            self._store(live, root)
        return 0

    def detachDeviceFlags(self, xml, flags):
        self.writes.append(('detach', flags))
        wanted = etree.fromstring(xml)
        for live in self._targets(flags):
            root = self._root(live)
            match = [d for d in root.findall('devices/memory') if etree.tostring(d) == etree.tostring(wanted)]
            if not match:
                raise FakeLibvirtError("device not found: model 'dimm' memory device not present in the domain "
                                       "configuration", libvirt.VIR_ERR_DEVICE_MISSING)
            if live and self.unplug == 'reject':
                raise FakeLibvirtError('operation failed: unplug of device was rejected by the guest',
                                       libvirt.VIR_ERR_OPERATION_FAILED)
            if live and self.unplug == 'pending':
                continue
            size = int(match[0].findtext('target/size'))
            root.find('devices').remove(match[0])
            self._add_memory(root, -size, -size)
            self._store(live, root)
        return 0

    def updateDeviceFlags(self, xml, flags):
        self.writes.append(('update', flags))
        wanted = etree.fromstring(xml)
        for live in self._targets(flags):
            root = self._root(live)
            for device in root.findall("devices/memory[@model='virtio-mem']"):
                if live and device.find('alias').get('name') != wanted.find('alias').get('name'):
                    continue
                requested = int(wanted.findtext('target/requested'))
                device.find('target/requested').text = str(requested)
                if live:
                    current = device.find('target/current')
                    old = int(current.text)
                    if self.unplug == 'complete' and (self.guest_onlines or requested < old):
                        current.text = str(requested)
                        self._add_memory(root, 0, requested - old)
            self._store(live, root)
        return 0

    def setMemoryFlags(self, kib, flags):
        self.writes.append(('balloon', flags))
        for live in self._targets(flags):
            root = self._root(live)
            if not live or self.balloon:
                root.find('currentMemory').text = str(kib)
            self._store(live, root)
        return 0

    # --- QEMU and the guest agent (through the patched libvirt_qemu functions) -------
    def qmp(self, command_json):
        command = json.loads(command_json)['execute']
        assert command == 'query-memory-devices'
        devices = []
        for device in self._root(True).findall('devices/memory'):
            alias = device.find('alias').get('name')
            size = int(device.findtext('target/size')) * 1024
            if device.get('model') == 'dimm':
                data = dict(id=alias, addr=int(device.find('address').get('base'), 16), size=size,
                            node=int(device.findtext('target/node')), slot=int(device.find('address').get('slot')))
            else:
                data = dict(id=alias, memaddr=HOTPLUG_BASE + 8 * 1024 ** 3, size=int(device.findtext('target/current')) * 1024,
                            **{'requested-size': int(device.findtext('target/requested')) * 1024, 'max-size': size})
            devices.append(dict(type=device.get('model'), data=data))
        return json.dumps({'return': devices})

    def agent(self, command_json):
        command = json.loads(command_json)['execute']
        if command == 'guest-get-memory-block-info':
            return json.dumps({'return': {'size': BLOCK_BYTES}})
        blocks = [dict(online=True, **{'phys-index': i}) for i in range(4)]  # 512 MiB boot memory
        for entry in json.loads(self.qmp('{"execute": "query-memory-devices"}'))['return']:
            data = entry['data']
            start = data.get('addr', data.get('memaddr')) // BLOCK_BYTES
            for i in range(data['size'] // BLOCK_BYTES):
                blocks.append(dict(online=self.guest_onlines, **{'phys-index': start + i}))
        return json.dumps({'return': blocks})

    # --- helpers -----------------------------------------------------------------
    def _targets(self, flags):
        return [live for live, flag in ((True, libvirt.VIR_DOMAIN_AFFECT_LIVE), (False, libvirt.VIR_DOMAIN_AFFECT_CONFIG))
                if flags & flag]

    def _root(self, live):
        return etree.fromstring(self.live_xml if live else self.config_xml)

    def _store(self, live, root):
        text = etree.tostring(root, encoding='unicode')
        if live:
            self.live_xml = text
        else:
            self.config_xml = text

    @staticmethod
    def _add_memory(root, total, current):
        for tag, change in (('memory', total), ('currentMemory', current)):
            root.find(tag).text = str(int(root.findtext(tag)) + change)

    @staticmethod
    def _next_base(root):
        end = HOTPLUG_BASE
        for device in root.findall("devices/memory[@model='dimm']"):
            end = max(end, int(device.find('address').get('base'), 16) + int(device.findtext('target/size')) * 1024)
        return end

    # libvirt state for the assertions
    def devices(self, live=True):
        root = self._root(live)
        return [(d.get('model'), int(d.findtext('target/size')) // MIB, d.findtext('target/requested'))
                for d in root.findall('devices/memory')]

    def memory_mib(self, live=True):
        root = self._root(live)
        return int(root.findtext('memory')) // MIB, int(root.findtext('currentMemory')) // MIB


class PinnableDomain(FakeDomain):
    """Pinning behaviour: pinVcpuFlags, pinEmulator and pinIOThread edit <cputune> of the live and config trees as
    libvirt does; vcpuPinInfo/emulatorPinInfo/ioThreadInfo report the effective pinning (explicit pin, else
    <vcpu cpuset>, else every host CPU); metadata keeps one element per namespace and scope."""

    def __init__(self, name, xml, host_cpus=4, fail_on=None, silently_ignore=None, **kwargs):
        super(PinnableDomain, self).__init__(name, live_xml=xml, config_xml=xml, **kwargs)
        self.trees = {LIVE: etree.fromstring(xml), CONFIG: etree.fromstring(xml)}
        if not self.isActive():
            self.trees.pop(LIVE)
        if not self._persistent:
            self.trees.pop(CONFIG)
        self.host_cpus = host_cpus
        self.fail_on = fail_on or set()              # {(kind, id, scope flag)} that raise
        self.silently_ignore = silently_ignore or set()  # pins accepted but not applied (verify must notice)
        self.meta = {}
        self.pin_calls = []

    def isActive(self):
        return self._state == libvirt.VIR_DOMAIN_RUNNING

    def XMLDesc(self, flags=0):
        scope = CONFIG if flags & libvirt.VIR_DOMAIN_XML_INACTIVE else LIVE
        if scope not in self.trees:
            raise FakeLibvirtError('no such definition')
        return etree.tostring(self.trees[scope], encoding='unicode')

    def _tree(self, flags):
        scope = CONFIG if flags & CONFIG else LIVE
        if scope not in self.trees:
            raise FakeLibvirtError('Requested operation is not valid: domain is not running'
                                   if scope == LIVE else 'transient domain has no config',
                                   libvirt.VIR_ERR_OPERATION_INVALID)
        return self.trees[scope]

    def _effective(self, tree, xpath):
        el = tree.find(xpath)
        if el is not None:
            return parse_cpulist(el.get('cpuset'))
        vcpu = tree.find('vcpu')
        if vcpu is not None and vcpu.get('cpuset'):
            return parse_cpulist(vcpu.get('cpuset'))
        return tuple(range(self.host_cpus))

    def _map(self, cpus):
        return tuple(i in cpus for i in range(self.host_cpus))

    def vcpuPinInfo(self, flags):
        tree = self._tree(flags)
        vcpu = tree.find('vcpu')
        count = int(vcpu.get('current', vcpu.text))
        return [self._map(self._effective(tree, "cputune/vcpupin[@vcpu='%d']" % i)) for i in range(count)]

    def emulatorPinInfo(self, flags):
        return self._map(self._effective(self._tree(flags), 'cputune/emulatorpin'))

    def ioThreadInfo(self, flags):
        tree = self._tree(flags)
        count = int(tree.findtext('iothreads') or 0)
        return [(i, self._map(self._effective(tree, "cputune/iothreadpin[@iothread='%d']" % i)))
                for i in range(1, count + 1)]

    def _set_pin(self, flags, kind, ident, cpumap, tag, attr):
        scope = CONFIG if flags & CONFIG else LIVE
        self.pin_calls.append((kind, ident, scope, format_cpulist(i for i, on in enumerate(cpumap) if on)))
        if (kind, ident, scope) in self.fail_on:
            raise FakeLibvirtError('cannot set CPU affinity on process 1234: Invalid argument')
        cpus = [i for i, on in enumerate(cpumap) if on]
        if not cpus or max(cpus) >= self.host_cpus:
            raise FakeLibvirtError('invalid argument: Empty cpu list for pinning', libvirt.VIR_ERR_INVALID_ARG)
        if (kind, ident, scope) in self.silently_ignore:
            return 0
        tree = self._tree(flags)
        tune = tree.find('cputune')
        if tune is None:
            tune = etree.SubElement(tree, 'cputune')
        xpath = tag if attr is None else "%s[@%s='%d']" % (tag, attr, ident)
        el = tune.find(xpath)
        if el is None:
            el = etree.SubElement(tune, tag)
            if attr is not None:
                el.set(attr, str(ident))
        el.set('cpuset', format_cpulist(cpus))
        return 0

    def pinVcpuFlags(self, vcpu, cpumap, flags):
        return self._set_pin(flags, 'vcpu', vcpu, cpumap, 'vcpupin', 'vcpu')

    def pinEmulator(self, cpumap, flags):
        return self._set_pin(flags, 'emulator', None, cpumap, 'emulatorpin', None)

    def pinIOThread(self, iothread, cpumap, flags):
        return self._set_pin(flags, 'iothread', iothread, cpumap, 'iothreadpin', 'iothread')

    def metadata(self, kind, uri, flags=0):
        scope = CONFIG if flags & CONFIG else LIVE
        if (uri, scope) not in self.meta:
            raise FakeLibvirtError('metadata not found: Requested metadata element is not present',
                                   libvirt.VIR_ERR_NO_DOMAIN_METADATA)
        return self.meta[(uri, scope)]

    def setMetadata(self, kind, xml, key, uri, flags=0):
        scope = CONFIG if flags & CONFIG else LIVE
        if xml is None:
            if (uri, scope) not in self.meta:
                raise FakeLibvirtError('metadata not found', libvirt.VIR_ERR_NO_DOMAIN_METADATA)
            del self.meta[(uri, scope)]
        else:
            self.meta[(uri, scope)] = xml
        return 0

    def pins(self, scope=LIVE):
        """{thread: cpus} as the XML of that scope says (explicit pins only)."""
        tree = self.trees[scope]
        result = {}
        for el in tree.findall('cputune/vcpupin'):
            result['vcpu %s' % el.get('vcpu')] = el.get('cpuset')
        el = tree.find('cputune/emulatorpin')
        if el is not None:
            result['emulator'] = el.get('cpuset')
        for el in tree.findall('cputune/iothreadpin'):
            result['iothread %s' % el.get('iothread')] = el.get('cpuset')
        return result
