from __future__ import annotations

import libvirt
import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._host import evacuation as ev
from ansible_collections.kvm.hotplug.plugins.module_utils._host import pins
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.tests.unit.plugins.fake_hypervisor import CONFIG, LIVE, PinnableDomain
from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import FakeConnection
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_utils.domain_xml import pinned_xml


def conn_with(*domains):
    return FakeConnection(domains, host_cpus=4)


def plan_for(conn, offlined, online_after, isolated=()):
    return ev.plan_evacuation(pins.read_domains(conn), offlined, online_after, isolated)


def test_read_domains_sources_of_pinning():
    conn = conn_with(
        PinnableDomain('pinned', pinned_xml('pinned', vcpus=3, current=2, vcpupin={0: '0', 1: '2-3'},
                                            emulatorpin='0-1', iothreads=2, iothreadpin={1: '3'})),
        PinnableDomain('cpuset', pinned_xml('cpuset', vcpus=2, cpuset='2-3', iothreads=1)),
        PinnableDomain('free', pinned_xml('free', vcpus=2)),
        PinnableDomain('bound', pinned_xml('bound', numatune=('strict', '1'))),
        PinnableDomain('preferred', pinned_xml('preferred', numatune=('preferred', '1'))),
    )
    domains = {d.name: d for d in pins.read_domains(conn)}
    live = domains['pinned'].scopes['live']
    assert live.pins[('vcpu', 1)] == ('vcpupin', (2, 3))
    assert live.pins[('emulator', None)] == ('emulatorpin', (0, 1))
    assert live.pins[('iothread', 1)] == ('iothreadpin', (3,))
    assert 'vcpu 2' in live.unpinned and 'iothread 2' in live.unpinned
    cpuset = domains['cpuset'].scopes['config']
    assert cpuset.pins[('vcpu', 1)] == ('cpuset', (2, 3)) and cpuset.pins[('iothread', 1)] == ('cpuset', (2, 3))
    assert not domains['free'].pinned
    assert ev.bound_nodes_map(domains.values()) == {1: ['bound']}


@pytest.mark.parametrize('offlined, online_after, isolated, expected', [
    # vcpu 1 keeps CPU 2 when only 3 goes away; the emulator loses nothing
    ((3,), (0, 1, 2), (), {('vcpu', 1): (2,)}),
    # all of vcpu 1's CPUs go: fallback to every online, non-isolated CPU
    ((2, 3), (0, 1), (), {('vcpu', 1): (0, 1)}),
    ((2, 3), (0, 1), (1,), {('vcpu', 1): (0,)}),
    ((0, 3), (1, 2), (), {('vcpu', 0): (1, 2), ('vcpu', 1): (2,), ('emulator', None): (1,)}),
])
def test_plan_new_pinning(offlined, online_after, isolated, expected):
    conn = conn_with(PinnableDomain('d', pinned_xml('d', vcpus=2, vcpupin={0: '0', 1: '2-3'}, emulatorpin='0-1')))
    plan = plan_for(conn, offlined, online_after, isolated)
    live = {(c.kind, c.id): c.after for c in plan.changes[0].changes if c.scope == 'live'}
    config = {(c.kind, c.id): c.after for c in plan.changes[0].changes if c.scope == 'config'}
    assert live == expected and config == expected


def test_unpinned_and_unaffected_domains_are_listed():
    conn = conn_with(PinnableDomain('free', pinned_xml('free')),
                     PinnableDomain('elsewhere', pinned_xml('elsewhere', vcpupin={0: '0', 1: '1'})),
                     PinnableDomain('hit', pinned_xml('hit', vcpupin={0: '3'})))
    plan = plan_for(conn, (3,), (0, 1, 2))
    assert plan.unpinned == ['free'] and plan.unaffected == ['elsewhere'] and plan.changed_domains == ['hit']


