"""vcpu_hotplug's main() against a simulated hypervisor, for failure paths the lab cannot produce on demand.

The simulation keeps three views like the real thing: libvirt's enabled vCPUs,
QEMU's present vCPUs and the guest's online CPUs, and a `behaviour` says how an
unplug goes: 'kvm' (the guest ejects, QEMU sends DEVICE_DELETED), 'tcg' (the
guest ejects, no DEVICE_DELETED: libvirt times out and goes stale), 'stuck'
(the guest never ejects).
"""
from __future__ import annotations

import libvirt
import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._common import lock as _domain_lock
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt import connection as _libvirt_connection
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt import resync as _libvirt_resync
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt import qemu_monitor as _qemu_monitor
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu import run as _vcpu_manager
from ansible_collections.kvm.hotplug.plugins.modules import vcpu_hotplug
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import parse_domain_xml
from ansible_collections.kvm.hotplug.tests.unit.plugins.fake_hypervisor import SimDomain
from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import FakeConnection
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_runner import run_main


MIGRATING = {'type': libvirt.VIR_DOMAIN_JOB_UNBOUNDED, 'operation': libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT}


def _no_real_commands(self, command, **kwargs):
    raise AssertionError('a unit test tried to run %r' % (command,))


@pytest.fixture
def sim(mocker, hypervisor):
    # never restart a real daemon from a unit test; tests that exercise a restart patch this again
    mocker.patch('ansible.module_utils.basic.AnsibleModule.run_command', _no_real_commands)
    mocker.patch.object(_vcpu_manager, 'STALE_GRACE_SECONDS', 0.2)

    def make(**kwargs):
        others = kwargs.pop('others', ())
        dom = SimDomain(**kwargs)
        hypervisor.add_host(FakeConnection([dom] + list(others)))
        return dom
    return make


def test_hot_add_complete(sim, capsys):
    dom = sim()
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=4, wait_for_guest=True), capsys)
    assert not failed and result['changed'] and result['outcome'] == 'complete'
    assert result['vcpus']['after']['live']['enabled'] == [0, 1, 2, 3]
    assert result['vcpus']['after']['config']['enabled'] == [0, 1, 2, 3]
    assert result['guest_online'] == 4 and result['qemu']['present'] == [0, 1, 2, 3]
    assert dom.qemu == {0, 1, 2, 3}


def test_second_run_writes_nothing(sim, capsys):
    dom = sim(enabled=(0, 1, 2, 3))
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=4), capsys)
    assert not failed and not result['changed'] and result['outcome'] == 'none'
    assert dom.writes == []


def test_check_mode_predicts_and_writes_nothing(sim, capsys):
    dom = sim()
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=3, _ansible_check_mode=True,
                                                      _ansible_diff=True), capsys)
    assert not failed and result['changed'] and result['outcome'] == 'check_mode'
    assert result['vcpus']['after']['live']['enabled'] == [0, 1, 2]
    assert result['diff']['after']['live']['current'] == 3 and result['diff']['before']['live']['current'] == 2
    assert dom.writes == []


def test_kvm_like_unplug_is_complete(sim, capsys):
    sim(enabled=(0, 1, 2, 3), behaviour='kvm')
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=2, wait_for_guest=True), capsys)
    assert not failed and result['outcome'] == 'complete' and result['resync'] == []


def test_tcg_unplug_reports_stale_libvirt_view(sim, capsys):
    dom = sim(enabled=(0, 1, 2, 3), behaviour='tcg', domain_type='qemu')
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=2, timeout=5), capsys)
    assert failed and result['outcome'] == 'stale'
    assert "libvirt's view of domain sim is stale after the change" in result['msg']
    assert 'libvirt lists vCPUs 2-3 that QEMU no longer has' in result['msg']
    assert result['changed'] is True  # QEMU and the guest did change
    assert result['vcpus']['after']['config']['enabled'] == [0, 1, 2, 3]  # config untouched
    assert 'vcpus="2-3"' in dom.metadata_xml  # the TCG hazard is recorded


