# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way through every module: run_module() for the result or the failure, run_change() for a change.

change_main(ChangeClass) is a module's main(): it builds the AnsibleModule from the class's options and calls
run_change(module, change), which does what every change needs, in this order:

1. the timeout option checked (once, here);
2. change.request(params): the options turned into a request, refused before any connection;
3. for each of change.endpoints: a libvirt session, the domain looked up, its lock taken (a context manager);
4. change.read(run) -> state, change.plan(run, state) -> plan (every refusal happens up to here);
5. check mode, or nothing to do (not change.needs_apply(plan)): change.predict(run, state, plan) is the result;
6. else change.apply(run, state, plan) -> outcome; a HotplugError raised while applying gets
   change.reread(run, state, plan, exc) added to its details (the state read again after the failure);
   then change.observe(run, state, plan, outcome) -> after, and change.result(run, state, plan, outcome, after);
   result() raises HotplugError(msg, **result) itself when the outcome is a failure;
7. on success and failure alike: diff {before, after} from change.diff(result) in diff mode, elapsed seconds.

A hook gets the Run: the module, params, check and diff mode, sessions by role, warn(), lock(), connect(),
remaining() and the clock.  A module with two connections (migration: source and destination) lists two
endpoints; run.session('destination') is the second one.  A hook may also open one later with run.connect().

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import contextlib
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.hotplug.plugins.module_utils._common.argspec import argument_spec
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.lock import DomainLock
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import LibvirtSession, require_libvirt

SOURCE = 'source'


class Endpoint(object):
    """One libvirt connection a change needs: its role, the options naming the URI and the domain, and the lock.

    name_option=None opens the connection without looking a domain up (a migration's destination).
    """

    def __init__(self, role=SOURCE, uri_option='uri', name_option='name', lock=True):
        self.role = role
        self.uri_option = uri_option
        self.name_option = name_option
        self.lock = lock


class Run(object):
    """What the hooks of one run share."""

    def __init__(self, module, stack, clock=time.monotonic):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.diff_mode = module._diff
        self.clock = clock
        self.started = clock()
        self.sessions = {}
        self.request = None     # what change.request(params) returned
        self._stack = stack

    def warn(self, message):
        self.module.warn(message)

    def elapsed(self):
        return self.clock() - self.started

    def remaining(self, timeout):
        """Seconds left of a timeout that started with the run (the lock wait counts)."""
        return max(0.0, timeout - self.elapsed())

    def connect(self, role, uri):
        """Open a libvirt session for the rest of the run; returns the LibvirtSession."""
        session = LibvirtSession(uri)
        self._stack.enter_context(session)
        self.sessions[role] = session
        return session

    def session(self, role=SOURCE):
        return self.sessions[role]

    @property
    def conn(self):
        return self.sessions[SOURCE].conn

    @property
    def dom(self):
        return self.sessions[SOURCE].dom

    def lock(self, uuid, name, timeout, busy_msg=None):
        """Hold the lock of one domain (or of the host) until the run ends."""
        return self._stack.enter_context(DomainLock(uuid, name, timeout, busy_msg=busy_msg))


class Change(object):
    """A feature's options and hooks; see the module docstring for the order the hooks are called in.

    options: the module's own argument spec; option_families: families from _common/argspec.py added to it;
    module_options: more AnsibleModule arguments (mutually_exclusive, required_one_of, ...).
    """

    options = {}
    option_families = ()
    module_options = {}
    endpoints = (Endpoint(),)
    needs_libvirt = True
    elapsed_digits = 2

    def request(self, params):
        return None

    def read(self, run):
        raise NotImplementedError

    def plan(self, run, state):
        raise NotImplementedError

    def needs_apply(self, plan):
        return plan.changed

    def predict(self, run, state, plan):
        raise NotImplementedError

    def apply(self, run, state, plan):
        raise NotImplementedError

    def observe(self, run, state, plan, outcome):
        return None

    def result(self, run, state, plan, outcome, after):
        raise NotImplementedError

    def reread(self, run, state, plan, exc):
        return {}

    def diff(self, result):
        """(before, after) for diff mode, or None when there is nothing to show."""
        return None


def check_timeout(params):
    timeout = params.get('timeout')
    if timeout is not None and timeout < 0:
        raise HotplugError('timeout must not be negative, got %d' % timeout)


def run_module(module, body, needs_libvirt=True):
    """Run body(module) and exit with its result dict, or fail with a HotplugError's message and details.

    needs_libvirt=False is for modules that only read sysfs and must work without the binding.
    """
    if needs_libvirt:
        require_libvirt(module)
    try:
        result = body(module)
    except HotplugError as exc:
        extra = dict(exc.details)
        extra.setdefault('changed', False)
        if exc.exception:
            extra['exception'] = exc.exception
        module.fail_json(msg=exc.msg, **extra)
    module.exit_json(**result)


def change_main(change_class):
    """The main() of a module that makes a change: its AnsibleModule from the class's options, then run_change()."""
    change = change_class()
    module = AnsibleModule(argument_spec=argument_spec(change.options, *change.option_families),
                           supports_check_mode=True, **change.module_options)
    run_change(module, change)


def run_change(module, change, clock=time.monotonic):
    """Run one change through its hooks (see the module docstring) and exit the module."""
    run_module(module, lambda m: _run(m, change, clock), needs_libvirt=change.needs_libvirt)


def run_steps(module, change, params, clock=time.monotonic):
    """One change inside another module's run (rebalance_apply: one change per VM and resource in one invocation).

    The same steps as run_change, with these params instead of the module's: its own sessions and domain lock,
    released when it returns.  Returns the result (diff and elapsed added), or raises HotplugError with them.
    """
    return _run(module, change, clock, params)


def _run(module, change, clock, params=None):
    with contextlib.ExitStack() as stack:
        run = Run(module, stack, clock)
        if params is not None:
            run.params = params
        try:
            result = _steps(run, change)
        except HotplugError as exc:
            _finish(run, change, exc.details)
            raise
        return _finish(run, change, result)


def _steps(run, change):
    params = run.params
    check_timeout(params)
    run.request = change.request(params)
    for endpoint in change.endpoints:
        session = run.connect(endpoint.role, params.get(endpoint.uri_option))
        if endpoint.name_option is not None:
            dom = session.lookup(params[endpoint.name_option])
            if endpoint.lock:
                run.lock(dom.UUIDString(), dom.name(), params['timeout'])
    state = change.read(run)
    plan = change.plan(run, state)
    if run.check_mode or not change.needs_apply(plan):
        return change.predict(run, state, plan)
    try:
        outcome = change.apply(run, state, plan)
    except HotplugError as exc:
        exc.details.update(change.reread(run, state, plan, exc))
        raise
    after = change.observe(run, state, plan, outcome)
    return change.result(run, state, plan, outcome, after)


def _finish(run, change, result):
    if run.diff_mode:
        views = change.diff(result)
        if views is not None:
            result['diff'] = dict(before=views[0], after=views[1])
    result['elapsed'] = round(run.elapsed(), change.elapsed_digits)
    return result
