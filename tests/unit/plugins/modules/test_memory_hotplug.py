"""memory_hotplug's main(): apply, verify, report, and the failure paths the lab cannot produce on demand.

The fake domain (fake_hypervisor.MemoryDomain) keeps a live and a persistent XML and changes
them the way libvirt does on attach, detach, update and setMemoryFlags.
"""
from __future__ import annotations

import json

import libvirt
import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt import tcg_hazard as _tcg_hazard
from ansible_collections.kvm.hotplug.plugins.module_utils._memory import run as _memory_hotplug
from ansible_collections.kvm.hotplug.plugins.modules import memory_hotplug
from ansible_collections.kvm.hotplug.tests.unit.plugins.fake_hypervisor import MIB, MemoryDomain
from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import FakeConnection, FakeLibvirtError
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_runner import run_main


@pytest.fixture
def lab(hypervisor, fake_clock):
    """One MemoryDomain on the fake hypervisor; waits run on the fake clock."""
    dom = MemoryDomain()
    hypervisor.add_host(FakeConnection([dom]))
    return dom


def run(capsys, **args):
    args.setdefault('name', 'lab-mem')
    return run_main(memory_hotplug.main, args, capsys)


# --- adding ---------------------------------------------------------------------------------

def test_hot_add_one_dimm_live_and_config_then_idempotent(lab, capsys):
    result, failed = run(capsys, size='1GiB', wait_for_guest=True)
    assert not failed and result['changed'] is True
    assert lab.devices(live=True) == [('dimm', 512, None)] and lab.devices(live=False) == [('dimm', 512, None)]
    assert lab.memory_mib(live=True) == (1024, 1024)
    after = result['memory']['after']
    assert after['live']['size_mib'] == 1024 and after['live']['devices'][0]['alias'] == 'dimm0'
    assert after['config']['size_mib'] == 1024
    assert result['memory']['before']['live']['size_mib'] == 512
    assert [(a['where'], a['action'], a['status']) for a in result['actions']] == [
        ('live', 'attach', 'done'), ('config', 'attach', 'done')]
    assert result['verification']['agree'] is True
    assert result['verification']['devices'][0]['guest_online_mib'] == 512
    assert result['guest_memory']['online_mib'] == 1024
    assert result['block_size'] == dict(mib=128, source='guest agent')
    assert 'elapsed' in result

    writes = len(lab.writes)
    again, failed = run(capsys, size='1024', wait_for_guest=True)  # plain numbers are MiB
    assert not failed and again['changed'] is False and again['actions'] == []
    assert len(lab.writes) == writes


def test_check_mode_predicts_and_writes_nothing(lab, capsys):
    result, failed = run(capsys, size='1536MiB', dimm_size='512MiB', _ansible_check_mode=True)
    assert not failed and result['changed'] is True
    assert lab.writes == []
    assert [a['status'] for a in result['actions']] == ['planned'] * 4
    assert [d['node'] for d in result['memory']['after']['live']['devices']] == [0, 1]
    assert result['memory']['after']['live']['size_mib'] == 1536
    assert result['memory']['before']['live']['devices'] == []


def test_diff_mode(lab, capsys):
    result, failed = run(capsys, size='1GiB', _ansible_diff=True)
    assert not failed
    assert result['diff']['before']['live'] == dict(size_mib=512, total_mib=512, current_mib=512, devices=[])
    assert result['diff']['after']['live']['devices'] == ['dimm dimm0 512 MiB node 0']
    assert result['diff']['after']['config']['devices'] == ['dimm slot 0 512 MiB node 0']


def test_guest_that_does_not_online_fails_the_wait_but_reports_the_change(lab, capsys):
    lab.guest_onlines = False
    result, failed = run(capsys, size='1GiB', wait_for_guest=True, timeout=5)
    assert failed and result['changed'] is True
    assert 'does not show all its memory online after 5 s' in result['msg']
    assert 'dimm0: libvirt 512 MiB, QEMU 512 MiB, guest online 0 MiB' in result['msg']
    assert result['verification']['agree'] is False
    assert result['memory']['after']['live']['size_mib'] == 1024


def test_wait_for_guest_without_agent_says_why(lab, capsys):
    lab.live_xml = lab.live_xml.replace("state='connected'", "state='disconnected'")
    result, failed = run(capsys, size='1GiB', wait_for_guest=True, timeout=2)
    assert failed and result['changed'] is True
    assert result['msg'].startswith('cannot confirm that the guest of domain lab-mem sees its memory: '
                                    "the guest's view is unavailable: the guest agent is not connected")
    assert result['block_size']['source'].startswith('assumed')


# --- removing ---------------------------------------------------------------------------------

def _two_dimms(lab, capsys):
    result, failed = run(capsys, size='1GiB', dimm_size='256MiB')
    assert not failed and lab.devices() == [('dimm', 256, None), ('dimm', 256, None)]


