"""rebalance_plan and rebalance_apply against the shared fake hypervisor (SimDomain: libvirt, QEMU and guest views)."""
from __future__ import annotations

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu import run as _vcpu_run
from ansible_collections.kvm.hotplug.plugins.modules import rebalance_apply, rebalance_plan
from ansible_collections.kvm.hotplug.tests.unit.plugins.fake_hypervisor import SimDomain
from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import FakeConnection
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_runner import run_main


class StatsConnection(FakeConnection):
    """A FakeConnection with virNodeGetInfo and getAllDomainStats (cpu time grows by `busy` CPUs per second)."""

    def __init__(self, domains, busy=None, **kwargs):
        super(StatsConnection, self).__init__(domains, **kwargs)
        self.busy = busy or {}
        self.samples = 0

    def getInfo(self):
        return ['x86_64', 8192, 8, 2400, 1, 1, 8, 1]

    def getAllDomainStats(self, stats, flags):
        self.samples += 1
        return [(dom, {'cpu.time': int(self.busy.get(dom.name(), 0) * 1e9 * self.samples * 0.05)})
                for dom in self.listAllDomains()]


@pytest.fixture
def host(mocker, hypervisor):
    mocker.patch('ansible.module_utils.basic.AnsibleModule.run_command',
                 side_effect=AssertionError('no commands in unit tests'))
    mocker.patch.object(_vcpu_run, 'STALE_GRACE_SECONDS', 0.2)
    mocker.patch('time.sleep', lambda s: None)

    def make(busy=None, **shapes):
        doms = [SimDomain(name=name, enabled=tuple(range(n)), uuid='11111111-2222-3333-4444-5555555555%02d' % i)
                for i, (name, n) in enumerate(sorted(shapes.items()))]
        hypervisor.add_host(StatsConnection(doms, busy=busy))
        return dict((d.name(), d) for d in doms)
    return make


def test_plan_from_facts_caps_at_max_vcpus_and_says_why(capsys):
    vm = dict(name='a', active=True, vcpus=1, vcpu_maximum=8, memory_mib=512)
    facts = dict(host=dict(cpus=8, memory_mib=8192), vms=[vm])
    result, failed = run_main(rebalance_plan.main, dict(facts=facts, vms=dict(a=dict(vcpus=6, max_vcpus=3))), capsys)
    assert not failed and not result['changed']
    entry = result['plan']['vms'][0]
    assert entry['target']['vcpus'] == 3 and any('max_vcpus 3' in r for r in entry['reasons'])


def test_plan_reads_the_host(host, capsys):
    host(web=2, batch=4)
    result, failed = run_main(rebalance_plan.main, dict(vms=dict(web=dict(vcpus=4), batch=dict(vcpus=1)),
                                                        reserve=dict(cpus=1)), capsys)
    assert not failed, result
    assert result['host'] == dict(cpus=8, memory_mib=8192)
    steps = [(s['name'], s['resource'], s['after']) for s in result['plan']['steps']]
    assert steps == [('batch', 'vcpus', 1), ('web', 'vcpus', 4)]


def test_measured_mode_gives_the_busy_vm_more(host, capsys):
    host(busy=dict(hot=40.0), hot=1, idle=3)
    result, failed = run_main(rebalance_plan.main, dict(mode='measured', sample_seconds=0.05,
                                                        vms=dict(hot={}, idle={}), target_utilization=0.5), capsys)
    assert not failed, result
    targets = dict((e['name'], e['target']['vcpus']) for e in result['plan']['vms'])
    assert targets['hot'] > 1 and targets['idle'] == 1
    assert result['measured']['idle']['busy_cpus'] == 0


