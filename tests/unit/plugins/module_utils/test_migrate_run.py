"""domain_migrate's reading of the outcome from both hosts re-read after the call, and of the domain's platform."""
from __future__ import annotations

import os

import libvirt
import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._migrate import outcomes, own_metadata, read, verify
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.apply import Attempt
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.facts import MigrationRequest
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import parse_domain_xml

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'migrate')
REQUEST = MigrationRequest(name='fleet-b', dest_uri='qemu+tcp://127.0.1.3/system', timeout=6)


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


RUNNING = dict(reachable=True, defined=True, state='running', active=True, persistent=True)
GONE = dict(reachable=True, defined=False, state=None, persistent=None)
UNREACHABLE = dict(reachable=False, defined=None, state=None, persistent=None)
PAUSED = dict(reachable=True, defined=True, state='paused', active=True, persistent=True)


@pytest.mark.parametrize('attempt, source, dest, outcome', [
    (Attempt(ok=True), GONE, RUNNING, outcomes.MIGRATED),
    (Attempt(ok=True, timeout_action='postcopy'), GONE, RUNNING, outcomes.POSTCOPY),
    (Attempt(ok=True, timeout_action='suspend'), GONE, RUNNING, outcomes.MIGRATED),
    (Attempt(ok=False, timeout_action='abort'), RUNNING, GONE, outcomes.ABORTED),
    # the destination daemon died: the source resumed the guest, the destination cannot be asked
    (Attempt(ok=False, error='internal error: client socket is closed'), RUNNING, UNREACHABLE,
     outcomes.FAILED_SOURCE_RUNNING),
    (Attempt(ok=False, timeout_action='abort', timeout_action_error='no job'), RUNNING, GONE,
     outcomes.FAILED_SOURCE_RUNNING),
    # never call these a success or "running on the source"
    (Attempt(ok=True), RUNNING, RUNNING, outcomes.FAILED),
    (Attempt(ok=True), GONE, GONE, outcomes.FAILED),
    (Attempt(ok=False), GONE, GONE, outcomes.FAILED),
    (Attempt(ok=False), PAUSED, RUNNING, outcomes.FAILED),
])
def test_outcome_from_both_hosts(attempt, source, dest, outcome):
    assert outcomes.decide_outcome(REQUEST, attempt, dict(source=source, destination=dest)) == outcome


def test_offline_outcomes():
    offline = MigrationRequest(name='off', dest_uri='qemu+tcp://h/system', live=False)
    shut = dict(RUNNING, state='shutoff', active=False)
    assert outcomes.decide_outcome(offline, Attempt(ok=True), dict(source=GONE, destination=shut)) == outcomes.MIGRATED
    assert outcomes.decide_outcome(offline, Attempt(ok=False), dict(source=shut, destination=GONE)) == outcomes.FAILED_SOURCE_RUNNING


def test_failure_messages_say_where_the_guest_is_in_one_line():
    hosts = dict(source=RUNNING, destination=UNREACHABLE)
    message = outcomes.failure_message(REQUEST, outcomes.FAILED_SOURCE_RUNNING,
                                       Attempt(error='internal error: client socket is closed'), hosts)
    assert 'still running on the source and the destination daemon cannot be asked' in message
    assert 'source running, destination unreachable' in message and '\n' not in message
    message = outcomes.failure_message(REQUEST, outcomes.ABORTED, Attempt(), dict(source=RUNNING, destination=GONE))
    assert 'aborted after the timeout of 6 s' in message and 'destination not defined' in message


def test_platform_of_a_lab_guest():
    platform = read.domain_platform(fixture('hotplugged-live.xml'))
    assert platform['emulator'] == '/opt/kvm-hotplug-lab/qemu/bin/qemu-system-x86_64'
    assert (platform['arch'], platform['machine'], platform['domain_type']) == ('x86_64', 'pc-i440fx-7.2', 'qemu')
    assert '<numa' not in platform['cpu'] and 'qemu64' in platform['cpu']


