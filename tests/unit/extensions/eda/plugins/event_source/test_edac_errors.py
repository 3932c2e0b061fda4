"""The kvm.hotplug.edac_errors event source, loaded as ansible-rulebook loads it (runpy) and driven against a
simulated EDAC tree: what it puts on the queue, what it keeps in its state file, and what it refuses."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.kvm.hotplug.tests.unit.plugins.sysfs_trees import (
    add_edac_controller, add_edac_cpus, control, two_node_host,
)

PLUGIN = os.path.join(os.path.dirname(__file__), *([os.pardir] * 6), 'extensions', 'eda', 'plugins', 'event_source',
                      'edac_errors.py')
HOUR = 3600.0


@pytest.fixture
def source():
    """The plugin's globals, run as runpy.run_path does (ansible-rulebook's way).

    Not runpy itself: under ansible-test the collection loader's path hook claims every path below
    ansible_collections/, and run_path then takes the file for a package.  The real runpy, in a Python
    without that loader, is test_loads_without_the_collection_on_sys_path's.
    """
    path = os.path.normpath(PLUGIN)
    with open(path) as handle:
        code = compile(handle.read(), path, 'exec')
    namespace = dict(__name__='<run_path>', __file__=path)
    exec(code, namespace)  # pylint: disable=exec-used
    return namespace


@pytest.fixture
def host(simsysfs):
    """Two nodes; mc0 (socket 0) with two DIMMs, the cpu EDAC device for CPUs 0-3; no errors yet."""
    root = two_node_host(simsysfs)
    add_edac_controller(root, 0, 'Skylake Socket#0 IMC#0', dimms=[
        dict(label='CPU0_DIMM_A1', location='channel 0 slot 0'), dict(label='CPU0_DIMM_B1', location='channel 1 slot 0')])
    add_edac_cpus(root, [dict(id=c) for c in range(4)])
    return root


class MockQueue(object):
    """Collects what the source puts, and stops the source once it has put `wanted` events."""

    def __init__(self, wanted):
        self.events = []
        self.wanted = wanted
        self.done = asyncio.Event()

    async def put(self, event):
        self.events.append(event)
        if len(self.events) >= self.wanted:
            self.done.set()


def run_main(source, args, wanted, timeout=10):
    """Run main() until `wanted` events came (then cancel it, as ansible-rulebook does); the events."""
    async def drive():
        queue = MockQueue(wanted)
        task = asyncio.ensure_future(source['main'](queue, args))
        waiter = asyncio.ensure_future(queue.done.wait())
        await asyncio.wait([task, waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        failed = task.done() and task.exception()
        for pending in (task, waiter):
            pending.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
        if failed:
            raise failed
        return queue.events
    return asyncio.run(drive())


def keys(events):
    return [e['kvm_hotplug']['component']['key'] for e in events]


def test_one_event_per_crossing_component(source, host):
    settings = source['settings_from'](dict(sysfs_root=host, host='hv1'))
    now = source['time'].time()
    control(host, 'edac cpu1/ce_count 10')
    # the controller was reset (simsysfs: loaded) moments ago, so its totals count on the first reading;
    # the cpu device shows no reset time: its first reading is the baseline
    control(host, 'edac mc0/dimm1/dimm_ce_count 60')
    first, state = source['poll_once'](settings, {}, now)
    assert keys(first) == ['mc0/dimm1']
    control(host, 'edac cpu1/ce_count +50')
    control(host, 'edac cpu2/ce_count 49')
    control(host, 'edac mc0/dimm0/dimm_ue_count 1')
    events, state = source['poll_once'](settings, state, now + 60)
    assert keys(events) == ['cpu1', 'mc0/dimm0']
    events = first + events
    by_key = {e['kvm_hotplug']['component']['key']: e for e in events}
    dimm = by_key['mc0/dimm1']
    assert dimm['meta'] == dict(hosts='hv1') and dimm['kvm_hotplug']['host'] == 'hv1'
    assert dimm['kvm_hotplug']['counters'] == dict(ce=60, ue=0) and dimm['kvm_hotplug']['corrected_in_window'] == 60
    assert dimm['kvm_hotplug']['component']['label'] == 'CPU0_DIMM_B1'
    assert dimm['kvm_hotplug']['component']['covers']['memory_blocks'] == [0, 1, 2, 3, 32, 33]
    assert by_key['mc0/dimm0']['kvm_hotplug']['reason'] == '1 uncorrected errors'
    assert by_key['cpu1']['kvm_hotplug']['component']['covers']['cpus'] == [1]
    assert json.loads(json.dumps(events)) == events     # events and state go through JSON unchanged
    assert json.loads(json.dumps(state)) == state


def test_a_component_is_announced_again_only_when_its_counters_change(source, host):
    settings = source['settings_from'](dict(sysfs_root=host, host='hv1'))
    poll = source['poll_once']
    baseline, state = poll(settings, {}, 1000.0)
    assert baseline == []
    control(host, 'edac cpu1/ce_count 55')
    first, state = poll(settings, state, 1030.0)
    same, state = poll(settings, state, 1060.0)
    control(host, 'edac cpu1/ce_count +3')
    raised, state = poll(settings, state, 1120.0)
    assert (keys(first), keys(same), keys(raised)) == (['cpu1'], [], ['cpu1'])
    assert raised[0]['kvm_hotplug']['counters'] == dict(ce=58, ue=0)


def test_a_component_below_the_threshold_again_is_forgotten(source, host):
    settings = source['settings_from'](dict(sysfs_root=host, host='hv1', threshold=5))
    poll = source['poll_once']
    control(host, 'edac mc0/dimm0/dimm_ue_count 1')
    first, state = poll(settings, {}, 1000.0)
    # the administrator resets the controller's counters after replacing the DIMM
    with open(os.path.join(host, 'devices/system/edac/mc/mc0/reset_counters'), 'w') as handle:
        handle.write('1')
    quiet, state = poll(settings, state, 1060.0)
    control(host, 'edac mc0/dimm0/dimm_ue_count 1')
    again, state = poll(settings, state, 1120.0)
    assert (keys(first), keys(quiet), keys(again)) == (['mc0/dimm0'], [], ['mc0/dimm0'])


def test_corrected_errors_spread_beyond_the_window_do_not_cross(source, host):
    settings = source['settings_from'](dict(sysfs_root=host, host='hv1', window_hours=1))
    poll = source['poll_once']
    now = source['time'].time()
    # the cpu device shows no reset time, so only the readings count: 30 errors an hour, 1 hour window
    state = {}
    for hour in range(3):
        control(host, 'edac cpu3/ce_count +30')
        events, state = poll(settings, state, now + hour * HOUR)
        assert events == []
    assert [r['timestamp'] for r in state['readings']] == [now + HOUR, now + 2 * HOUR]


def test_main_puts_the_events_and_keeps_the_state_across_a_restart(source, host, tmp_path):
    state_file = str(tmp_path / 'state' / 'edac_errors.json')
    args = dict(sysfs_root=host, host='hv1', interval=0.05, state_file=state_file)
    control(host, 'edac mc0/dimm0/dimm_ce_count 70')
    assert keys(run_main(source, args, wanted=1)) == ['mc0/dimm0']
    with open(state_file) as handle:
        saved = json.load(handle)
    assert saved['announced'] == {'mc0/dimm0': dict(ce=70, ue=0)} and saved['readings']
    # a restarted source remembers what it announced: only the new crossing comes
    control(host, 'edac mc0/dimm1/dimm_ue_count 2')
    assert keys(run_main(source, args, wanted=1)) == ['mc0/dimm1']


def test_no_edac_tree_means_no_events(source, simsysfs):
    root = two_node_host(simsysfs)
    settings = source['settings_from'](dict(sysfs_root=root, host='hv1'))
    assert source['poll_once'](settings, {}, 1000.0)[0] == []


@pytest.mark.parametrize('args, message', [
    (dict(interval=0), 'interval must be above 0'),
    (dict(threshold=0), 'threshold must be at least 1'),
    (dict(window_hours=-1), 'window_hours above 0'),
    (dict(treshold=5), 'unknown arguments treshold'),
])
def test_bad_arguments_are_refused_before_any_reading(source, args, message):
    with pytest.raises(ValueError, match=message):
        run_main(source, args, wanted=1)


def test_an_unreadable_state_file_starts_afresh(source, tmp_path):
    path = tmp_path / 'state.json'
    path.write_text('{not json')
    assert source['load_state'](str(path)) == {}
    assert source['load_state'](str(tmp_path / 'absent.json')) == {}


def test_loads_without_the_collection_on_sys_path(tmp_path):
    """ansible-rulebook runs the file with runpy in its own Python: the plugin finds the collection itself."""
    installed = tmp_path / 'collections' / 'ansible_collections' / 'kvm'
    installed.mkdir(parents=True)
    (installed / 'hotplug').symlink_to(os.path.realpath(os.path.join(os.path.dirname(PLUGIN), *([os.pardir] * 4))))
    plugin = str(installed / 'hotplug' / 'extensions' / 'eda' / 'plugins' / 'event_source' / 'edac_errors.py')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'ANSIBLE_COLLECTIONS_PATH')}
    code = 'import runpy, sys; m = runpy.run_path(sys.argv[1]); print(m["edac_rate"].DEFAULT_THRESHOLD)'
    out = subprocess.run([sys.executable, '-c', code, plugin], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '50'