@pytest.mark.parametrize('xml, offlined, online_after, isolated, refusal', [
    # every CPU that stays online is isolated: the vCPU would have nowhere to go
    (pinned_xml('d', vcpupin={0: '3'}), (3,), (0, 1, 2), (0, 1, 2), 'every CPU that stays online is isolated'),
    # the domain's own cpuset has nothing left
    (pinned_xml('d', cpuset='2-3'), (2, 3), (0, 1), (), 'its <vcpu cpuset> 2-3 has no CPU left'),
    # an explicit pin outside the cpuset: the fallback is the cpuset, which is all offline too
    (pinned_xml('d', cpuset='3', vcpupin={0: '2'}), (2, 3), (0, 1), (), 'has no CPU left'),
])
def test_no_cpu_to_run_on_is_refused(xml, offlined, online_after, isolated, refusal):
    conn = conn_with(PinnableDomain('d', xml), PinnableDomain('ok', pinned_xml('ok', vcpupin={0: '1'})))
    with pytest.raises(HotplugError) as exc:
        plan_for(conn, offlined, online_after, isolated)
    assert refusal in exc.value.msg and 'nothing was changed' in exc.value.msg
    assert conn.domains['d'].pin_calls == []


def test_cpuset_domain_gets_explicit_pins_inside_its_cpuset():
    conn = conn_with(PinnableDomain('d', pinned_xml('d', vcpus=2, cpuset='1-3', iothreads=1)))
    plan = plan_for(conn, (3,), (0, 1, 2))
    change = plan.changes[0]
    assert {c.thread: c.after for c in change.changes if c.scope == 'live'} == {
        'vcpu 0': (1, 2), 'vcpu 1': (1, 2), 'emulator': (1, 2), 'iothread 1': (1, 2)}
    assert any('<vcpu cpuset> 1-3 still names CPU 3' in n for n in change.notes)


def test_migrating_domain_is_refused():
    dom = PinnableDomain('m', pinned_xml('m', vcpupin={0: '3'}),
                         job={'type': libvirt.VIR_DOMAIN_JOB_UNBOUNDED, 'operation': 5})
    with pytest.raises(HotplugError, match='migration out job is running'):
        plan_for(conn_with(dom), (3,), (0, 1, 2))


def test_inactive_and_transient_domains_use_their_only_definition():
    off = PinnableDomain('off', pinned_xml('off', vcpupin={0: '3'}), state=libvirt.VIR_DOMAIN_SHUTOFF)
    transient = PinnableDomain('tr', pinned_xml('tr', vcpupin={0: '3'}), persistent=False)
    plan = plan_for(conn_with(off, transient), (3,), (0, 1, 2))
    scopes = {c.domain.name: sorted(set(x.scope for x in c.changes)) for c in plan.changes}
    assert scopes == {'off': ['config'], 'tr': ['live']}


def test_apply_verify_record_and_repin_round_trip():
    dom = PinnableDomain('d', pinned_xml('d', vcpus=2, vcpupin={0: '0', 1: '3'}, emulatorpin='2-3'))
    conn = conn_with(dom)
    plan = plan_for(conn, (3,), (0, 1, 2))
    pins.apply_plan(plan, 4)
    for scope in (LIVE, CONFIG):
        assert dom.pins(scope) == {'vcpu 0': '0', 'vcpu 1': '0-2', 'emulator': '2'}
    record = ev.parse_record(dom.meta[(pins.EVACUATION_NS, CONFIG)])
    assert record == {('vcpu', 1): ((3,), (0, 1, 2)), ('emulator', None): ((2, 3), (2,))}
    assert pins.reread_views(plan)['d']['live'] == {'vcpu 0': '0', 'vcpu 1': '0-2', 'emulator': '2'}

    # a second evacuation keeps the first original
    plan = plan_for(conn, (2,), (0, 1))
    pins.apply_plan(plan, 4)
    assert dom.pins(LIVE) == {'vcpu 0': '0', 'vcpu 1': '0-1', 'emulator': '0-1'}
    assert ev.parse_record(dom.meta[(pins.EVACUATION_NS, LIVE)]) == {
        ('vcpu', 1): ((3,), (0, 1)), ('emulator', None): ((2, 3), (0, 1))}

    # CPU 2 back: the emulator gets the online part of its old pinning, vcpu 1 (only CPU 3) waits
    repin = ev.plan_repin(pins.read_domains(conn), (0, 1, 2))
    assert {c.thread: c.after for c in repin.changes[0].changes if c.scope == 'live'} == {'emulator': (2,)}
    pins.apply_plan(repin, 4)
    # CPU 3 back: everything as it was, and the record is gone
    repin = ev.plan_repin(pins.read_domains(conn), (0, 1, 2, 3))
    pins.apply_plan(repin, 4)
    assert dom.pins(LIVE) == dom.pins(CONFIG) == {'vcpu 0': '0', 'vcpu 1': '3', 'emulator': '2-3'}
    assert dom.meta == {}
    assert ev.plan_repin(pins.read_domains(conn), (0, 1, 2, 3)).changes == []