def test_removal_detaches_the_newest_dimm_and_waits_for_it(lab, capsys):
    _two_dimms(lab, capsys)
    result, failed = run(capsys, size='768MiB', wait_for_guest=True)
    assert not failed and result['changed'] is True
    assert result['unplug'] == 'completed' and result['unplug_devices'] == []
    assert [d['alias'] for d in result['memory']['after']['live']['devices']] == ['dimm0']
    assert lab.devices(live=False) == [('dimm', 256, None)]


@pytest.mark.parametrize('behaviour, status, words', [
    ('pending', 'pending', 'has not released DIMM dimm1 (256 MiB) within 10 s: the unplug is pending'),
    ('reject', 'rejected', 'rejected the unplug of DIMM dimm1 (256 MiB)'),
])
def test_removal_the_guest_does_not_complete_is_never_reported_as_done(lab, capsys, behaviour, status, words):
    _two_dimms(lab, capsys)
    lab.unplug = behaviour
    result, failed = run(capsys, size='768MiB', timeout=10)
    assert failed
    assert result['changed'] is False
    assert words in result['msg']
    assert result['unplug'] == status
    assert [e['status'] for e in result['actions']] == [status, 'not run']
    assert result['unplug_devices'][0]['alias'] == 'dimm1'
    # the device is still listed, live and in the config the module left alone
    assert [d['alias'] for d in result['memory']['after']['live']['devices']] == ['dimm0', 'dimm1']
    assert result['memory']['after']['live']['size_mib'] == 1024
    assert lab.devices(live=False) == [('dimm', 256, None), ('dimm', 256, None)]


def test_pending_lists_who_still_has_the_device(lab, capsys):
    _two_dimms(lab, capsys)
    lab.unplug = 'pending'
    result, _failed = run(capsys, size='768MiB', timeout=3)
    assert result['actions'][0]['still_listed_by'] == ['libvirt', 'qemu']
    assert result['actions'][0]['waited'] >= 3


# --- virtio-mem ---------------------------------------------------------------------------------

def test_virtio_mem_added_then_resized(lab, capsys):
    result, failed = run(capsys, size='1GiB', model='virtio-mem', wait_for_guest=True)
    assert not failed and result['changed'] is True
    assert lab.devices() == [('virtio-mem', 3584, str(512 * MIB))]
    assert result['memory']['after']['live']['size_mib'] == 1024
    assert result['memory']['after']['live']['total_mib'] == 4096  # libvirt counts the device whole
    result, failed = run(capsys, size='768MiB', model='virtio-mem', wait_for_guest=True)
    assert not failed and result['unplug'] == 'completed'
    assert lab.devices() == [('virtio-mem', 3584, str(256 * MIB))]
    assert lab.devices(live=False) == [('virtio-mem', 3584, str(256 * MIB))]


def test_virtio_mem_shrink_the_guest_does_not_do_is_pending(lab, capsys):
    run(capsys, size='1GiB', model='virtio-mem')
    lab.unplug = 'pending'
    result, failed = run(capsys, size='512MiB', model='virtio-mem', timeout=4)
    assert failed and result['unplug'] == 'pending'
    assert 'down to 0 MiB within 4 s' in result['msg']
    # the requested size was changed (that write happened), the memory is still plugged
    assert result['changed'] is True
    device = result['memory']['after']['live']['devices'][0]
    assert (device['requested_mib'], device['current_mib']) == (0, 512)


# --- balloon ---------------------------------------------------------------------------------

def test_balloon_live_and_config(lab, capsys):
    result, failed = run(capsys, current_memory='384MiB')
    assert not failed and result['changed'] is True
    assert lab.memory_mib(live=True) == (512, 384) and lab.memory_mib(live=False) == (512, 384)
    again, failed = run(capsys, current_memory='384MiB')
    assert not failed and again['changed'] is False


def test_balloon_the_guest_ignores_fails(lab, capsys):
    lab.balloon = False
    result, failed = run(capsys, current_memory='384MiB', timeout=3)
    assert failed and "virtio_balloon" in result['msg']
    assert result['actions'][0]['status'] == 'pending'
    assert result['actions'][1]['status'] == 'not run'


# --- where changes go, and refusals before anything is written ---------------------------------------

def test_shut_off_domain_changes_config_only_with_a_warning(lab, capsys):
    lab._state = libvirt.VIR_DOMAIN_SHUTOFF
    result, failed = run(capsys, size='1GiB', wait_for_guest=True)
    assert not failed and result['changed'] is True
    assert lab.devices(live=False) == [('dimm', 512, None)]
    assert lab.writes == [('attach', libvirt.VIR_DOMAIN_AFFECT_CONFIG)]
    warnings = json.dumps(result['warnings'])  # plain strings before ansible-core 2.19, objects since
    assert 'domain lab-mem is shutoff: live is ignored, only the persistent config is changed' in warnings
    assert 'wait_for_guest ignored' in warnings
    assert result['memory']['after']['live'] is None
    assert result['block_size']['source'].startswith('assumed')


