# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The vcpu_hotplug module's hooks for the runner (_common/runner.py): read, plan, apply, verify, report.

The runner takes the domain lock; then read() reads the domain and makes sure libvirt's view is not
stale, plan() plans (refusals happen here, before any write), apply() sets the maximum (if raised), the
live change, the persistent config and the maximum (if lowered), and verifies the live change from
libvirt, QEMU and the guest until it settles or the timeout passes.  The result reports the views that
were read, never the plan as if it had happened.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import time

from ansible_collections.kvm.hotplug.plugins.module_utils._common.argspec import CHANGE_ARGS, DOMAIN_ARGS
from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, normalize_id_list
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import Change
from ansible_collections.kvm.hotplug.plugins.module_utils._common.waiting import wait_for
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition import PersistentDefinition
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_edit import (
    with_enabled_vcpus, with_vcpu_maximum,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.guest_agent import guest_vcpus
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.resync import detect_service, resync
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.tcg_hazard import mark_leaked_vcpus, refuse_if_hazardous
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu.apply import apply_config, apply_guest, apply_live
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu.plan import VcpuRequest, plan_vcpus
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu.predict import (
    diff_view, guest_changed, plan_dict, predict, qemu_changed, summarize,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu.verify import (
    COMPLETE, GUEST_PENDING, PENDING, STALE, UNVERIFIED, VcpuViews, classify, observe, stale_view, views_disagree,
)

# Once QEMU shows the change, libvirt gets DEVICE_DELETED within moments if it gets it at all;
# a libvirt view that is still behind after this long is stale, not slow.
STALE_GRACE_SECONDS = 3.0
# A restarted libvirt daemon re-reads running domains in the background after it accepts connections.
RESYNC_SETTLE_SECONDS = 30.0


def build_request(params):
    """The VcpuRequest for the module options, or HotplugError naming the option that cannot be read."""
    try:
        vcpus = normalize_id_list(params['vcpus'], what='vCPU') if params['vcpus'] is not None else None
    except ValueError as exc:
        raise HotplugError('vcpus: %s' % exc)
    if params['vcpus'] is not None and not vcpus:
        raise HotplugError('vcpus is empty: name at least one vCPU id')
    return VcpuRequest(count=params['count'], vcpus=vcpus, state=params['state'] or 'enabled',
                       numa_node=params['numa_node'], live=params['live'], config=params['config'],
                       maximum=params['maximum'], guest_agent=params['guest_agent'])


class VcpuChange(Change):
    options = dict(
        count=dict(type='int'),
        vcpus=dict(type='list', elements='str'),
        state=dict(type='str', choices=['enabled', 'disabled']),
        numa_node=dict(type='int'),
        maximum=dict(type='int'),
        guest_agent=dict(type='bool', default=False),
        raw_queries=dict(type='bool', default=True),
        stale_view=dict(type='str', choices=['fail', 'resync'], default='fail'),
        libvirt_service=dict(type='str'),
    )
    option_families = (DOMAIN_ARGS, CHANGE_ARGS)
    module_options = dict(
        mutually_exclusive=[('count', 'vcpus'), ('vcpus', 'numa_node'), ('guest_agent', 'maximum'),
                            ('guest_agent', 'numa_node')],
        required_one_of=[('count', 'vcpus', 'maximum')],
        required_by=dict(state='vcpus'),
    )

    def __init__(self):
        self.resyncs = []
        self.resync_error = None
        self.calls = []
        self.notes = []
        self.plan_ = None
        self.before = None

    def request(self, params):
        return build_request(params)

    # ---------------------------------------------------------------- reading

    def read(self, run):
        self.run = run
        params = run.params
        self.timeout = params['timeout']
        self.wait_for_guest = params['wait_for_guest']
        self.raw_queries = params['raw_queries']
        self.stale_policy = params['stale_view']
        self.service = params['libvirt_service']
        self.name = run.dom.name()
        request = run.request
        snapshot = read_domain(run.dom)
        changes_live_vcpus = (request.live and snapshot.active and not request.guest_agent
                              and (request.count is not None or request.vcpus is not None))
        if changes_live_vcpus and self.raw_queries:
            self._ensure_fresh_view()
            snapshot = read_domain(run.dom)
        return snapshot

    def _host_online_cpus(self):
        try:
            _count, cpumap, _online = self.run.conn.getCPUMap()
        except libvirt.libvirtError:
            return None
        return [i for i, online in enumerate(cpumap) if online]

    def _observe(self, with_guest):
        return observe(self.run.dom, self.name, self.raw_queries, with_guest)

    # ----------------------------------------------------------- stale views

    def _resync(self, reason):
        """Restart libvirt and wait until it has re-read the domain; return the views then."""
        session = self.run.session()
        conn, dom, report = resync(self.run.module, session.conn, session.dom.UUIDString(), self.name,
                                   service=self.service)
        session.replace(conn, dom)
        _agree, views, waited = wait_for(lambda: self._observe(with_guest=False), lambda v: not views_disagree(v),
                                         RESYNC_SETTLE_SECONDS, interval=0.3)
        report.update(reason=reason, settle_seconds=round(waited, 2))
        self.resyncs.append(report)
        self.run.warn('restarted %s to resynchronize libvirt with QEMU for domain %s (%s)'
                      % (report['service'], self.name, reason))
        return views

    def _stale_message(self, views, when):
        stale, unknown = stale_view(views.libvirt_enabled, views.qemu_present)
        parts = []
        if stale:
            parts.append('libvirt lists vCPUs %s that QEMU no longer has' % format_cpulist(stale))
        if unknown:
            parts.append('QEMU has vCPUs %s that libvirt does not list as enabled' % format_cpulist(unknown))
        advice = ('Set stale_view: resync to let the module restart %s so libvirt re-reads the domain from QEMU '
                  '(running guests are not affected), or restart it yourself.' % (self.service or detect_service()))
        if self.resync_error:
            advice = 'Resynchronizing failed: %s' % self.resync_error
        elif self.resyncs:
            advice = 'Restarting %s did not resynchronize it.' % self.resyncs[-1]['service']
        return ('libvirt\'s view of domain %s is stale %s: %s (QEMU never sent DEVICE_DELETED, or libvirt missed it). %s'
                % (self.name, when, '; '.join(parts), advice))

    def _ensure_fresh_view(self):
        """Before planning: libvirt must agree with QEMU, or the plan would start from a wrong state."""
        views = self._observe(with_guest=False)
        if not views_disagree(views):
            return
        if self.stale_policy != 'resync':
            raise HotplugError(self._stale_message(views, 'before any change') + ' Nothing was changed.',
                               views=views.to_dict())
        views = self._resync('stale before the change')
        if views_disagree(views):
            raise HotplugError(self._stale_message(views, 'before any change') + ' Nothing was changed.',
                               views=views.to_dict(), resync=self.resyncs)

    # --------------------------------------------------------------- planning

    def plan(self, run, state):
        plan = plan_vcpus(run.request, state, self._host_online_cpus(),
                          guest_vcpus(run.dom, state.live) if run.request.guest_agent and state.active else None)
        for warning in plan.warnings:
            run.warn(warning)
        self.notes.extend(plan.notes)
        if plan.live is not None and plan.live.enable:
            refuse_if_hazardous(run.dom, self.name, 'hot-add vCPUs %s' % format_cpulist(plan.live.enable))
        self.persistent = self._check_persistent(run, plan)
        self.plan_ = plan
        self.before = summarize(state)
        return plan

    def _check_persistent(self, run, plan):
        """Before any write: the persistent definition the plan leaves must boot.  None when the plan leaves it."""
        changes_config = plan.maximum_after is not None or (plan.config is not None and plan.config.changed)
        if not changes_config:
            return None
        persistent = PersistentDefinition(run.conn, run.dom, self.name)
        final = persistent.original
        if plan.maximum_after is not None:
            final = self._with_maximum(final, plan)
        if plan.config is not None and plan.config.changed:
            final = with_enabled_vcpus(final, plan.config.after)
        hint = None
        if run.request.numa_node is None and plan.cells_after and plan.maximum_after > plan.maximum_before:
            hint = 'Name the guest NUMA cell that gets the new vCPUs with numa_node.'
        persistent.refuse_unbootable(final, 'this vCPU change', hint)
        return persistent

    @staticmethod
    def _with_maximum(xml_text, plan):
        return with_vcpu_maximum(xml_text, plan.maximum_after, plan.topology_after, plan.cells_after)

    def _write_maximum(self, plan):
        self.persistent.define(self._with_maximum(self.persistent.expected, plan),
                               'setting the maximum to %d vCPUs' % plan.maximum_after)

    def predict(self, run, state, plan):
        after = predict(self.before, plan) if plan.changed else self.before
        return self._result(plan.changed, 'none' if not plan.changed else 'check_mode', self.before, after, plan,
                            guest=self._guest_now(state))

    # --------------------------------------------------------------- applying

    def observe(self, run, state, plan, outcome):
        return read_domain(run.dom)

    def result(self, run, state, plan, outcome, after):
        """outcome: (outcome of the live or guest change, the last views); after: the snapshot read again."""
        live_outcome, views = outcome
        before = self.before
        summary = summarize(after)
        guest = views.guest if views is not None and views.guest is not None else self._guest_now(after)
        changed = summary != before or qemu_changed(plan, views) or guest_changed(plan, guest)
        result = self._result(changed, live_outcome, before, summary, plan, guest=guest, views=views)
        if live_outcome not in (COMPLETE, UNVERIFIED):
            raise HotplugError(self._failure_message(live_outcome, plan, views), **result)
        return result

    def reread(self, run, state, plan, exc):
        """After a libvirt error while applying: the vCPUs as libvirt has them now."""
        try:
            after = summarize(read_domain(run.dom))
        except HotplugError:
            return dict(vcpus=dict(before=self.before, after=None), libvirt_calls=self.calls)
        return dict(changed=after != self.before, vcpus=dict(before=self.before, after=after), libvirt_calls=self.calls)

    def _guest_now(self, snapshot):
        if not snapshot.active:
            return None
        return guest_vcpus(self.run.dom, snapshot.live)

    def apply(self, run, state, plan):
        """Carry out the plan; return (outcome of the live or guest change, last views or None)."""
        dom = run.dom
        if plan.guest is not None:
            return self._apply_guest(plan)
        raising = plan.maximum_after is not None and plan.maximum_after > plan.maximum_before
        if raising:
            self._write_maximum(plan)
        outcome, views = COMPLETE, None
        if plan.live is not None and plan.live.changed:
            outcome, views = self._apply_live(state, plan.live)
        if outcome in (COMPLETE, UNVERIFIED):
            if plan.config is not None and plan.config.changed:
                apply_config(dom, self.name, plan.config)
                self.persistent.written(with_enabled_vcpus(self.persistent.expected, plan.config.after),
                                        'enabling vCPUs %s' % format_cpulist(plan.config.after))
            if plan.maximum_after is not None and not raising:
                self._write_maximum(plan)
        elif plan.config is not None and plan.config.changed:
            run.warn('the persistent config of domain %s was left unchanged because the live change '
                     'did not complete' % self.name)
        return outcome, views

    def _apply_live(self, snapshot, live_plan):
        calls = apply_live(self.run.dom, self.name, live_plan)
        self.calls.extend(c.to_dict() for c in calls)
        failed_add = [c for c in calls if c.action == 'enable' and not c.ok]
        failed_remove = [c for c in calls if c.action == 'disable' and not c.ok and not c.timed_out]
        views = self._settle(live_plan)
        outcome = classify(live_plan.after, live_plan.before, views, self.wait_for_guest)
        timed_out = [c.vcpu for c in calls if c.timed_out]
        if snapshot.live.is_tcg and timed_out and views.qemu_present is not None:
            # QEMU removed it and libvirt still lists it after the grace time: DEVICE_DELETED never came, so
            # QEMU never finalized the vCPU.  A vCPU whose event came late (libvirt caught up) is not leaked.
            leaked = [v for v in timed_out if v not in views.qemu_present and v in views.libvirt_enabled]
            if leaked:
                mark_leaked_vcpus(self.run.dom, leaked)
                self.run.warn(
                    'domain %s runs under TCG: QEMU removed vCPUs %s without finalizing them (a QEMU bug under TCG); '
                    'further vCPU or memory hot-add is refused until the domain is shut down and started again, '
                    'because QEMU would crash' % (self.name, format_cpulist(leaked)))
        if outcome == STALE and self.stale_policy == 'resync':
            try:
                self._resync('stale after the change')
            except HotplugError as exc:
                # the change happened; report it with the stale view instead of losing it in a bare error
                self.resync_error = exc.msg
            else:
                views = self._settle(live_plan)
                outcome = classify(live_plan.after, live_plan.before, views, self.wait_for_guest)
        if failed_add or failed_remove:
            first = (failed_add or failed_remove)[0]
            self.notes.append('libvirt refused to %s vCPU %d: %s' % (first.action, first.vcpu, first.error))
        return outcome, views

    def _settle(self, live_plan):
        """Observe until the live change is complete, stale for longer than the grace time, or timed out."""
        stale_since = []
        target, before = live_plan.after, live_plan.before

        def settled(views):
            outcome = classify(target, before, views, self.wait_for_guest)
            if outcome == STALE:
                stale_since.append(time.monotonic())
                return stale_since[-1] - stale_since[0] >= STALE_GRACE_SECONDS
            stale_since[:] = []
            return outcome in (COMPLETE, UNVERIFIED)

        remaining = self.run.remaining(self.timeout)
        _done, views, _waited = wait_for(lambda: self._observe(with_guest=True), settled, remaining, interval=0.3)
        return views

    def _apply_guest(self, plan):
        apply_guest(self.run.dom, self.name, plan.guest)
        snapshot = read_domain(self.run.dom)
        expected_online = set(plan.guest.before_online) | set(plan.guest.online)
        expected_online -= set(plan.guest.offline)

        def done(view):
            return view.get('available') and set(view['online']) == expected_online

        remaining = self.run.remaining(self.timeout)
        ok, view, _waited = wait_for(lambda: guest_vcpus(self.run.dom, snapshot.live), done, remaining, interval=0.3)
        outcome = COMPLETE if ok else GUEST_PENDING
        return outcome, VcpuViews(libvirt_enabled=tuple(snapshot.live.enabled_vcpu_ids), qemu_present=None,
                                  qemu_error=None, guest=view)

    # --------------------------------------------------------------- results

    def _failure_message(self, outcome, plan, views):
        target = plan.live.after if plan.live is not None else ()
        view_text = 'libvirt: %s, QEMU: %s, guest online: %s' % (
            format_cpulist(views.libvirt_enabled) or '-',
            '?' if views.qemu_present is None else format_cpulist(views.qemu_present) or '-',
            '?' if views.guest_online_count is None else views.guest_online_count)
        if outcome == STALE:
            return self._stale_message(views, 'after the change') + ' (%s)' % view_text
        if outcome == PENDING:
            pending = sorted(set(views.qemu_present) - set(target))
            return ('the guest of domain %s did not eject vCPUs %s within %s s; the unplug request is still pending '
                    'in QEMU and may complete later (%s)' % (self.name, format_cpulist(pending), self.timeout, view_text))
        if outcome == GUEST_PENDING:
            if plan.guest is not None:
                return ('the guest of domain %s does not show the requested CPUs online after %s s (guest online: %s)'
                        % (self.name, self.timeout, format_cpulist(views.guest.get('online', [])) if views.guest else '?'))
            return ('the guest of domain %s does not use the %d vCPUs after %s s: %s'
                    % (self.name, len(target), self.timeout, view_text))
        note = ' ' + ' '.join(self.notes) if self.notes else ''
        return ('the vCPU change of domain %s did not complete (%s): target %s, %s.%s'
                % (self.name, outcome, format_cpulist(target), view_text, note))

    def _result(self, changed, outcome, before, after, plan, guest=None, views=None):
        return dict(
            changed=changed,
            outcome=outcome,
            vcpus=dict(before=before, after=after),
            guest_online=guest.get('online_count') if guest and guest.get('available') else None,
            guest=guest,
            qemu=dict(present=list(views.qemu_present)) if views is not None and views.qemu_present is not None else None,
            plan=plan_dict(plan),
            libvirt_calls=self.calls,
            resync=self.resyncs,
            notes=self.notes,
        )

    def diff(self, result):
        vcpus = result.get('vcpus')
        if self.plan_ is None or not vcpus or vcpus.get('after') is None:
            return None
        return (diff_view(vcpus['before'], self.plan_, guest_before=True),
                diff_view(vcpus['after'], self.plan_, guest=result.get('guest')))
