"""The serviceability planner (_placement/isolation.py): worked cases, and its invariants held by hypothesis."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.isolation import plan_isolation


def vm(name, vcpus=1, pinned=(), memory=256, dimm=0, removable=0, min_vcpus=None, min_memory=None, fixed=1):
    return dict(name=name, vcpus=vcpus, fixed_vcpus=fixed, pinned_cpus=list(pinned), vcpus_pinned=bool(pinned),
                memory_mib=memory, dimm_mib=dimm, removable_dimms=removable, min_vcpus=min_vcpus,
                min_memory_mib=min_memory)


def host(online='0-7', offline=(1,), free=4096, blocks_mib=0):
    first, last = (int(x) for x in online.split('-'))
    return dict(online_cpus=list(range(first, last + 1)), cpus_offline=list(offline), free_memory_mib=free,
                blocks_offline_mib=blocks_mib)


def test_pinned_vms_on_the_cpu_are_re_pinned_when_the_rest_has_room():
    plan = plan_isolation(host(), [vm('a', pinned=[1]), vm('b', pinned=[1]), vm('c', pinned=[0, 1]), vm('d')])
    assert plan['feasible'] and plan['repin'] == ['a', 'b', 'c']
    assert plan['shrink'] == [] and plan['migrate'] == []
    assert plan['vms'] == dict(a='re-pin', b='re-pin', c='re-pin', d='unchanged')


def test_no_room_and_nothing_allowed_stops_with_the_limit():
    plan = plan_isolation(host('0-1', offline=[1]), [vm('a', pinned=[0]), vm('b', pinned=[1])],
                          dict(allow_shrink=True, allow_migration=False))
    assert not plan['feasible']
    assert 'the pinned VMs would have 2 vCPUs on the 1 CPUs that stay online (0), above the 1' in plan['refusal']
    assert 'migration is not allowed' in plan['refusal']
    assert plan['shrink'] == []   # b declares no minimum: never shrunk


def test_a_declared_minimum_lets_a_vm_shrink_and_stay():
    plan = plan_isolation(host('0-1', offline=[1]), [vm('a', vcpus=2, pinned=[0, 1], min_vcpus=1), vm('b')])
    assert plan['feasible']
    assert plan['shrink'] == [dict(name='a', vcpus=1, memory_mib=256, vcpus_off=[1], before=dict(vcpus=2, memory_mib=256))]
    assert plan['vms']['a'] == 'shrink and re-pin' and plan['vms']['b'] == 'unchanged'


def test_a_shrink_removes_the_vcpus_it_may_in_their_order():
    a = dict(vm('a', vcpus=4, pinned=[0, 1], min_vcpus=1), removable_vcpus=[2, 3])   # 1 is not hotpluggable
    plan = plan_isolation(host('0-1', offline=[1]), [a])
    assert plan['shrink'][0]['vcpus'] == 2 and plan['shrink'][0]['vcpus_off'] == [2, 3]
    assert not plan['feasible']   # 2 pinned vCPUs still on 1 CPU: the floor is what cannot be removed


def test_migration_when_shrinking_is_not_enough():
    plan = plan_isolation(host('0-1', offline=[1]), [vm('a', vcpus=2, pinned=[0, 1], min_vcpus=2), vm('b', pinned=[0])],
                          dict(allow_migration=True))
    assert plan['feasible'] and plan['migrate'] == ['a'] and plan['limits']['cpus']['load_after'] == 1


def test_memory_short_shrinks_whole_dimms_within_the_minimum():
    vms = [vm('a', memory=1024, dimm=128, removable=4, min_memory=768), vm('b', memory=512, dimm=128, removable=2)]
    plan = plan_isolation(dict(host(offline=()), blocks_offline_mib=512, free_memory_mib=300), vms)
    assert plan['feasible']
    assert [(s['name'], s['memory_mib']) for s in plan['shrink']] == [('a', 768)]
    assert plan['limits']['memory']['free_after'] == 300 - 512 + 256


def test_the_last_cpu_is_refused():
    with pytest.raises(HotplugError, match='no online CPU left'):
        plan_isolation(host('0-1', offline=[0, 1]), [])


# --------------------------------------------------------------------------
# properties

@st.composite
def scenario(draw):
    cpus = draw(st.integers(1, 8))
    online = list(range(cpus))
    offline = sorted(draw(st.sets(st.sampled_from(online), max_size=cpus - 1))) if cpus > 1 else []
    vms = []
    for i in range(draw(st.integers(0, 6))):
        vcpus = draw(st.integers(1, 4))
        dimm = draw(st.sampled_from([0, 128]))
        removable = draw(st.integers(0, 4)) if dimm else 0
        memory = 256 + removable * dimm + draw(st.integers(0, 2)) * 128
        vms.append(vm('vm%d' % i, vcpus=vcpus, pinned=draw(st.sets(st.sampled_from(online), max_size=2)),
                      memory=memory, dimm=dimm, removable=removable,
                      min_vcpus=draw(st.one_of(st.none(), st.integers(1, vcpus))),
                      min_memory=draw(st.one_of(st.none(), st.integers(128, memory)))))
    the_host = dict(online_cpus=online, cpus_offline=offline, free_memory_mib=draw(st.integers(0, 2048)),
                    blocks_offline_mib=draw(st.sampled_from([0, 128, 512, 1024])))
    conf = dict(allow_shrink=draw(st.booleans()), allow_migration=draw(st.booleans()),
                cpu_overcommit=draw(st.sampled_from([1.0, 1.5, 2.0])), reserve_memory_mib=draw(st.sampled_from([0, 64])))
    return the_host, vms, conf


SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(scenario())
def test_a_feasible_plan_keeps_both_limits(case):
    the_host, vms, conf = case
    plan = plan_isolation(the_host, vms, conf)
    limits = plan['limits']
    if plan['feasible']:
        assert not the_host['cpus_offline'] or limits['cpus']['load_after'] <= limits['cpus']['capacity']
        assert not the_host['blocks_offline_mib'] or limits['memory']['free_after'] >= limits['memory']['reserve']
    else:
        assert plan['refusal']


@SETTINGS
@given(scenario())
def test_shrinks_stay_within_declared_minimums_and_only_when_allowed(case):
    the_host, vms, conf = case
    plan = plan_isolation(the_host, vms, conf)
    by_name = dict((v['name'], v) for v in vms)
    if not conf['allow_shrink']:
        assert plan['shrink'] == []
    if not conf['allow_migration']:
        assert plan['migrate'] == []
    for entry in plan['shrink']:
        raw = by_name[entry['name']]
        assert entry['name'] not in plan['migrate']
        assert len(entry['vcpus_off']) == raw['vcpus'] - entry['vcpus'] and 0 not in entry['vcpus_off']
        if entry['vcpus'] != raw['vcpus']:
            assert raw['min_vcpus'] is not None and entry['vcpus'] >= max(raw['min_vcpus'], raw['fixed_vcpus'])
        if entry['memory_mib'] != raw['memory_mib']:
            assert raw['min_memory_mib'] is not None and entry['memory_mib'] >= raw['min_memory_mib']
            assert (raw['memory_mib'] - entry['memory_mib']) % raw['dimm_mib'] == 0
            assert (raw['memory_mib'] - entry['memory_mib']) // raw['dimm_mib'] <= raw['removable_dimms']


@SETTINGS
@given(scenario())
def test_nothing_changes_when_the_limits_already_hold(case):
    the_host, vms, conf = case
    bare = plan_isolation(the_host, vms, dict(conf, allow_shrink=False, allow_migration=False))
    if bare['feasible']:
        plan = plan_isolation(the_host, vms, conf)
        assert plan['shrink'] == [] and plan['migrate'] == []


@SETTINGS
@given(scenario(), st.randoms())
def test_the_plan_does_not_depend_on_the_order_of_the_vms(case, rnd):
    the_host, vms, conf = case
    shuffled = list(vms)
    rnd.shuffle(shuffled)
    assert plan_isolation(the_host, vms, conf) == plan_isolation(the_host, shuffled, conf)