def test_tcg_hazard_refuses_next_hot_add(sim, capsys):
    dom = sim(enabled=(0, 1), domain_type='qemu')
    dom.metadata_xml = '<tcg-unplugged-vcpus vcpus="2-3"/>'
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=3), capsys)
    assert failed and 'QEMU process still holds vCPUs 2-3' in result['msg']
    assert dom.writes == []


def test_resync_after_stale_unplug(sim, capsys, mocker):
    dom = sim(enabled=(0, 1, 2, 3), behaviour='tcg', domain_type='qemu')

    def restart(self, command, **kwargs):
        dom.restart_libvirt()
        return 0, '', ''
    mocker.patch('ansible.module_utils.basic.AnsibleModule.run_command', restart)
    mocker.patch('ansible.module_utils.basic.AnsibleModule.get_bin_path', lambda self, name, *a, **k: '/usr/sbin/' + name)
    mocker.patch.object(_libvirt_resync, 'SYSTEMD_RUNTIME_DIR', '/nonexistent/systemd')
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=2, stale_view='resync', timeout=10), capsys)
    assert not failed and result['outcome'] == 'complete', result.get('msg')
    assert result['resync'][0]['command'] == ['/usr/sbin/service', 'libvirtd', 'restart']
    assert result['vcpus']['after']['live']['enabled'] == [0, 1]
    assert result['vcpus']['after']['config']['enabled'] == [0, 1]


def test_stale_before_change_changes_nothing(sim, capsys):
    dom = sim(enabled=(0, 1), domain_type='qemu')
    dom.libvirt = {0, 1, 2}  # an earlier unplug libvirt never heard of
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=4), capsys)
    assert failed and 'stale before any change' in result['msg'] and 'Nothing was changed' in result['msg']
    assert dom.writes == []


def test_resync_refused_while_another_domain_migrates(sim, capsys, mocker):
    other = SimDomain(name='other', uuid='99999999-2222-3333-4444-555555555555', job=MIGRATING)
    mocker.patch.object(FakeConnection, 'listAllDomains', lambda self, flags=0: list(self.domains.values()))
    dom = sim(enabled=(0, 1), domain_type='qemu', others=[other])
    dom.libvirt = {0, 1, 2}
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=4, stale_view='resync'), capsys)
    assert failed and 'other domains have running jobs that a restart would abort: other (migration_out)' in result['msg']
    assert dom.writes == []


def test_guest_that_never_ejects_is_pending(sim, capsys):
    sim(enabled=(0, 1, 2), behaviour='stuck')
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=2, timeout=1), capsys)
    assert failed and result['outcome'] == 'pending'
    assert 'did not eject vCPUs 2' in result['msg'] and 'still pending in QEMU' in result['msg']
    assert result['changed'] is False


def test_failed_hot_add_is_reported_with_state(sim, capsys):
    sim(add_fails=True)
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=3, timeout=1), capsys)
    assert failed and result['outcome'] == 'partial'
    assert 'libvirt refused to enable vCPU 2' in result['msg']
    assert result['vcpus']['after']['live']['enabled'] == [0, 1]
    assert result['vcpus']['after']['config']['enabled'] == [0, 1]


@pytest.mark.parametrize('args, message', [
    (dict(count=4, vcpus=['2']), 'mutually exclusive'),
    (dict(vcpus=['a']), "vcpus: vCPU 'a' is not a CPU id"),
    (dict(vcpus=['../1']), 'is not a CPU id'),
    (dict(count=2, state='enabled'), "missing parameter(s) required by 'state': vcpus"),
    (dict(), 'one of the following is required'),
    (dict(count=2, timeout=-1), 'timeout must not be negative'),
])
def test_bad_input_is_refused_before_anything(sim, capsys, args, message):
    dom = sim()
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', **args), capsys)
    assert failed and message in result['msg']
    assert dom.writes == []


