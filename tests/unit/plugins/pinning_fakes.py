"""Fake libvirt domains whose pinning can be read and changed like libvirt's, for evacuation tests.

Each domain keeps a live and a config XML tree; pinVcpuFlags, pinEmulator and
pinIOThread edit <cputune> as libvirt does, vcpuPinInfo/emulatorPinInfo/ioThreadInfo
report the effective pinning (explicit pin, else <vcpu cpuset>, else every host CPU),
and metadata/setMetadata keep one element per namespace and scope.
The real behaviour is proven against the lab's libvirtd by the integration target.
"""
from __future__ import annotations

import libvirt
from lxml import etree

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_cpulist
from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import (
    FakeConnection, FakeDomain, FakeLibvirtError,
)

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


def domain_xml(name, vcpus=2, current=None, vcpupin=None, emulatorpin=None, iothreads=0, iothreadpin=None,
               cpuset=None, placement='static', numatune=None):
    """A small domain XML: vcpupin {vcpu: "cpus"}, iothreadpin {id: "cpus"}, numatune (mode, nodeset)."""
    current_attr = '' if current is None else " current='%d'" % current
    cpuset_attr = '' if cpuset is None else " cpuset='%s'" % cpuset
    parts = ["<domain type='kvm'><name>%s</name><uuid>11111111-2222-3333-4444-%012d</uuid>"
             % (name, abs(hash(name)) % 10 ** 12),
             "<memory unit='KiB'>1048576</memory>",
             "<vcpu placement='%s'%s%s>%d</vcpu>" % (placement, cpuset_attr, current_attr, vcpus)]
    if iothreads:
        parts.append('<iothreads>%d</iothreads>' % iothreads)
    tune = ''.join("<vcpupin vcpu='%d' cpuset='%s'/>" % (v, c) for v, c in sorted((vcpupin or {}).items()))
    if emulatorpin:
        tune += "<emulatorpin cpuset='%s'/>" % emulatorpin
    tune += ''.join("<iothreadpin iothread='%d' cpuset='%s'/>" % (i, c) for i, c in sorted((iothreadpin or {}).items()))
    if tune:
        parts.append('<cputune>%s</cputune>' % tune)
    if numatune:
        parts.append("<numatune><memory mode='%s' nodeset='%s'/></numatune>" % numatune)
    parts.append("<os><type arch='x86_64'>hvm</type></os><devices/></domain>")
    return ''.join(parts)


class PinnableDomain(FakeDomain):
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


class PinningConnection(FakeConnection):
    def __init__(self, domains=(), host_cpus=4, uri='qemu:///system'):
        super(PinningConnection, self).__init__(domains, uri)
        self.host_cpus = host_cpus

    def getCPUMap(self, flags=0):
        return (self.host_cpus, [True] * self.host_cpus, self.host_cpus)