def test_apply_all_changes_in_one_run_then_idempotent(host, capsys):
    doms = host(web=2, batch=4)
    targets = [dict(name='web', vcpus=4), dict(name='batch', vcpus=2)]
    result, failed = run_main(rebalance_apply.main, dict(targets=targets, _ansible_check_mode=True), capsys)
    assert not failed and result['changed'], result
    assert doms['web'].libvirt == {0, 1} and doms['batch'].libvirt == {0, 1, 2, 3}
    result, failed = run_main(rebalance_apply.main, dict(targets=targets, _ansible_diff=True), capsys)
    assert not failed and result['changed'], result
    assert [(s['name'], s['delta']) for s in result['steps']] == [('batch', -2), ('web', 2)]
    assert doms['web'].guest == {0, 1, 2, 3} and doms['batch'].qemu == {0, 1}
    after = dict((v['name'], v['after']) for v in result['vms'])
    assert after['web']['vcpus'] == 4 and after['web']['guest_online_vcpus'] == 4
    assert [d['before_header'] for d in result['diff']] == ['batch', 'web']
    result, failed = run_main(rebalance_apply.main, dict(targets=targets), capsys)
    assert not failed and not result['changed'] and result['steps'] == []


def test_apply_stops_after_a_failed_step(host, capsys):
    doms = host(web=2, batch=4)
    doms['web'].add_fails = True
    targets = [dict(name='web', vcpus=4), dict(name='batch', vcpus=2)]
    result, failed = run_main(rebalance_apply.main, dict(targets=targets, timeout=2), capsys)
    assert failed and 'stopped at web vcpus 2 -> 4' in result['msg']
    assert doms['batch'].libvirt == {0, 1}


def test_unknown_domain_is_refused(host, capsys):
    host(web=2)
    result, failed = run_main(rebalance_apply.main, dict(targets=[dict(name='nope', vcpus=2)]), capsys)
    assert failed and 'nope' in result['msg']


@pytest.mark.parametrize('args, words', [
    (dict(reserve=dict(cpus='lots')), "kvm_hotplug_host_reserve.cpus must be a whole number, got 'lots'"),
    (dict(facts=dict(host='big')), "facts needs host, a mapping of cpus and memory_mib"),
    (dict(facts=dict(host=dict(cpus=8, memory_mib=8192), vms=['a'])), "facts needs host"),
    (dict(facts=dict(host=dict(cpus=8, memory_mib=8192), vms=[dict(vcpus=1)])), "every VM of facts needs a name"),
    (dict(facts=dict(host=dict(cpus=8, memory_mib=8192), vms=[]), cpu_overcommit=-1),
     'overcommit ratios must be above 0, got cpu_overcommit -1.0 and memory_overcommit 1.0'),
    (dict(facts=dict(host=dict(cpus=8, memory_mib=8192), vms=[dict(name='a', vcpus=2, memory_mib=512)]),
          vms=dict(a=dict(min_vcpus=4, max_vcpus=2))), 'a: min_vcpus 4 is above max_vcpus 2 in kvm_hotplug_vms'),
    (dict(facts=dict(host=dict(cpus=8, memory_mib=8192), vms=[dict(name='a', vcpus=2, memory_mib=512)]),
          vms=dict(a=dict(min_memory='2GiB', max_memory=1024))),
     'a: min_memory_mib 2048 is above max_memory_mib 1024 in kvm_hotplug_vms'),
])
def test_malformed_plan_input_is_one_line_naming_it(capsys, args, words):
    args = dict(dict(facts=dict(host=dict(cpus=8, memory_mib=8192), vms=[])), **args)
    result, failed = run_main(rebalance_plan.main, args, capsys)
    assert failed and words in result['msg'] and '\n' not in result['msg'], result


def test_a_target_without_a_name_is_refused(host, capsys):
    doms = host(web=2)
    result, failed = run_main(rebalance_apply.main, dict(targets=[dict(vcpus=1)]), capsys)
    assert failed and result['msg'] == "every target needs the name of a domain, got {'vcpus': 1}", result
    assert doms['web'].libvirt == {0, 1}


def test_a_malformed_vcpus_off_is_refused_even_with_nothing_to_do(host, capsys):
    doms = host(web=2)
    result, failed = run_main(rebalance_apply.main, dict(targets=[dict(name='web', vcpus=2, vcpus_off=['../0'])]),
                              capsys)
    assert failed and result['msg'].startswith("target web vcpus_off: vCPU '../0' is not"), result
    assert doms['web'].libvirt == {0, 1}
