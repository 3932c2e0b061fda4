"""hypervisor_migration_apply's waves and hypervisor_migration_plan's restore phase (_placement/evacuate_run.py).

The migrations themselves are domain_migrate's, proven on the fleet lab (tests/integration/targets/domain_migrate,
role_hypervisor_migration and the molecule scenario); here a stand-in migrate() records the order and fails on
demand, the failure path the lab cannot produce at a chosen moment."""
from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._placement import evacuate_run
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.evacuate_run import (
    check_migrations, check_policy, move_params, restore_waves, run_waves,
)


def move(name, wave, destination='hv2'):
    return dict(name=name, source='hv1', destination=destination, source_uri='qemu:///system',
                dest_uri='qemu+tcp://%s/system' % destination, wave=wave)


class Recorder(object):
    """A migrate() that records which migrations overlap in time, and fails the ones named."""

    def __init__(self, fail=()):
        self.fail = set(fail)
        self.lock = threading.Lock()
        self.running = set()
        self.overlaps = []
        self.order = []

    def __call__(self, module, one, policy):
        with self.lock:
            self.running.add(one['name'])
            self.overlaps.append(frozenset(self.running))
            self.order.append(one['name'])
        time.sleep(0.01)
        with self.lock:
            self.running.discard(one['name'])
        if one['name'] in self.fail:
            raise HotplugError('destination went away', changed=False, outcome='failed_source_running')
        return dict(changed=True, outcome='migrated', timings=dict(downtime_ms=100, migration_s=1.0, total_s=2.0))


def test_waves_run_in_order_and_a_wave_runs_at_once():
    moves = [move('a', 0), move('b', 0), move('c', 1)]
    recorder = Recorder()
    results, skipped = run_waves(None, moves, {}, migrate=recorder)
    assert [r['name'] for r in results] == ['a', 'b', 'c']
    assert recorder.order[-1] == 'c'
    assert not any('c' in o and ('a' in o or 'b' in o) for o in recorder.overlaps)
    assert skipped == []
    assert all(r['outcome'] == 'migrated' and r['downtime_ms'] == 100 for r in results)


def test_a_failure_finishes_its_wave_and_skips_the_later_waves():
    moves = [move('a', 0), move('b', 0), move('c', 1), move('d', 2)]
    results, skipped = run_waves(None, moves, {}, migrate=Recorder(fail={'a'}))
    assert [(r['name'], r['failed']) for r in results] == [('a', True), ('b', False)]
    assert results[0]['msg'] == 'destination went away'
    assert [(s['name'], s['reason']) for s in skipped] == [('c', 'an earlier wave failed'),
                                                           ('d', 'an earlier wave failed')]


def test_an_unexpected_error_is_a_failed_migration_not_a_lost_thread():
    def broken(module, one, policy):
        raise RuntimeError('boom')
    results, skipped = run_waves(None, [move('a', 0), move('b', 1)], {}, migrate=broken)
    assert results[0]['failed'] and 'boom' in results[0]['msg']
    assert [s['name'] for s in skipped] == ['b']


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=8),
       st.sets(st.integers(min_value=0, max_value=7)))
def test_every_migration_is_done_or_skipped_exactly_once(waves, failing):
    moves = [move('vm%d' % i, w) for i, w in enumerate(waves)]
    fail = set('vm%d' % i for i in failing if i < len(waves))
    results, skipped = run_waves(None, moves, {}, migrate=Recorder(fail=fail))
    names = [r['name'] for r in results] + [s['name'] for s in skipped]
    assert sorted(names) == sorted(m['name'] for m in moves)
    failed_waves = [r['wave'] for r in results if r['failed']]
    if failed_waves:
        assert all(s['wave'] > min(failed_waves) for s in skipped)
        assert all(r['wave'] <= min(failed_waves) for r in results)
    else:
        assert skipped == []


def test_restore_waves_respect_both_limits():
    moves = [dict(name='vm%d' % i) for i in range(5)]
    assert [m['wave'] for m in restore_waves(moves, 3, 2)] == [0, 0, 1, 1, 2]
    assert [m['wave'] for m in restore_waves(moves, 1, 4)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize('policy, words', [
    ({'bandwith': 10}, 'unknown migration policy key bandwith'),
    ({'timeout': 0}, 'timeout must be a whole number of at least 1'),
    ({'timeout': True}, 'timeout must be a whole number'),
    ({'auto_converge': 'yes'}, 'auto_converge must be true or false'),
    ({'timeout_action': 'pause'}, 'timeout_action must be one of abort, postcopy, suspend'),
])
def test_a_bad_policy_is_refused_naming_the_key(policy, words):
    with pytest.raises(HotplugError) as err:
        check_policy(policy)
    assert words in err.value.msg


def test_a_policy_becomes_domain_migrate_params():
    params = move_params(move('a', 0), check_policy(dict(max_downtime_ms=300, timeout=60, bandwidth=None)))
    assert params['name'] == 'a' and params['uri'] == 'qemu:///system'
    assert params['dest_uri'] == 'qemu+tcp://hv2/system'
    assert params['max_downtime_ms'] == 300 and params['timeout'] == 60 and params['bandwidth'] is None
    assert params['live'] is True and params['persistent'] is True and params['timeout_action'] == 'abort'


def test_migrations_are_validated_before_any_runs():
    with pytest.raises(HotplugError, match='lacks dest_uri'):
        check_migrations([dict(move('a', 0), dest_uri='')])
    with pytest.raises(HotplugError, match='listed twice'):
        check_migrations([move('a', 0), move('a', 1)])
    with pytest.raises(HotplugError, match='wave must be a whole number'):
        check_migrations([dict(move('a', 0), wave='first')])
    without = dict(move('a', 0))
    del without['source_uri']
    assert check_migrations([without], 'qemu:///system')[0]['source_uri'] == 'qemu:///system'


def restore_params(**extra):
    params = dict(source='hv1', source_uri='qemu+tcp://127.0.1.1/system', uri=None, parallel=2, per_destination=2,
                  components=None, sysfs_root='/sys',
                  destinations=[dict(name='hv2', uri='qemu+tcp://127.0.1.2/system'),
                                dict(name='hv3', uri='qemu+tcp://127.0.1.3/system')],
                  record=dict(a='hv1', b='hv1', c='hv1', d='hv1', other='hv9'))
    params.update(extra)
    return params


def test_restore_brings_back_what_the_record_names_from_where_it_runs(monkeypatch):
    where = dict(hv1=['d'], hv2=['a', 'x'], hv3=['b'])
    monkeypatch.setattr(evacuate_run, 'running_where', lambda hosts: (where, {}))
    out = evacuate_run.plan_back(restore_params())
    assert [(m['name'], m['source'], m['source_uri'], m['dest_uri'], m['wave']) for m in out['migrations']] == [
        ('a', 'hv2', 'qemu+tcp://127.0.1.2/system', 'qemu+tcp://127.0.1.1/system', 0),
        ('b', 'hv3', 'qemu+tcp://127.0.1.3/system', 'qemu+tcp://127.0.1.1/system', 0)]
    assert 'c: runs nowhere' in out['notes'] and 'd: already back on hv1' in out['notes']
    assert 'other' not in out['record']


def test_restore_needs_source_uri():
    with pytest.raises(HotplugError, match='needs source_uri'):
        evacuate_run.plan_back(restore_params(source_uri=None))