def test_refused_resync_after_the_change_still_reports_the_change(sim, capsys, mocker):
    other = SimDomain(name='other', uuid='99999999-2222-3333-4444-555555555555', job=MIGRATING)
    mocker.patch.object(FakeConnection, 'listAllDomains', lambda self, flags=0: list(self.domains.values()))
    dom = sim(enabled=(0, 1, 2, 3), behaviour='tcg', domain_type='qemu', others=[other])
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=2, stale_view='resync', timeout=5), capsys)
    assert failed and result['outcome'] == 'stale'
    assert result['changed'] is True
    assert 'Resynchronizing failed: not restarting libvirt' in result['msg']
    assert result['qemu']['present'] == [0, 1]
    assert dom.qemu == {0, 1}


def test_late_device_deleted_is_complete_and_not_a_tcg_leak(sim, capsys):
    # libvirt timed out, then QEMU's DEVICE_DELETED came and libvirt caught up: QEMU finalized the vCPU
    dom = sim(enabled=(0, 1, 2), behaviour='late-event', domain_type='qemu')
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', count=2, timeout=5), capsys)
    assert not failed and result['outcome'] == 'complete'
    assert result['libvirt_calls'][0]['timed_out'] is True
    assert dom.metadata_xml is None


# --- persistent definitions the domain could not boot with ---------------------------------------------

@pytest.mark.parametrize('maximum, limit', [
    (100000, 'above the limit of 255 vCPUs of machine type pc-i440fx-7.2'),
    (300, "more than 255 vCPUs (300) on x86 need an <iommu model='intel'>"),
    (12, 'vCPUs 8-11 are in no guest NUMA cell (cells: 0: 0-3, 1: 4-7). Name the guest NUMA cell'),
])
def test_unbootable_maximum_is_refused_before_any_write(sim, capsys, maximum, limit):
    dom = sim()
    for check_mode in (True, False):
        result, failed = run_main(vcpu_hotplug.main, dict(name='sim', maximum=maximum,
                                                          _ansible_check_mode=check_mode), capsys)
        assert failed and limit in result['msg'] and 'Nothing was changed' in result['msg']
        assert not result['changed'] and dom.writes == [] and dom.config_maximum == 8


def test_maximum_in_the_named_cell_is_defined_whole(sim, capsys):
    dom = sim()
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', maximum=12, numa_node=1), capsys)
    assert not failed and result['changed'], result.get('msg')
    assert dom.writes == [('define', 12)] and dom.config_maximum == 12
    assert result['vcpus']['after']['config']['numa_cells'] == [dict(id=0, cpuset='0-3'), dict(id=1, cpuset='4-11')]
    assert result['plan']['maximum']['topology']['sockets'] == 3


def test_a_definition_libvirt_writes_differently_is_put_back(sim, capsys, mocker):
    dom = sim()
    defined = []
    original_define = dom.define

    def define_rewriting_cells(xml):
        # what libvirt 11 does with setVcpusFlags: it puts the new vCPUs into cell 0 by itself
        defined.append(xml)
        original_define(xml.replace('cpus="0-3"', 'cpus="0-3,8-11"').replace('cpus="4-11"', 'cpus="4-7"'))
    mocker.patch.object(dom, 'define', define_rewriting_cells)
    result, failed = run_main(vcpu_hotplug.main, dict(name='sim', maximum=12, numa_node=1), capsys)
    assert failed and 'differently than planned' in result['msg']
    assert 'numa cells: planned 0: 0-3, 1: 4-11, written 0: 0-3,8-11, 1: 4-7' in result['msg']
    assert 'the previous persistent definition was put back' in result['msg']
    assert len(defined) == 2 and parse_domain_xml(defined[-1]).vcpu_max == 8  # the original, put back
    assert dom.config_maximum == 8