def test_live_only_on_a_shut_off_domain_is_refused(lab, capsys):
    lab._state = libvirt.VIR_DOMAIN_SHUTOFF
    result, failed = run(capsys, size='1GiB', config=False)
    assert failed and 'is shutoff: live changes need a running domain (set config: true' in result['msg']
    assert lab.writes == []


def test_change_during_migration_is_refused(lab, capsys):
    lab.job = {'type': libvirt.VIR_DOMAIN_JOB_UNBOUNDED, 'operation': libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT}
    result, failed = run(capsys, size='1GiB')
    assert failed and 'refusing to change the memory on domain lab-mem: a migration out job is running' in result['msg']
    assert lab.writes == []


def test_config_refusal_stops_the_live_change_too(lab, capsys):
    lab.config_xml = lab.config_xml.replace("slots='8'", "slots='0'")
    result, failed = run(capsys, size='1GiB')
    assert failed and 'lab-mem (config) needs 1 DIMM slot, but only 0 of 0' in result['msg']
    assert lab.writes == []


def test_libvirt_error_midway_reports_the_state_read_again(lab, capsys, mocker):
    original = lab.attachDeviceFlags
    calls = []

    def second_attach_fails(xml, flags):
        calls.append(xml)
        if len(calls) == 2:
            raise FakeLibvirtError('internal error: no more slots')
        return original(xml, flags)

    mocker.patch.object(lab, 'attachDeviceFlags', side_effect=second_attach_fails)
    result, failed = run(capsys, size='1GiB', dimm_size='256MiB', config=False)
    assert failed
    assert result['msg'] == ('attaching a 256 MiB DIMM on NUMA cell 1 to domain lab-mem (live): '
                             'internal error: no more slots')
    assert result['changed'] is True  # the first DIMM is in
    assert result['memory']['after']['live']['size_mib'] == 768
    assert [a['status'] for a in result['actions']] == ['done', 'failed']


def test_tcg_domain_holding_unplugged_vcpus_refuses_memory_devices_but_not_the_balloon(lab, capsys):
    # a TCG QEMU that did not finalize hot-unplugged vCPUs crashes on the next memory-map change
    lab.metadata_xml[_tcg_hazard.METADATA_URI] = '<tcg-unplugged-vcpus vcpus="2-3"/>'
    result, failed = run(capsys, size='1GiB')
    assert failed and 'still holds vCPUs 2-3 that were hot-unplugged earlier' in result['msg']
    assert lab.writes == []
    balloon, failed = run(capsys, current_memory='384MiB', config=False)
    assert not failed and balloon['changed'] is True


def test_both_live_and_config_false_is_refused(lab, capsys):
    result, failed = run(capsys, size='1GiB', live=False, config=False)
    assert failed and 'live and config are both false' in result['msg']


def test_size_or_current_memory_is_required(lab, capsys):
    result, failed = run(capsys)
    assert failed and 'size, current_memory' in result['msg']


# --- option parsing -----------------------------------------------------------------------------

@pytest.mark.parametrize('params, expected', [
    (dict(size='1536MiB'), dict(size_kib=1536 * MIB)),
    (dict(size='1536'), dict(size_kib=1536 * MIB)),
    (dict(size='2GiB', dimm_size='256', current_memory='1G'),
     dict(size_kib=2048 * MIB, dimm_size_kib=256 * MIB, current_memory_kib=1024 * MIB)),
    (dict(size='1.5GiB', model='virtio-mem', numa_node=1), dict(size_kib=1536 * MIB, model='virtio-mem', numa_node=1)),
])
def test_request_from_params(params, expected):
    request = _memory_hotplug.request_from_params(params)
    for key, value in expected.items():
        assert getattr(request, key) == value


@pytest.mark.parametrize('params, words', [
    (dict(size='lots'), 'size: size'),
    (dict(size='1GB'), 'size: size \'1GB\' is not a whole number of KiB'),
    (dict(size='1GiB', dimm_size='-1'), 'dimm_size:'),
    (dict(current_memory='1,5G'), 'current_memory:'),
    (dict(size='1GiB', model='virtio-mem', dimm_size='128MiB'), 'dimm_size applies to model=dimm only'),
    (dict(size='1GiB', numa_node=-1), 'numa_node must not be negative'),
])
def test_request_from_params_refusals(params, words):
    with pytest.raises(HotplugError) as info:
        _memory_hotplug.request_from_params(params)
    assert words in info.value.msg
