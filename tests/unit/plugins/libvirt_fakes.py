"""Fake libvirt objects for unit tests of logic and of failure paths the lab cannot produce.

The real behaviour is proven by the integration tests against the lab; these
fakes only stand in for libvirt so that module logic can run without it.
"""
from __future__ import annotations

import json
import os

import libvirt

FIXTURES = os.path.join(os.path.dirname(__file__), 'module_utils', 'fixtures')


def domain_capabilities(machine, virt_type):
    """Domain capabilities XML captured from the lab (libvirt 9.0, QEMU 7.2): pc or q35, qemu or kvm."""
    kind = 'q35' if machine and 'q35' in machine else 'pc'
    with open(os.path.join(FIXTURES, 'domcaps-%s-%s.xml' % (kind, virt_type or 'kvm'))) as handle:
        return handle.read()


class FakeLibvirtError(libvirt.libvirtError):
    """A libvirtError with a chosen code and message (the real one reads libvirt's last error)."""

    def __init__(self, message, code=libvirt.VIR_ERR_INTERNAL_ERROR):
        super(FakeLibvirtError, self).__init__(message)
        self.err = None
        self._message = message
        self._code = code

    def get_error_code(self):
        return self._code

    def get_error_message(self):
        return self._message


class FakeDomain(object):
    def __init__(self, name, live_xml=None, config_xml=None, state=libvirt.VIR_DOMAIN_RUNNING,
                 persistent=True, job=None, guest_vcpus=None, qmp_replies=None, agent_replies=None, uuid=None):
        self._name = name
        self._uuid = uuid
        self.live_xml = live_xml
        self.config_xml = config_xml if config_xml is not None else live_xml
        self._state = state
        self._persistent = persistent
        self.job = job or {'type': libvirt.VIR_DOMAIN_JOB_NONE}
        self.guest_vcpus_reply = guest_vcpus
        self.qmp_replies = qmp_replies or {}
        self.agent_replies = agent_replies or {}
        self.calls = []
        self.metadata_xml = {}

    def name(self):
        return self._name

    def connect(self):
        return self._conn

    def UUIDString(self):
        return self._uuid or '00000000-0000-0000-0000-%012d' % (abs(hash(self._name)) % 10 ** 12)

    def ID(self):
        return 7 if self._state == libvirt.VIR_DOMAIN_RUNNING else -1

    def state(self):
        return [self._state, 1]

    def isPersistent(self):
        return 1 if self._persistent else 0

    def autostart(self):
        return 0

    def XMLDesc(self, flags=0):
        if flags & libvirt.VIR_DOMAIN_XML_INACTIVE:
            return self.config_xml
        return self.live_xml

    def define(self, xml):
        self.config_xml = xml

    def jobStats(self, flags=0):
        if self._state != libvirt.VIR_DOMAIN_RUNNING:
            raise FakeLibvirtError('Requested operation is not valid: domain is not running',
                                   libvirt.VIR_ERR_OPERATION_INVALID)
        return dict(self.job)

    def guestVcpus(self, flags=0):
        if isinstance(self.guest_vcpus_reply, Exception):
            raise self.guest_vcpus_reply
        if self.guest_vcpus_reply is None:
            raise FakeLibvirtError('Guest agent is not responding', libvirt.VIR_ERR_AGENT_UNRESPONSIVE)
        return dict(self.guest_vcpus_reply)

    def metadata(self, kind, uri, flags=0):
        if uri not in self.metadata_xml:
            raise FakeLibvirtError('metadata not found: Requested metadata element is not present',
                                   libvirt.VIR_ERR_NO_DOMAIN_METADATA)
        return self.metadata_xml[uri]

    def setMetadata(self, kind, xml, key, uri, flags=0):
        self.metadata_xml[uri] = xml
        return 0

    # libvirt_qemu entry points are module functions; tests patch them to call these.
    def qmp(self, command_json):
        command = json.loads(command_json)['execute']
        self.calls.append(('qmp', command))
        return json.dumps({'return': self.qmp_replies.get(command, [])})

    def agent(self, command_json):
        command = json.loads(command_json)['execute']
        self.calls.append(('agent', command))
        return json.dumps({'return': self.agent_replies.get(command)})


class FakeConnection(object):
    """One host: its domains, its URI and its host CPUs (all online)."""

    def __init__(self, domains=(), uri='qemu:///system', host_cpus=2):
        self.domains = {d.name(): d for d in domains}
        self.host_cpus = host_cpus
        for domain in domains:
            domain._conn = self
        self.uri = uri
        self.closed = False
        self.defined = []

    def getDomainCapabilities(self, emulator, arch, machine, virt_type, flags=0):
        return domain_capabilities(machine, virt_type)

    def defineXML(self, xml):
        """Define a persistent definition: the named domain's config becomes xml."""
        self.defined.append(xml)
        from lxml import etree
        domain = self.domains[etree.fromstring(xml.encode('utf-8')).findtext('name')]
        domain.define(xml)
        return domain

    def getURI(self):
        return self.uri

    def lookupByName(self, name):
        if name not in self.domains:
            raise FakeLibvirtError("Domain not found: no domain with matching name '%s'" % name,
                                   libvirt.VIR_ERR_NO_DOMAIN)
        return self.domains[name]

    def lookupByUUIDString(self, uuid):
        for domain in self.domains.values():
            if domain.UUIDString() == uuid:
                return domain
        raise FakeLibvirtError("Domain not found: no domain with matching uuid '%s'" % uuid, libvirt.VIR_ERR_NO_DOMAIN)

    def listAllDomains(self, flags=0):
        return list(self.domains.values())

    def getCPUMap(self, flags=0):
        return (self.host_cpus, [True] * self.host_cpus, self.host_cpus)

    def close(self):
        self.closed = True
        return 0
