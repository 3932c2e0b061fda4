from __future__ import annotations

import multiprocessing
import time

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._common.lock import DomainLock
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.waiting import wait_for
from ansible_collections.kvm.hotplug.tests.unit.plugins.fake_clock import FakeClock


def test_wait_for_succeeds_when_condition_turns_true():
    clock = FakeClock()
    values = iter([1, 2, 3, 4])
    done, last, waited = wait_for(lambda: next(values), lambda v: v == 3, timeout=10, interval=1,
                                  sleep=clock.sleep, clock=clock)
    assert (done, last, waited) == (True, 3, 2)


def test_wait_for_times_out_with_last_observation():
    clock = FakeClock()
    done, last, waited = wait_for(lambda: 'pending', lambda v: False, timeout=3, interval=1,
                                  sleep=clock.sleep, clock=clock)
    assert (done, last) == (False, 'pending')
    assert waited >= 3


def test_wait_for_zero_timeout_observes_once():
    calls = []
    done, last, _waited = wait_for(lambda: calls.append(1) or len(calls), lambda v: False, timeout=0)
    assert (done, last, len(calls)) == (False, 1, 1)


def _hold_lock(lock_dir, seconds, ready):
    with DomainLock('uuid-1', 'dom', timeout=1, lock_dirs=(lock_dir,)):
        ready.set()
        time.sleep(seconds)


def test_lock_serializes_and_times_out(tmp_path):
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path), 1.5, ready))
    holder.start()
    try:
        assert ready.wait(5)
        with pytest.raises(HotplugError, match='another kvm.hotplug task is changing domain dom'):
            with DomainLock('uuid-1', 'dom', timeout=0.3, lock_dirs=(str(tmp_path),)):
                pass
        # a different domain is not blocked
        with DomainLock('uuid-2', 'other', timeout=0.3, lock_dirs=(str(tmp_path),)):
            pass
        # once the holder is gone the lock is free
        with DomainLock('uuid-1', 'dom', timeout=5, lock_dirs=(str(tmp_path),)) as lock:
            assert lock.waited > 0
    finally:
        holder.join()


def test_lock_falls_back_to_next_directory(tmp_path):
    blocked = tmp_path / 'file'
    blocked.write_text('not a directory')
    with DomainLock('uuid-3', 'dom', timeout=1, lock_dirs=(str(blocked / 'sub'), str(tmp_path / 'ok'))):
        assert (tmp_path / 'ok' / 'uuid-3.lock').exists()


def test_call_with_deadline_returns_and_raises():
    from ansible_collections.kvm.hotplug.plugins.module_utils._common.waiting import DeadlineExceeded, call_with_deadline
    assert call_with_deadline(lambda a, b: a + b, 1, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        call_with_deadline(lambda: 1 / 0, 1)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        call_with_deadline(time.sleep, 0.2, 5)
    assert time.monotonic() - started < 2
