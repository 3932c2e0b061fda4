"""The evacuation planner (_placement/evacuate.py): worked cases, and its invariants held by hypothesis."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import parse_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._host.plan import plan_host_change
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.evacuate import (
    _source_host, plan_hypervisor_evacuation, plan_is_empty, plan_restore,
)


def two_nodes(domains=(), free=6000, node_free=(3000, 3000), fixed='0'):
    """CPUs 0-3 on node 0 and 4-7 on node 1; memory blocks 0-7 (node 0) and 8-15 (node 1), 128 MiB each."""
    return dict(name='hv1', online_cpus='0-7', fixed_cpus=fixed, free_memory_mib=free,
                memory_blocks=dict((str(i), dict(node=i // 8, removable=True, zones=['Movable'], online=True))
                                   for i in range(16)),
                numa_nodes={'0': dict(cpus='0-3', free_mib=node_free[0]), '1': dict(cpus='4-7', free_mib=node_free[1])},
                domains=list(domains))


def dest(name, cpus=16, memory=16384, vcpu_max=64, **extra):
    out = dict(name=name, cpus_total=cpus, cpus_free=cpus, memory_free_mib=memory, vcpu_max=vcpu_max, guests=0)
    out.update(extra)
    return out


def by_name(entries):
    return dict((e['name'], e) for e in entries)


# --------------------------------------------------------------------------
# staying and leaving

def test_a_pinned_vm_stays_by_repinning_and_an_unpinned_one_just_stays():
    source = two_nodes([dict(name='pinned', vcpus=2, memory_mib=512, vcpupin={'0': '1-2', '1': '3'}, emulatorpin='3'),
                        dict(name='free', vcpus=2, memory_mib=512)])
    plan = plan_hypervisor_evacuation(source, dict(cpus='3'), [dest('hv2')])
    stay = by_name(plan['stay'])
    assert sorted(stay) == ['free', 'pinned'] and plan['leave'] == [] and plan['waves'] == []
    # vCPU 0 keeps 1-2; vCPU 1 loses its only CPU and goes to the CPU of its pinning with the fewest pins (1, then 2)
    assert stay['pinned']['pinning'] == dict(vcpupin={'1': '1'}, emulatorpin='1-2')
    assert stay['free']['pinning'] is None and 'numatune' not in stay['free']
    assert plan['offline'] == dict(cpus=[3], memory_blocks=[], numa_nodes=[])
    assert not plan_is_empty(plan)


def test_pinned_vcpus_without_enough_cpus_left_leave_unless_overcommitted():
    vm = dict(name='tight', vcpus=3, memory_mib=512, vcpupin={'0': '4', '1': '5', '2': '6'})
    plan = plan_hypervisor_evacuation(two_nodes([vm]), dict(cpus='6'), [dest('hv2')])
    assert by_name(plan['leave'])['tight']['reason'] == \
        '3 pinned vCPUs keep only CPU 4-5 of their pinning 4-6 (cpu_overcommit 1.0)'
    plan = plan_hypervisor_evacuation(two_nodes([vm]), dict(cpus='6'), [dest('hv2', cpus_total=16)], dict(cpu_overcommit=2))
    assert by_name(plan['stay'])['tight']['pinning'] == dict(vcpupin={'2': '4'})


def test_memory_bound_to_a_removed_node_leaves():
    source = two_nodes([dict(name='strict1', vcpus=1, memory_mib=512, numatune=dict(mode='strict', nodeset='1')),
                        dict(name='strict01', vcpus=1, memory_mib=512, numatune=dict(mode='strict', nodeset='0-1')),
                        dict(name='interleave01', vcpus=1, memory_mib=512, numatune=dict(mode='interleave', nodeset='0-1')),
                        dict(name='preferred1', vcpus=1, memory_mib=512, numatune=dict(mode='preferred', nodeset='1')),
                        dict(name='memnode', vcpus=1, memory_mib=512,
                             numatune=dict(mode='strict', nodeset='0-1', memnodes={'0': '1'}))])
    plan = plan_hypervisor_evacuation(source, dict(numa_nodes='1'), [dest('hv2'), dest('hv3')])
    leave, stay = by_name(plan['leave']), by_name(plan['stay'])
    # a binding that keeps some of its nodes leaves too: nothing narrows a running domain's nodeset, and
    # host_resource_offline would refuse to take the node's last memory after the migrations
    assert sorted(leave) == ['interleave01', 'memnode', 'strict01', 'strict1']
    assert leave['strict1']['reason'] == 'its memory is bound (numatune strict) to NUMA node 1 only, which goes offline'
    assert leave['strict01']['reason'] == ("its memory is bound (numatune strict) to NUMA nodes 0-1 and node 1 goes "
                                           "offline; a running domain's nodeset is not narrowed, it moves")
    assert 'numatune interleave' in leave['interleave01']['reason']
    assert 'guest NUMA cell 0' in leave['memnode']['reason']
    assert sorted(stay) == ['preferred1'] and stay['preferred1']['pinning'] is None
    assert 'prefers NUMA node 1' in stay['preferred1']['notes'][0]
    assert plan['offline'] == dict(cpus=[4, 5, 6, 7], memory_blocks=list(range(8, 16)), numa_nodes=[1])


def test_a_node_that_loses_its_last_cpu_counts_as_gone_for_bound_memory():
    # host_resource_offline refuses to take the last CPU of a node a running domain's memory is bound to
    source = two_nodes([dict(name='bound', vcpus=1, memory_mib=512, numatune=dict(mode='strict', nodeset='1'))])
    plan = plan_hypervisor_evacuation(source, dict(cpus='4-7'), [dest('hv2')])
    assert [e['name'] for e in plan['leave']] == ['bound']


def test_bound_memory_that_must_move_needs_room_on_the_nodes_that_stay():
    # blocks 8-13 (768 MiB of node 1) go, node 1 keeps blocks 14-15: the binding keeps both nodes, and what node 1
    # loses must fit in the free memory left on nodes 0-1
    vm = dict(name='big', vcpus=1, memory_mib=2048, numatune=dict(mode='strict', nodeset='0-1'))
    plan = plan_hypervisor_evacuation(two_nodes([vm], node_free=(100, 600)), dict(memory_blocks='8-13'),
                                      [dest('hv2')])
    assert 'up to 768 MiB of its memory bound to NUMA node 0-1 must move within them; they have 100 MiB free' in \
        by_name(plan['leave'])['big']['reason']
    plan = plan_hypervisor_evacuation(two_nodes([vm], node_free=(1000, 3000)), dict(memory_blocks='8-13'),
                                      [dest('hv2')])
    assert [s['name'] for s in plan['stay']] == ['big'] and plan['leave'] == []


def test_the_source_must_hold_what_stays():
    vms = [dict(name='a', vcpus=2, memory_mib=1024), dict(name='b', vcpus=2, memory_mib=512),
           dict(name='c', vcpus=2, memory_mib=256)]
    plan = plan_hypervisor_evacuation(two_nodes(vms), dict(cpus='3-7'), [dest('hv2')])
    # 3 CPUs stay online for 6 vCPUs: the largest leave first until 3 hold the rest
    assert [e['name'] for e in plan['leave']] == ['a', 'b'] and [e['name'] for e in plan['stay']] == ['c']
    assert 'the 3 CPUs that stay online' in by_name(plan['leave'])['a']['reason']
    # memory: 1200 MiB free, node 1's 1024 MiB go: 176 MiB left, 200 reserved; the largest leaving frees enough
    plan = plan_hypervisor_evacuation(two_nodes(vms, free=1200), dict(memory_blocks='8-15'), [dest('hv2')],
                                      dict(reserve_memory_mib=200))
    assert [e['name'] for e in plan['leave']] == ['a']
    assert plan['leave'][0]['reason'] == 'the source would lack 24 MiB once 8 memory blocks (1024 MiB) go offline ' \
                                         '(reserve 200 MiB)'


def test_all_evacuates_everything_and_offlines_nothing():
    vms = [dict(name='vm%d' % i, vcpus=1, memory_mib=256 * (i + 1), vcpupin={'0': '0'}) for i in range(5)]
    plan = plan_hypervisor_evacuation(two_nodes(vms), 'all', [dest('hv2', memory=1200), dest('hv3', memory=3000)],
                                      dict(parallel=3, per_destination=2))
    assert plan['stay'] == [] and sorted(e['name'] for e in plan['leave']) == ['vm%d' % i for i in range(5)]
    assert plan['offline'] == dict(cpus=[], memory_blocks=[], numa_nodes=[])
    # largest first, each to the most memory left: vm4 (1280) and vm3 (1024) to hv3 (696 left), vm2 (768) to hv2
    # (432 left), vm1 (512) to hv3, vm0 (256) to hv2
    assert dict((e['name'], e['destination']) for e in plan['leave']) == dict(
        vm4='hv3', vm3='hv3', vm2='hv2', vm1='hv3', vm0='hv2')
    assert plan['destinations'] == dict(hv2=dict(vcpus=2, memory_mib=1024, guests=2),
                                        hv3=dict(vcpus=3, memory_mib=2816, guests=3))
    # at most 3 at once, at most 2 into one destination
    assert [[(m['name'], m['destination']) for m in w] for w in plan['waves']] == [
        [('vm2', 'hv2'), ('vm3', 'hv3'), ('vm4', 'hv3')], [('vm0', 'hv2'), ('vm1', 'hv3')]]
    assert by_name(plan['leave'])['vm1']['wave'] == 1
    with pytest.raises(HotplugError) as caught:
        plan_hypervisor_evacuation(two_nodes(vms), 'all', [])
    assert caught.value.msg.startswith('refusing to evacuate hv1: domain vm4 fits no destination: no destination was '
                                       'given; 4 more domains fit nowhere: vm0, vm1, vm2, vm3')


def test_a_vcpu_maximum_above_every_destination_is_refused_naming_the_limit():
    vms = [dict(name='wide', vcpus=4, vcpus_max=64, memory_mib=1024, machine='pc-q35-8.2'), dict(name='small', vcpus=1, memory_mib=256)]
    with pytest.raises(HotplugError) as caught:
        plan_hypervisor_evacuation(two_nodes(vms), 'all', [dest('hv2', vcpu_max=32, machine='pc-q35-8.2', virt_type='kvm'),
                                                           dest('hv3', vcpu_max={'pc-q35-8.2': 48})])
    msg = caught.value.msg
    assert '\n' not in msg
    assert msg.startswith('refusing to evacuate hv1: domain wide fits no destination: the definition of domain wide '
                          'would not start on the destination: 64 vCPUs are above the limit of 32 vCPUs of machine '
                          'type pc-q35-8.2, kvm virtualization')
    assert msg.endswith('(hv2, hv3); nothing was moved')
    assert caught.value.details['unplaceable'] == [dict(name='wide', vcpus=4, vcpus_max=64, memory_mib=1024, reasons=[  # the first as example
        dict(check='vcpu_max', destinations=['hv2', 'hv3'],
             limit='the definition of domain wide would not start on the destination: 64 vCPUs are above the limit of '
                   '32 vCPUs of machine type pc-q35-8.2, kvm virtualization (the hypervisor\'s domain capabilities)')])]


def test_an_incompatible_cpu_goes_to_a_compatible_destination_or_is_refused():
    vm = dict(name='sky', vcpus=2, memory_mib=1024, cpu_model='Skylake-Server')
    hv2 = dest('hv2', memory=8000, cpu_compare={'Skylake-Server': 'incompatible'},
               cpu_detail={'Skylake-Server': 'Host CPU does not provide required features: avx512f'})
    hv3 = dest('hv3', memory=4000, cpu_compare={'Skylake-Server': 'superset'})
    plan = plan_hypervisor_evacuation(two_nodes([vm]), 'all', [hv2, hv3])
    assert plan['leave'][0]['destination'] == 'hv3'
    with pytest.raises(HotplugError) as caught:
        plan_hypervisor_evacuation(two_nodes([vm]), 'all', [hv2])
    assert caught.value.msg == ('refusing to evacuate hv1: domain sky fits no destination: the CPU of domain sky is '
                                'incompatible with the destination: Host CPU does not provide required features: '
                                'avx512f (hv2); nothing was moved')


def test_capacity_is_counted_placement_after_placement():
    vms = [dict(name='vm%d' % i, vcpus=4, memory_mib=1024) for i in range(4)]
    with pytest.raises(HotplugError) as caught:
        plan_hypervisor_evacuation(two_nodes(vms), 'all', [dest('hv2', cpus=8), dest('hv3', cpus=4)])
    assert 'domain vm3 fits no destination: domain vm3 needs 4 vCPUs, the destination has room for 0 more' \
        in caught.value.msg
    assert [u['name'] for u in caught.value.details['unplaceable']] == ['vm3']
    with pytest.raises(HotplugError) as caught:
        plan_hypervisor_evacuation(two_nodes(vms), 'all', [dest('hv2', memory=2048, guests=3), dest('hv3', memory=1024)],
                                   dict(max_guests=4))
    assert 'the destination runs 4 guests, max_guests is 4' in caught.value.msg


def test_pinned_cpus_must_be_online_on_the_destination_and_names_must_not_clash():
    vm = dict(name='p', vcpus=1, memory_mib=256, vcpupin={'0': '6'})
    plan = plan_hypervisor_evacuation(two_nodes([vm]), 'all', [dest('hv2', online_cpus='0-3'), dest('hv3', memory=1000)])
    assert plan['leave'][0]['destination'] == 'hv3'
    with pytest.raises(HotplugError) as caught:
        plan_hypervisor_evacuation(two_nodes([vm]), 'all', [dest('hv2', online_cpus='0-3', domains=['x']),
                                                            dest('hv3', domains=['p'])])
    reasons = dict((r['check'], r) for r in caught.value.details['unplaceable'][0]['reasons'])
    assert reasons['pinning']['destinations'] == ['hv2'] and reasons['name_uuid']['destinations'] == ['hv3']


@pytest.mark.parametrize('components, fixed, expected', [
    (dict(cpus='0'), '0', 'the kernel marks CPU 0 not hotpluggable'),
    (dict(cpus='0-7'), '', 'offlining CPU 0-7 would leave the host without an online CPU'),
    (dict(cpus='9'), '0', 'unknown CPU 9'),
])
def test_host_refusals_are_host_resource_offlines(components, fixed, expected):
    source = two_nodes([dict(name='a', vcpus=1, memory_mib=256)], fixed=fixed)
    with pytest.raises(HotplugError) as caught:
        plan_hypervisor_evacuation(source, components, [dest('hv2')])
    assert expected in caught.value.msg
    if 'unknown' not in expected:
        host = _source_host(source)
        with pytest.raises(HotplugError) as direct:
            plan_host_change(host, 'offline', parse_cpulist(components['cpus']), ())
        assert caught.value.msg == direct.value.msg


def test_a_block_that_is_not_removable_is_refused():
    source = two_nodes()
    source['memory_blocks']['9']['removable'] = False
    with pytest.raises(HotplugError, match='the kernel marks memory block 9 not removable'):
        plan_hypervisor_evacuation(source, dict(numa_nodes='1'), [])


def test_nothing_left_to_do_is_an_empty_plan():
    source = two_nodes([dict(name='a', vcpus=1, memory_mib=256, vcpupin={'0': '1-7'})])
    source['online_cpus'] = '0-3'
    for i in range(8, 16):
        source['memory_blocks'][str(i)]['online'] = False
    plan = plan_hypervisor_evacuation(source, dict(numa_nodes='1'), [])
    assert plan_is_empty(plan)
    assert plan['offline'] == dict(cpus=[], memory_blocks=[], numa_nodes=[]) and plan['leave'] == []
    assert plan_is_empty(plan_hypervisor_evacuation(dict(name='hv1', domains=[]), 'all', []))


@pytest.mark.parametrize('settings, message', [
    (dict(parallel=0), 'parallel must be at least 1'),
    (dict(cpu_overcommit=0), 'cpu_overcommit must be a number above 0'),
    (dict(paralel=2), 'unknown evacuation setting paralel'),
])
def test_settings_are_checked(settings, message):
    with pytest.raises(HotplugError, match=message):
        plan_hypervisor_evacuation(two_nodes(), 'all', [], settings)


def test_restore_moves_back_only_what_the_record_names_and_runs_once():
    record = dict(a='hv1', b='hv1', c='hv1', d='hv1')
    locations = dict(hv1=['d'], hv2=['a', 'b', 'x'], hv3=['b'])
    assert plan_restore(record, locations) == dict(
        moves=[dict(name='a', source='hv2', destination='hv1')],
        skipped=[dict(name='b', reason='runs on hv2, hv3'), dict(name='c', reason='runs nowhere'),
                 dict(name='d', reason='already back on hv1')])


# --------------------------------------------------------------------------
# properties

MODELS = ('Skylake', 'EPYC', None)


@st.composite
def domain(draw, name, cpus, nodes):
    vcpus = draw(st.integers(1, 4))
    out = dict(name=name, vcpus=vcpus, vcpus_max=draw(st.integers(vcpus, 8) | st.integers(vcpus, 48)),
               memory_mib=draw(st.integers(1, 16)) * 256, cpu_model=draw(st.sampled_from(MODELS)),
               persistent=draw(st.booleans()))
    if draw(st.booleans()):
        pins = st.sets(st.sampled_from(cpus), min_size=1, max_size=3)
        out['vcpupin'] = dict((str(v), ','.join(str(c) for c in draw(pins))) for v in range(draw(st.integers(1, vcpus))))
    if draw(st.integers(0, 3)) == 0:
        out['cpuset'] = ','.join(str(c) for c in draw(st.sets(st.sampled_from(cpus), min_size=1, max_size=4)))
    if draw(st.booleans()):
        out['emulatorpin'] = str(draw(st.sampled_from(cpus)))
    if draw(st.booleans()):
        out['numatune'] = dict(mode=draw(st.sampled_from(['strict', 'restrictive', 'interleave', 'preferred'])),
                               nodeset=','.join(str(n) for n in draw(st.sets(st.sampled_from(nodes), min_size=1))))
    return out


@st.composite
def scenario(draw):
    node_count = draw(st.integers(1, 3))
    per_node = draw(st.integers(1, 4))
    cpus = list(range(node_count * per_node))
    nodes = list(range(node_count))
    blocks = dict((str(b), dict(node=b // 4, removable=draw(st.integers(0, 30)) > 0, online=draw(st.integers(0, 9)) > 0))
                  for b in range(node_count * 4))
    offline_cpus = draw(st.sets(st.sampled_from(cpus[1:]))) if len(cpus) > 1 else set()
    source = dict(name='src', online_cpus=[c for c in cpus if c not in offline_cpus], cpus=cpus, fixed_cpus='0',
                  free_memory_mib=draw(st.integers(0, 8192)), memory_blocks=blocks,
                  numa_nodes=dict((str(n), dict(cpus=list(range(n * per_node, (n + 1) * per_node)),
                                                free_mib=draw(st.integers(0, 4096)))) for n in nodes),
                  domains=[draw(domain('vm%02d' % i, cpus, nodes)) for i in range(draw(st.integers(0, 8)))])
    if draw(st.integers(0, 4)) == 0:
        components = 'all'
    else:
        components = {}
        if len(cpus) > 1 and draw(st.booleans()):
            components['cpus'] = ','.join(str(c) for c in draw(st.sets(st.sampled_from(cpus[1:]), min_size=1)))
        if draw(st.booleans()):
            components['memory_blocks'] = ','.join(draw(st.sets(st.sampled_from(sorted(blocks)), min_size=1)))
        if node_count > 1 and draw(st.booleans()):
            components['numa_nodes'] = str(draw(st.sampled_from(nodes[1:])))
    dests = []
    for d in range(draw(st.integers(0, 4) | st.integers(1, 4))):
        total = draw(st.integers(1, 32))
        dests.append(dict(name='dst%d' % d, cpus_total=total, cpus_free=draw(st.integers(-4, total) | st.just(total)),
                          memory_free_mib=draw(st.integers(0, 32768)), memory_total_mib=32768,
                          vcpu_max=draw(st.sampled_from([None, 16, 64, 64])), guests=draw(st.integers(0, 5)),
                          cpu_compare=dict((m, draw(st.sampled_from(['identical', 'superset', 'incompatible',
                                                                     'not_compared'])))
                                           for m in MODELS if m and draw(st.booleans())),
                          online_cpus=draw(st.sampled_from([None, '0-15', '0-3']))))
    conf = dict(parallel=draw(st.integers(1, 3)), per_destination=draw(st.integers(1, 3)),
                cpu_overcommit=draw(st.sampled_from([1.0, 1.5, 4.0])),
                memory_overcommit=draw(st.sampled_from([1.0, 1.2])), reserve_memory_mib=draw(st.sampled_from([0, 256])))
    if draw(st.booleans()):
        conf['max_guests'] = draw(st.integers(1, 8))
    return source, components, dests, conf


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _plan(case):
    source, components, dests, conf = case
    try:
        plan = plan_hypervisor_evacuation(source, components, dests, conf)
    except HotplugError as exc:
        event('refused: %s' % ('a VM fits nowhere' if 'unplaceable' in exc.details else 'host or input'))
        return None, exc
    event('planned, %s VMs leave' % ('some' if plan['leave'] else 'no'))
    return plan, None


@SETTINGS
@given(scenario())
def test_no_destination_and_no_wave_exceeds_its_limits(case):
    source, _components, dests, conf = case
    plan, _error = _plan(case)
    if plan is None:
        return
    vms = by_name(source['domains'])
    for d in dests:
        mine = [vms[e['name']] for e in plan['leave'] if e['destination'] == d['name']]
        cpu_room = int(d['cpus_total'] * conf['cpu_overcommit']) - (d['cpus_total'] - d['cpus_free'])
        memory_room = (d['memory_free_mib'] + int((conf['memory_overcommit'] - 1) * d['memory_total_mib'])
                       - conf['reserve_memory_mib'])
        if not mine:
            continue        # a destination already over its capacity is fine as long as it gets nothing
        assert sum(v['vcpus'] for v in mine) <= cpu_room
        assert sum(v['memory_mib'] for v in mine) <= memory_room
        if 'max_guests' in conf:
            assert d['guests'] + len(mine) <= conf['max_guests']
        for v in mine:
            assert d['vcpu_max'] is None or v['vcpus_max'] <= d['vcpu_max']
            assert d['cpu_compare'].get(v['cpu_model']) != 'incompatible'
    moved = [m['name'] for wave in plan['waves'] for m in wave]
    assert sorted(moved) == sorted(e['name'] for e in plan['leave'])
    for wave in plan['waves']:
        assert 0 < len(wave) <= conf['parallel']
        for d in set(m['destination'] for m in wave):
            assert sum(1 for m in wave if m['destination'] == d) <= conf['per_destination']


@SETTINGS
@given(scenario())
def test_every_vm_stays_or_leaves_exactly_once_or_the_plan_is_refused(case):
    source, components, _dests, _conf = case
    plan, error = _plan(case)
    names = sorted(d['name'] for d in source['domains'])
    if plan is None:
        assert '\n' not in error.msg and error.msg.endswith('nothing was moved') or 'nothing was changed' in error.msg
        for entry in error.details.get('unplaceable', ()):
            assert entry['name'] in names and entry['reasons']
        return
    stay = [e['name'] for e in plan['stay']]
    leave = [e['name'] for e in plan['leave']]
    assert sorted(stay + leave) == names and not set(stay) & set(leave)
    assert stay == sorted(stay) and leave == sorted(leave)
    if components == 'all':
        assert stay == [] and not any(plan['offline'].values())
    online_after = set(source['online_cpus']) - set(plan['offline']['cpus'])
    assert 0 not in plan['offline']['cpus'] and online_after
    for entry in plan['stay']:
        for key, value in sorted((entry['pinning'] or {}).items()):
            for cpulist in (value.values() if isinstance(value, dict) else [value]):
                assert set(parse_cpulist(cpulist)) <= online_after, (key, cpulist)
    json.dumps(plan)


@SETTINGS
@given(scenario(), st.randoms(use_true_random=False))
def test_the_same_facts_give_the_same_plan_whatever_the_order_of_the_domains(case, rnd):
    source, components, dests, conf = case
    first, error = _plan(case)
    shuffled = dict(source, domains=list(source['domains']))
    rnd.shuffle(shuffled['domains'])
    again, error_again = _plan((shuffled, components, dests, conf))
    if first is None:
        assert error_again is not None and error_again.msg == error.msg and error_again.details == error.details
    else:
        assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
        assert plan_hypervisor_evacuation(source, components, dests, conf) == first