def test_repin_leaves_pins_changed_since_alone():
    dom = PinnableDomain('d', pinned_xml('d', vcpupin={0: '3'}))
    conn = conn_with(dom)
    pins.apply_plan(plan_for(conn, (3,), (0, 1, 2)), 4)
    dom.pinVcpuFlags(0, (False, True, False, False), LIVE)   # an operator moved it meanwhile
    repin = ev.plan_repin(pins.read_domains(conn), (0, 1, 2, 3))
    assert [c.scope for c in repin.changes[0].changes] == ['config']
    assert any('left alone' in n for n in repin.changes[0].notes)


def test_failure_puts_back_every_pin_and_record():
    a = PinnableDomain('a', pinned_xml('a', vcpupin={0: '3'}))
    b = PinnableDomain('b', pinned_xml('b', vcpupin={0: '3', 1: '2-3'}), fail_on={('vcpu', 1, CONFIG)})
    conn = conn_with(a, b)
    plan = plan_for(conn, (3,), (0, 1, 2))
    with pytest.raises(HotplugError) as exc:
        pins.apply_plan(plan, 4)
    assert 'pinning vcpu 1 of domain b (config) to CPU 2' in exc.value.msg
    assert 'put back' in exc.value.msg
    assert a.pins(LIVE) == a.pins(CONFIG) == {'vcpu 0': '3'}
    assert b.pins(LIVE) == b.pins(CONFIG) == {'vcpu 0': '3', 'vcpu 1': '2-3'}
    assert a.meta == {} and b.meta == {}


def test_verify_notices_a_pin_libvirt_did_not_apply():
    dom = PinnableDomain('d', pinned_xml('d', vcpupin={0: '3'}), silently_ignore={('vcpu', 0, LIVE)})
    plan = plan_for(conn_with(dom), (3,), (0, 1, 2))
    with pytest.raises(HotplugError) as exc:
        pins.apply_plan(plan, 4)
    assert 'not applied as planned' in exc.value.msg and 'vcpu 0 on CPU 3, expected 0-2' in exc.value.msg
    assert dom.pins(CONFIG) == {'vcpu 0': '3'}


def test_record_format_round_trip():
    record = {('vcpu', 1): ((3,), (0, 1)), ('emulator', None): ((2, 3), (2,)), ('iothread', 2): ((1,), (0,))}
    assert ev.parse_record(ev.format_record(record)) == record
    assert ev.format_record({}) is None
    assert ev.parse_record('<evacuation><pin kind="vcpu" id="x"/></evacuation>') == {}
    assert ev.parse_record('not xml') == {}


def test_numatune_placed_by_numad_is_asked_from_libvirt():
    xml = pinned_xml('auto').replace("<os>", "<numatune><memory mode='strict' placement='auto'/></numatune><os>")
    dom = PinnableDomain('auto', xml)
    dom.numaParameters = lambda flags: {'numa_mode': 0, 'numa_nodeset': '1'}
    assert ev.bound_nodes_map(pins.read_domains(conn_with(dom))) == {1: ['auto']}