def test_persistent_differences_name_what_the_destination_would_lose():
    live = parse_domain_xml(fixture('hotplugged-live.xml'))
    config = parse_domain_xml(fixture('hotplugged-inactive.xml'))
    assert verify.persistent_differences(live, config) == []
    fewer = parse_domain_xml(fixture('hotplugged-inactive.xml').replace("current='3'", "current='2'")
                             .replace("<vcpu id='2' enabled='yes'", "<vcpu id='2' enabled='no'"))
    assert verify.persistent_differences(live, fewer) == [
        'the guest ran with vCPUs 0-2, the destination\'s persistent definition enables 0-1']
    assert verify.persistent_differences(live, None) == ['the destination has no persistent definition of the domain']


def test_runtime_differences():
    before = dict(qemu=dict(vcpus=[0, 1, 2], memory_devices={'dimm0': dict(type='dimm', size=134217728, node=0,
                                                                           addr=4294967296, requested_size=None)}),
                  guest=dict(online_cpus=3, online_cpulist='0-2', memory_online_mib=640, memory_blocks_online=5))
    assert verify.runtime_differences(before, before) == []
    after = dict(qemu=dict(vcpus=[0, 1], memory_devices={}),
                 guest=dict(online_cpus=2, online_cpulist='0-1', memory_online_mib=512, memory_blocks_online=4))
    differences = verify.runtime_differences(before, after)
    assert differences[0] == 'QEMU vCPUs 0-2 on the source, 0-1 on the destination'
    assert 'dimm0 (dimm 128 MiB node 0)' in differences[1] and 'none on the destination' in differences[1]
    assert len(differences) == 4


class _Run(object):
    def __init__(self, live=True, persistent=True):
        self.request = MigrationRequest(name='dom', dest_uri='qemu+tcp://h/system', live=live, persistent=persistent)
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)


def test_the_module_clears_its_own_records_on_the_destination():
    from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.metadata import EVACUATION, TCG_HAZARD
    from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import FakeDomain

    class ScopedDomain(FakeDomain):
        """Metadata per (namespace, scope flag), as libvirt keeps it per definition."""

        def metadata(self, kind, uri, flags=0):
            return FakeDomain.metadata(self, kind, (uri, flags))

        def setMetadata(self, kind, xml, key, uri, flags=0):
            return FakeDomain.setMetadata(self, kind, xml, key, (uri, flags))

    live, config = libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG
    record = '<evacuation><pin kind="emulator" original="1" evacuated_to="0"/></evacuation>'
    dest = ScopedDomain('dom', live_xml=fixture('hotplugged-live.xml'))
    dest.metadata_xml[(TCG_HAZARD.uri, live)] = '<tcg-unplugged-vcpus vcpus="5"/>'
    dest.metadata_xml[(EVACUATION.uri, live)] = record
    dest.metadata_xml[(EVACUATION.uri, config)] = record
    report = dict(cleared=[], errors=[])
    own_metadata.clear_our_metadata(_Run(), dest, report)
    assert report['cleared'] == ['tcg_unplug_marker live', 'evacuation_record live', 'evacuation_record config']
    assert set(dest.metadata_xml.values()) == {None}


def test_the_source_records_are_reported():
    from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.metadata import TCG_HAZARD
    from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import FakeDomain
    from ansible_collections.kvm.hotplug.tests.unit.plugins.module_utils.domain_xml import snapshot

    source = FakeDomain('dom', live_xml=fixture('hotplugged-live.xml'))
    source.metadata_xml[TCG_HAZARD.uri] = '<tcg-unplugged-vcpus vcpus="2-3"/>'
    found = own_metadata.our_metadata(source, snapshot(fixture('hotplugged-live.xml')))
    assert found == dict(tcg_unplug_marker='2-3', evacuation_record=dict(live=None, config=None))
