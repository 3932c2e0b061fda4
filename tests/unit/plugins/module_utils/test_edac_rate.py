"""The EDAC rate planner: invariants held by hypothesis over generated error timelines, and a few worked cases.

A timeline is what really happened to one component: at each sample time, the errors since the sample before
and whether the counters were reset first.  The totals EDAC would have shown are derived from it, so the
tests know the true number of errors within the window and can hold the planner's count against it.
"""
from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from ansible_collections.kvm.hotplug.plugins.module_utils._host.edac import analyze, read_edac, read_edac_cpus
from ansible_collections.kvm.hotplug.plugins.module_utils._host.edac_rate import (
    DEFAULT_THRESHOLD, DEFAULT_WINDOW_HOURS, components_from_edac, plan_detection,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import SysfsTree, read_host
from ansible_collections.kvm.hotplug.tests.unit.plugins.sysfs_trees import (
    add_edac_controller, add_edac_cpus, control, two_node_host,
)

HOUR = 3600.0
KEY = 'mc0/dimm0'
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def timeline(draw):
    """dict(times, totals, errors, resets, window_hours, threshold): samples oldest first, the last one is now."""
    count = draw(st.integers(1, 12))
    gaps = draw(st.lists(st.floats(0.1, 20.0), min_size=count, max_size=count))
    times = [1000000.0]
    for gap in gaps:
        times.append(times[-1] + gap * HOUR)
    errors = [0] + draw(st.lists(st.integers(0, 40), min_size=count, max_size=count))
    resets = [False] + draw(st.lists(st.booleans(), min_size=count, max_size=count))
    totals = [draw(st.integers(0, 200))]
    for index in range(1, count + 1):
        totals.append((0 if resets[index] else totals[-1]) + errors[index])
    return dict(times=times, errors=errors, resets=resets, totals=totals,
                window_hours=draw(st.sampled_from([1, 6, 24, 72])), threshold=draw(st.integers(1, 120)))


def run(line, ue=0, totals=None, reset_at=None):
    totals = line['totals'] if totals is None else totals
    history = [dict(timestamp=t, counters={KEY: dict(ce=ce, ue=0)}) for t, ce in zip(line['times'], totals[:-1])]
    component = dict(key=KEY, kind='dimm', counters=dict(ce=totals[-1], ue=ue))
    if reset_at is not None:
        component['reset_at'] = reset_at
    return plan_detection([component], history, line['times'][-1], line['threshold'], line['window_hours'])


def counted(result):
    return result['findings'][0]['corrected_in_window'] if result['findings'] else None


def seen_errors(line):
    """The errors of the intervals whose both samples are inside the window (what any count can see)."""
    start = line['times'][-1] - line['window_hours'] * HOUR
    return sum(e for i, e in enumerate(line['errors']) if i and line['times'][i - 1] >= start)


def resets_show(line):
    """Every reset is followed by a total lower than the one before it."""
    return all(line['totals'][i] < line['totals'][i - 1] for i, reset in enumerate(line['resets']) if reset)


def count_with_threshold_one(line):
    """The planner's count, whether or not it crosses the timeline's threshold."""
    result = run(dict(line, threshold=1))
    return counted(result) or 0


@SETTINGS
@given(timeline())
def test_count_is_exact_when_every_reset_shows(line):
    assume(resets_show(line))
    assert count_with_threshold_one(line) == seen_errors(line)


@SETTINGS
@given(timeline())
def test_count_never_exceeds_the_errors_in_the_window(line):
    # a reset hidden by more errors than the total before it is counted as no reset: less, never more
    assert count_with_threshold_one(line) <= seen_errors(line)


def with_extra_errors(line, index, extra):
    """The timeline with `extra` more errors in interval `index`: every total from there to the next reset grows."""
    more = copy.deepcopy(line)
    more['errors'][index] += extra
    for i in range(index, len(more['totals'])):
        if i > index and more['resets'][i]:
            break
        more['totals'][i] += extra
    return more


def assert_never_unflagged(line, more):
    assert count_with_threshold_one(more) >= count_with_threshold_one(line)
    if run(line)['findings']:
        assert run(more)['findings']


# Totals alone cannot tell "100, reset, 105" from "100, then 5 more": errors that lift the total after a reset
# above the one before it hide the reset, and the count, a lower bound, drops (see the worked case below).
# So monotonicity holds for the resets the totals show, which is what the two properties fix.

@SETTINGS
@given(timeline(), st.integers(1, 60))
def test_more_errors_since_the_last_reading_never_unflag(line, extra):
    last = len(line['errors']) - 1
    more = with_extra_errors(line, last, extra)
    shows = line['totals'][last] < line['totals'][last - 1]
    assume(shows == (more['totals'][last] < more['totals'][last - 1]))
    assert_never_unflagged(line, more)


@SETTINGS
@given(timeline(), st.data())
def test_more_errors_anywhere_never_unflag_when_the_resets_show(line, data):
    more = with_extra_errors(line, data.draw(st.integers(1, len(line['errors']) - 1)), data.draw(st.integers(1, 60)))
    assume(resets_show(line) and resets_show(more))
    assert_never_unflagged(line, more)


@SETTINGS
@given(timeline(), st.integers(0, 5), st.integers(1, 5))
def test_more_uncorrected_errors_never_unflag(line, ue, extra):
    if run(line, ue=ue)['findings']:
        assert run(line, ue=ue + extra)['findings']


@SETTINGS
@given(timeline(), st.integers(1, 5))
def test_uncorrected_errors_always_flag(line, ue):
    result = run(line, ue=ue)
    assert [f['key'] for f in result['findings']] == [KEY]
    assert result['findings'][0]['uncorrected'] == ue and 'uncorrected' in result['findings'][0]['reason']


@SETTINGS
@given(timeline())
def test_state_keeps_the_window_and_the_current_reading(line):
    now = line['times'][-1]
    start = now - line['window_hours'] * HOUR
    state = run(line)['state']
    assert [r['timestamp'] for r in state] == [t for t in line['times'] if t >= start]
    assert state[-1] == dict(timestamp=now, counters={KEY: dict(ce=line['totals'][-1], ue=0)})


@SETTINGS
@given(timeline(), st.lists(st.tuples(st.floats(1.0, 1000.0), st.integers(0, 10 ** 6)), max_size=5))
def test_readings_older_than_the_window_change_nothing(line, old):
    now = line['times'][-1]
    start = now - line['window_hours'] * HOUR
    history = [dict(timestamp=t, counters={KEY: dict(ce=ce, ue=0)}) for t, ce in zip(line['times'], line['totals'])]
    history.pop()
    component = [dict(key=KEY, counters=dict(ce=line['totals'][-1], ue=0))]
    stale = [dict(timestamp=start - age * HOUR, counters={KEY: dict(ce=ce, ue=0)}) for age, ce in old]
    plain = plan_detection(component, history, now, line['threshold'], line['window_hours'])
    padded = plan_detection(component, stale + history, now, line['threshold'], line['window_hours'])
    assert padded == plain


@SETTINGS
@given(timeline(), st.randoms(use_true_random=False))
def test_deterministic_and_pure(line, rnd):
    history = [dict(timestamp=t, counters={KEY: dict(ce=ce, ue=0), 'cpu1': dict(ce=ce // 2, ue=0)})
               for t, ce in zip(line['times'], line['totals'][:-1])]
    components = [dict(key=KEY, counters=dict(ce=line['totals'][-1], ue=0)),
                  dict(key='cpu1', counters=dict(ce=line['totals'][-1], ue=0))]
    frozen = copy.deepcopy((components, history))
    first = plan_detection(components, history, line['times'][-1], line['threshold'], line['window_hours'])
    assert (components, history) == frozen      # the inputs are not changed
    shuffled = list(history)
    rnd.shuffle(shuffled)
    assert plan_detection(list(reversed(components)), shuffled, line['times'][-1], line['threshold'],
                          line['window_hours']) == first


@SETTINGS
@given(timeline(), st.floats(0.0, 1.0))
def test_a_known_reset_inside_the_window_counts_from_zero(line, where):
    """With the reset time known (seconds_since_reset), the errors since it count, and older readings do not."""
    now = line['times'][-1]
    reset_at = now - where * line['window_hours'] * HOUR
    current = line['totals'][-1]
    component = dict(key=KEY, counters=dict(ce=current, ue=0), reset_at=reset_at)
    no_history = plan_detection([component], [], now, 1, line['window_hours'])
    assert counted(no_history) == (current or None)
    history = [dict(timestamp=t, counters={KEY: dict(ce=ce, ue=0)}) for t, ce in zip(line['times'], line['totals'])]
    history.pop()
    after_reset = [r for r in history if r['timestamp'] >= reset_at]
    full = plan_detection([component], history, now, 1, line['window_hours'])
    assert full['findings'] == plan_detection([component], after_reset, now, 1, line['window_hours'])['findings']


# --------------------------------------------------------------------------
# worked cases

def test_rasdaemon_defaults():
    assert (DEFAULT_THRESHOLD, DEFAULT_WINDOW_HOURS) == (50, 24)


def test_fifty_corrected_errors_in_a_day_cross_and_forty_nine_do_not():
    now = 100 * HOUR
    history = [dict(timestamp=now - 23 * HOUR, counters={KEY: dict(ce=1000, ue=0)})]
    crossing = plan_detection([dict(key=KEY, counters=dict(ce=1050, ue=0))], history, now)
    below = plan_detection([dict(key=KEY, counters=dict(ce=1049, ue=0))], history, now)
    assert crossing['findings'][0]['corrected_in_window'] == 50
    assert crossing['findings'][0]['reason'] == '50 corrected errors within 24 h (threshold 50)'
    assert below['findings'] == []


def test_errors_older_than_the_window_do_not_count():
    now = 100 * HOUR
    history = [dict(timestamp=now - 30 * HOUR, counters={KEY: dict(ce=0, ue=0)}),
               dict(timestamp=now - 20 * HOUR, counters={KEY: dict(ce=400, ue=0)})]
    result = plan_detection([dict(key=KEY, counters=dict(ce=420, ue=0))], history, now)
    assert result['findings'] == []
    assert [r['timestamp'] for r in result['state']] == [now - 20 * HOUR, now]


def test_a_reset_counts_the_errors_since_it():
    now = 100 * HOUR
    history = [dict(timestamp=now - 10 * HOUR, counters={KEY: dict(ce=30, ue=0)}),
               dict(timestamp=now - 5 * HOUR, counters={KEY: dict(ce=45, ue=0)})]
    result = plan_detection([dict(key=KEY, counters=dict(ce=35, ue=0))], history, now)
    finding = result['findings'][0]
    assert (finding['corrected_in_window'], finding['resets']) == (50, 1)


def test_a_reset_hidden_by_more_errors_counts_as_none():
    """100, reset, 10 errors: 10 counted; 100, reset, 105 errors reads as 5 more: the lower bound, never more."""
    now = 100 * HOUR
    history = [dict(timestamp=now - HOUR, counters={KEY: dict(ce=100, ue=0)})]
    shown = plan_detection([dict(key=KEY, counters=dict(ce=10, ue=0))], history, now, threshold=1)
    hidden = plan_detection([dict(key=KEY, counters=dict(ce=105, ue=0))], history, now, threshold=1)
    counts = [(f['corrected_in_window'], f['resets']) for f in shown['findings'] + hidden['findings']]
    assert counts == [(10, 1), (5, 0)]
    # the controller's reset time settles it
    known = plan_detection([dict(key=KEY, counters=dict(ce=105, ue=0), reset_at=now - 60)], history, now,
                           threshold=1)
    assert known['findings'][0]['corrected_in_window'] == 105


def test_future_and_malformed_readings_are_dropped():
    now = 100 * HOUR
    history = [dict(timestamp=now + HOUR, counters={KEY: dict(ce=0, ue=0)}), dict(timestamp='yesterday'),
               'garbage', dict(timestamp=now - HOUR, counters={KEY: dict(ce='x', ue=None)})]
    result = plan_detection([dict(key=KEY, counters=dict(ce=60, ue=0))], history, now)
    assert [r['timestamp'] for r in result['state']] == [now - HOUR, now]
    assert result['findings'][0]['corrected_in_window'] == 60    # the unreadable counter read as 0


@pytest.mark.parametrize('threshold, window', [(0, 24), (50, 0), (50, -1)])
def test_bad_settings_are_refused(threshold, window):
    with pytest.raises(ValueError):
        plan_detection([], [], 0.0, threshold, window)


# --------------------------------------------------------------------------
# components from a simulated EDAC tree

def test_components_of_dimms_csrows_controllers_and_cpus(simsysfs):
    root = two_node_host(simsysfs)
    add_edac_controller(root, 0, 'Skylake Socket#0 IMC#0', dimms=[
        dict(label='CPU0_DIMM_A1', location='channel 0 slot 0', ce=7),
        dict(label='CPU0_DIMM_B1', location='channel 1 slot 0', ue=1)],
        csrows=[dict(ce=7, channels=[(7, 'CPU0_DIMM_A1'), (0, 'CPU0_DIMM_B1')])])
    add_edac_controller(root, 1, 'Skylake Socket#1 IMC#0', ce_noinfo=2,
                        csrows=[dict(ce=3, channels=[(3, 'CPU1_DIMM_A1')])])
    add_edac_cpus(root, [dict(id=0), dict(id=1, ce=60)])
    tree = SysfsTree(root)
    edac = read_edac(tree)
    analyze(read_host(tree), edac, dict(available=False))
    components = {c['key']: c for c in components_from_edac(edac, read_edac_cpus(tree), now=5000.0)}
    # mc0 lists DIMMs, so its csrow (the same errors again) is no component; mc1 only has csrows
    assert sorted(components) == ['cpu0', 'cpu1', 'mc0/dimm0', 'mc0/dimm1', 'mc1', 'mc1/csrow0']
    dimm = components['mc0/dimm1']
    assert dimm['label'] == 'CPU0_DIMM_B1' and dimm['counters'] == dict(ce=0, ue=1)
    assert dimm['covers'] == dict(memory_blocks=[0, 1, 2, 3, 32, 33], nodes=[0], cpus=[])
    assert dimm['mapping']['level'] == 'node' and 4000.0 < dimm['reset_at'] <= 5000.0
    assert components['mc1/csrow0']['label'] == 'CPU1_DIMM_A1'
    assert components['mc1/csrow0']['covers']['memory_blocks'] == [4, 5, 34, 35]
    assert components['mc1']['counters'] == dict(ce=2, ue=0)
    assert components['cpu1']['counters'] == dict(ce=60, ue=0) and components['cpu1']['covers']['cpus'] == [1]


def test_raised_counters_cross_on_the_next_reading(simsysfs):
    root = two_node_host(simsysfs)
    add_edac_controller(root, 0, 'Skylake Socket#0 IMC#0', dimms=[dict(label='A1', location='channel 0 slot 0')])
    add_edac_cpus(root, [dict(id=1)])
    tree = SysfsTree(root)

    def detect(now, history):
        edac = read_edac(tree)
        analyze(read_host(tree), edac, dict(available=False))
        # no reset time: only the readings decide
        components = components_from_edac(edac, read_edac_cpus(tree))
        return plan_detection(components, history, now)

    first = detect(1000.0, [])
    assert first['findings'] == []
    control(root, 'edac mc0/dimm0/dimm_ce_count +50')
    control(root, 'edac cpu1/ce_count +49')
    second = detect(2000.0, first['state'])
    assert [(f['key'], f['corrected_in_window']) for f in second['findings']] == [('mc0/dimm0', 50)]
    assert second['findings'][0]['covers']['memory_blocks'] == [0, 1, 2, 3, 32, 33]
    control(root, 'edac cpu1/ue_count 1')
    third = detect(3000.0, second['state'])
    assert [f['key'] for f in third['findings']] == ['cpu1', 'mc0/dimm0']
    assert len(third['state']) == 3
