"""domain_migrate's migration call: flags and parameters, and the watcher that carries out timeout_action."""
from __future__ import annotations

import threading

import libvirt
import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._migrate import apply
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.facts import MigrationRequest
from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import FakeLibvirtError


def request(**kwargs):
    return MigrationRequest(name='dom', dest_uri='qemu+tcp://hv2/system', **kwargs)


def test_default_flags_are_a_peer_to_peer_live_move_that_persists_and_undefines():
    flags, names = apply.migration_flags(request())
    assert names == ['peer2peer', 'live', 'persist_dest', 'undefine_source']
    assert flags == (libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST
                     | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)


def test_every_option_reaches_libvirt():
    req = request(persistent=False, undefine_source=False, auto_converge=True, parallel_connections=4, timeout=30,
                  timeout_action='postcopy', bandwidth=100, migrate_uri='tcp://10.0.0.2')
    flags, names = apply.migration_flags(req)
    assert names == ['peer2peer', 'live', 'auto_converge', 'parallel', 'postcopy']
    assert not flags & libvirt.VIR_MIGRATE_PERSIST_DEST and not flags & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    assert apply.migration_params(req) == {libvirt.VIR_MIGRATE_PARAM_URI: 'tcp://10.0.0.2',
                                           libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 100,
                                           libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: 4}


def test_offline_move_has_no_live_options():
    req = request(live=False, bandwidth=5, migrate_uri='tcp://x', auto_converge=True)
    flags, names = apply.migration_flags(req)
    assert names == ['peer2peer', 'offline', 'persist_dest', 'undefine_source']
    assert apply.migration_params(req) == {}


def test_postcopy_flag_only_with_a_timeout():
    assert 'postcopy' not in apply.migration_flags(request(timeout_action='postcopy'))[1]


class SlowMigration(object):
    """A source domain whose migration runs until abortJob, or until postcopy/suspend let it finish."""

    def __init__(self, finish_on=('abort',), fail_action=False):
        self.finish_on = finish_on
        self.fail_action = fail_action
        self.ended = threading.Event()
        self.actions = []
        self.outcome = None

    def jobStats(self, flags=0):
        if self.ended.is_set():
            return {'type': libvirt.VIR_DOMAIN_JOB_NONE}
        return {'type': libvirt.VIR_DOMAIN_JOB_UNBOUNDED, 'time_elapsed': 1000, 'data_processed': 42}

    def _action(self, name):
        self.actions.append(name)
        if self.fail_action:
            raise FakeLibvirtError('Requested operation is not valid: postcopy migration not enabled')
        self.outcome = 'aborted' if name == 'abort' else 'done'
        self.ended.set()

    def abortJob(self):
        self._action('abort')

    def migrateStartPostCopy(self, flags=0):
        self._action('postcopy')

    def suspend(self):
        self._action('suspend')

    def migrateToURI3(self, uri, params, flags):
        if not self.ended.wait(10):
            raise FakeLibvirtError('test: the watcher never acted')
        if self.outcome == 'aborted':
            raise FakeLibvirtError("operation aborted: job 'migration out' canceled by client",
                                   libvirt.VIR_ERR_OPERATION_ABORTED)
        return 0


@pytest.mark.parametrize('action', ['abort', 'postcopy', 'suspend'])
def test_watcher_carries_out_the_timeout_action(action):
    dom = SlowMigration()
    attempt = apply.migrate(dom, request(timeout=0, timeout_action=action), poll=0.01)
    assert dom.actions == [action]
    assert attempt.timeout_action == action and attempt.timeout_action_error is None
    assert attempt.job_seen and attempt.last_job['data_processed'] == 42
    assert attempt.ok is (action != 'abort')
    if action == 'abort':
        assert 'canceled by client' in attempt.error


def test_a_failed_timeout_action_is_reported():
    dom = SlowMigration(fail_action=True)

    def end_later():
        dom.ended.wait(0.3)
        dom.outcome = 'done'
        dom.ended.set()
    threading.Thread(target=end_later, daemon=True).start()
    attempt = apply.migrate(dom, request(timeout=0, timeout_action='postcopy'), poll=0.01)
    assert attempt.timeout_action == 'postcopy'
    assert 'postcopy migration not enabled' in attempt.timeout_action_error


def test_no_timeout_means_no_action():
    dom = SlowMigration()
    timer = threading.Timer(0.2, lambda: (setattr(dom, 'outcome', 'done'), dom.ended.set()))
    timer.start()
    attempt = apply.migrate(dom, request(), poll=0.01)
    assert attempt.ok and dom.actions == [] and attempt.timeout_action is None


def test_libvirt_errors_do_not_escape():
    class Failing(SlowMigration):
        def migrateToURI3(self, uri, params, flags):
            raise FakeLibvirtError('internal error: client socket is closed')
    attempt = apply.migrate(Failing(), request(), poll=0.01)
    assert not attempt.ok and attempt.error == 'internal error: client socket is closed'
    assert 'Traceback' in attempt.exception
