from __future__ import annotations

import os

import libvirt
import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt import connection as _libvirt_connection
from ansible_collections.kvm.hotplug.plugins.modules import domain_info
from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import (
    FakeConnection, FakeDomain, FakeLibvirtError,
)
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_runner import run_main

FIXTURES = os.path.join(os.path.dirname(__file__), '..', 'module_utils', 'fixtures')


def xml(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


@pytest.fixture
def connection(hypervisor):
    conn = FakeConnection([
        FakeDomain('lab-numa', xml('numa-live.xml'),
                   guest_vcpus={'vcpus': '0-2', 'online': '0-2', 'offlinable': '1-2'},
                   qmp_replies={'query-cpus-fast': [{'cpu-index': i, 'thread-id': 100 + i} for i in (0, 1)],
                                'query-memory-devices': []},
                   agent_replies={'guest-get-memory-blocks': [{'phys-index': i, 'online': True} for i in range(5)],
                                  'guest-get-memory-block-info': {'size': 128 * 1024 * 1024}}),
        FakeDomain('plain', config_xml=xml('minimal-inactive.xml'), state=libvirt.VIR_DOMAIN_SHUTOFF),
    ])
    return hypervisor.add_host(conn)


def test_all_domains(connection, capsys):
    result, failed = run_main(domain_info.main, {}, capsys)
    assert not failed and result['changed'] is False
    assert [d['name'] for d in result['domains']] == ['lab-numa', 'plain']
    running, stopped = result['domains']
    assert running['state'] == 'running' and running['live']['vcpus']['enabled'] == [0, 1, 4]
    assert running['guest']['vcpus']['online_count'] == 3
    assert 'qemu' not in running  # raw queries are opt-in
    assert stopped['state'] == 'shutoff' and stopped['live'] is None
    assert stopped['config']['vcpus']['current'] == 2
    assert 'guest' not in stopped
    assert connection.closed


def test_raw_queries_find_stale_libvirt_view(connection, capsys):
    dom = connection.domains['lab-numa']
    result, failed = run_main(domain_info.main, {'name': 'lab-numa', 'raw_queries': True}, capsys)
    assert not failed
    entry = result['domains'][0]
    assert entry['qemu']['vcpus_present'] == [0, 1]
    assert entry['consistency']['vcpus']['stale_in_libvirt'] == [4]
    assert entry['consistency']['vcpus']['agree'] is False
    assert entry['guest']['memory']['online_mib'] == 640
    assert ('qmp', 'query-cpus-fast') in dom.calls


def test_agent_not_answering_is_reported_not_fatal(connection, capsys):
    connection.domains['lab-numa'].guest_vcpus_reply = FakeLibvirtError(
        'Guest agent is not responding: QEMU guest agent is not connected', libvirt.VIR_ERR_AGENT_UNRESPONSIVE)
    result, failed = run_main(domain_info.main, {'name': 'lab-numa'}, capsys)
    assert not failed
    vcpus = result['domains'][0]['guest']['vcpus']
    assert vcpus['available'] is False and 'not responding' in vcpus['reason']


def test_missing_domain_is_one_line(connection, capsys):
    result, failed = run_main(domain_info.main, {'name': 'nope'}, capsys)
    assert failed
    assert result['msg'] == "domain 'nope' not found on qemu:///system"


def test_wrong_uri_is_one_line(mocker, capsys):
    mocker.patch.object(_libvirt_connection.libvirt, 'open', side_effect=FakeLibvirtError(
        "internal error: unexpected qemu URI path '/nowhere', try qemu:///system"))
    result, failed = run_main(domain_info.main, {'uri': 'qemu:///nowhere'}, capsys)
    assert failed
    assert result['msg'].startswith('cannot connect to libvirt at qemu:///nowhere: internal error')
    assert '\n' not in result['msg']


def test_uri_defaults_to_environment(mocker, capsys, monkeypatch):
    monkeypatch.setenv('LIBVIRT_DEFAULT_URI', 'qemu:///session')
    opener = mocker.patch.object(_libvirt_connection.libvirt, 'open', return_value=FakeConnection(uri='qemu:///session'))
    result, failed = run_main(domain_info.main, {}, capsys)
    assert not failed
    opener.assert_called_once_with('qemu:///session')


def test_missing_libvirt_binding(mocker, capsys):
    mocker.patch.object(_libvirt_connection, 'libvirt', None)
    result, failed = run_main(domain_info.main, {}, capsys)
    assert failed
    assert 'libvirt-python' in result['msg']
    assert '\n' not in result['msg']


def test_agent_returning_none_is_unavailable(connection, capsys):
    # libvirt-python returns None, without raising, while the agent channel is not connected yet
    connection.domains['lab-numa'].guest_vcpus_reply = {}
    result, failed = run_main(domain_info.main, {'name': 'lab-numa'}, capsys)
    assert not failed
    assert result['domains'][0]['guest']['vcpus']['available'] is False


def test_hung_guest_agent_is_reported_not_waited_for(connection, capsys, mocker):
    import time as _time
    from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt import guest_agent as _guest_agent
    mocker.patch.object(_guest_agent, 'AGENT_TIMEOUT_SECONDS', 0.3)
    mocker.patch.object(_guest_agent, '_HUNG_AGENTS', {})
    dom = connection.domains['lab-numa']
    mocker.patch.object(dom, 'guestVcpus', side_effect=lambda flags=0: _time.sleep(3))
    started = _time.monotonic()
    result, failed = run_main(domain_info.main, {'name': 'lab-numa'}, capsys)
    assert not failed and _time.monotonic() - started < 2
    vcpus = result['domains'][0]['guest']['vcpus']
    assert vcpus['available'] is False and 'did not answer within' in vcpus['reason']


def test_agent_that_answers_late_is_asked_again(mocker):
    import threading
    from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt import guest_agent as _guest_agent
    from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import parse_domain_xml
    mocker.patch.object(_guest_agent, 'AGENT_TIMEOUT_SECONDS', 0.2)
    mocker.patch.object(_guest_agent, '_HUNG_AGENTS', {})
    dom = FakeDomain('lab-numa', xml('numa-live.xml'), guest_vcpus={'vcpus': '0-2', 'online': '0-2', 'offlinable': '1-2'})
    model = parse_domain_xml(xml('numa-live.xml'))
    release = threading.Event()
    answer = dom.guestVcpus
    mocker.patch.object(dom, 'guestVcpus', side_effect=lambda flags=0: release.wait(5) and answer())
    assert 'did not answer within' in _guest_agent.guest_vcpus(dom, model)['reason']
    assert 'not been answered' in _guest_agent.guest_vcpus(dom, model)['reason']  # no second request queued
    release.set()
    import time as _time
    _time.sleep(0.3)
    assert _guest_agent.guest_vcpus(dom, model)['online_count'] == 3  # the late answer cleared the marker
