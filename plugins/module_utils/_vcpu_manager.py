# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The vcpu_hotplug module's work: read, plan, apply, verify, report.

Order of a run: take the domain lock, read the domain, make sure libvirt's view
is not stale, plan (refusals happen here, before any write), then apply
the maximum (if raised), the live change, the persistent config and the
maximum (if lowered), and verify the live change from libvirt, QEMU and the
guest until it settles or the timeout passes.  The result reports the views
that were read, never the plan as if it had happened.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import time

from ansible_collections.kvm.hotplug.plugins.module_utils._cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._definition_edit import with_enabled_vcpus, with_vcpu_maximum
from ansible_collections.kvm.hotplug.plugins.module_utils._definition_write import PersistentDefinition
from ansible_collections.kvm.hotplug.plugins.module_utils._domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._guest_agent import guest_vcpus
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt_connection import HotplugError, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt_resync import detect_service, resync
from ansible_collections.kvm.hotplug.plugins.module_utils._tcg_hazard import mark_leaked_vcpus, refuse_if_hazardous
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu_apply import apply_config, apply_guest, apply_live
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu_plan import plan_vcpus
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu_verify import (
    COMPLETE, GUEST_PENDING, PENDING, STALE, UNVERIFIED, VcpuViews, classify, observe, views_disagree,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._waiting import wait_for

# Once QEMU shows the change, libvirt gets DEVICE_DELETED within moments if it gets it at all;
# a libvirt view that is still behind after this long is stale, not slow.
STALE_GRACE_SECONDS = 3.0
# A restarted libvirt daemon re-reads running domains in the background after it accepts connections.
RESYNC_SETTLE_SECONDS = 30.0


def summarize(snapshot):
    """vCPU summary of both definitions, as returned in vcpus.before / vcpus.after."""
    def one(model):
        if model is None:
            return None
        return dict(current=model.vcpu_current, maximum=model.vcpu_max, enabled=list(model.enabled_vcpu_ids),
                    numa_cells=_cells(model.numa_cells))
    return dict(live=one(snapshot.live), config=one(snapshot.config))


def predict(before, plan):
    """What vcpus.after will be if the plan is carried out (check mode)."""
    after = dict(live=dict(before['live']) if before['live'] else None,
                 config=dict(before['config']) if before['config'] else None)
    if plan.live is not None and after['live']:
        after['live'].update(current=len(plan.live.after), enabled=list(plan.live.after))
    if plan.config is not None and after['config']:
        after['config'].update(current=len(plan.config.after), enabled=list(plan.config.after))
    if plan.maximum_after is not None and after['config']:
        after['config'].update(maximum=plan.maximum_after, numa_cells=_cells(plan.cells_after))
    return after


def _cells(cells):
    return [dict(id=c.id, cpuset=format_cpulist(c.cpus)) for c in cells or ()]


def plan_dict(plan):
    def definition(p):
        return None if p is None else dict(enable=list(p.enable), disable=list(p.disable), after=list(p.after))
    guest = None
    if plan.guest is not None:
        guest = dict(online=list(plan.guest.online), offline=list(plan.guest.offline))
    maximum = None
    if plan.maximum_after is not None:
        topology = plan.topology_after
        maximum = dict(before=plan.maximum_before, after=plan.maximum_after,
                       numa_cells=_cells(plan.cells_after),
                       topology=None if topology is None else dict(
                           sockets=topology.sockets, dies=topology.dies, cores=topology.cores,
                           threads=topology.threads))
    return dict(live=definition(plan.live), config=definition(plan.config), maximum=maximum, guest=guest)


class VcpuManager(object):

    def __init__(self, module, conn, dom, request, started=None):
        self.module = module
        self.conn = conn
        self.dom = dom
        self.request = request
        params = module.params
        self.timeout = params['timeout']
        self.wait_for_guest = params['wait_for_guest']
        self.raw_queries = params['raw_queries']
        self.stale_view = params['stale_view']
        self.service = params['libvirt_service']
        self.started = started if started is not None else time.monotonic()
        self.resyncs = []
        self.resync_error = None
        self.calls = []
        self.warnings = []
        self.notes = []
        self.name = dom.name()

    # ---------------------------------------------------------------- reading

    def _host_online_cpus(self):
        try:
            _count, cpumap, _online = self.conn.getCPUMap()
        except libvirt.libvirtError:
            return None
        return [i for i, online in enumerate(cpumap) if online]

    def _observe(self, with_guest):
        return observe(self.dom, self.name, self.raw_queries, with_guest)

    # ----------------------------------------------------------- stale views

    def _resync(self, reason):
        """Restart libvirt and wait until it has re-read the domain; return the views then."""
        self.conn, self.dom, report = resync(self.module, self.conn, self.dom.UUIDString(), self.name,
                                             service=self.service)
        _agree, views, waited = wait_for(lambda: self._observe(with_guest=False), lambda v: not views_disagree(v),
                                         RESYNC_SETTLE_SECONDS, interval=0.3)
        report.update(reason=reason, settle_seconds=round(waited, 2))
        self.resyncs.append(report)
        self.warnings.append('restarted %s to resynchronize libvirt with QEMU for domain %s (%s)'
                             % (report['service'], self.name, reason))
        return views

    def _stale_message(self, views, when):
        stale = sorted(set(views.libvirt_enabled) - set(views.qemu_present))
        unknown = sorted(set(views.qemu_present) - set(views.libvirt_enabled))
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
        if self.stale_view != 'resync':
            raise HotplugError(self._stale_message(views, 'before any change') + ' Nothing was changed.',
                               views=views.to_dict())
        views = self._resync('stale before the change')
        if views_disagree(views):
            raise HotplugError(self._stale_message(views, 'before any change') + ' Nothing was changed.',
                               views=views.to_dict(), resync=self.resyncs)

    # --------------------------------------------------------------- running

    def run(self):
        request = self.request
        snapshot = read_domain(self.dom)
        changes_live_vcpus = (request.live and snapshot.active and not request.guest_agent
                              and (request.count is not None or request.vcpus is not None))
        if changes_live_vcpus and self.raw_queries:
            self._ensure_fresh_view()
            snapshot = read_domain(self.dom)
        guest_view = guest_vcpus(self.dom, snapshot.live) if request.guest_agent and snapshot.active else None
        plan = plan_vcpus(request, snapshot, self._host_online_cpus(), guest_view)
        self.warnings.extend(plan.warnings)
        self.notes.extend(plan.notes)
        if plan.live is not None and plan.live.enable:
            refuse_if_hazardous(self.dom, self.name, 'hot-add vCPUs %s' % format_cpulist(plan.live.enable))

        persistent = self._check_persistent(plan)
        before = summarize(snapshot)
        if not plan.changed or self.module.check_mode:
            after = predict(before, plan) if plan.changed else before
            return self._result(plan.changed, 'none' if not plan.changed else 'check_mode', before, after, plan,
                                guest=self._guest_now(snapshot))

        outcome, views = self._apply(snapshot, plan, persistent)
        after_snapshot = read_domain(self.dom)
        after = summarize(after_snapshot)
        guest = views.guest if views is not None and views.guest is not None else self._guest_now(after_snapshot)
        changed = after != before or _qemu_changed(plan, views) or _guest_changed(plan, guest)
        result = self._result(changed, outcome, before, after, plan, guest=guest, views=views)
        if outcome not in (COMPLETE, UNVERIFIED):
            raise HotplugError(self._failure_message(outcome, plan, views), **result)
        return result

    def _guest_now(self, snapshot):
        if not snapshot.active:
            return None
        return guest_vcpus(self.dom, snapshot.live)

    def _check_persistent(self, plan):
        """Before any write: the persistent definition the plan leaves must boot.  None when the plan leaves it."""
        changes_config = plan.maximum_after is not None or (plan.config is not None and plan.config.changed)
        if not changes_config:
            return None
        persistent = PersistentDefinition(self.conn, self.dom, self.name)
        final = persistent.original
        if plan.maximum_after is not None:
            final = self._with_maximum(final, plan)
        if plan.config is not None and plan.config.changed:
            final = with_enabled_vcpus(final, plan.config.after)
        hint = None
        if self.request.numa_node is None and plan.cells_after and plan.maximum_after > plan.maximum_before:
            hint = 'Name the guest NUMA cell that gets the new vCPUs with numa_node.'
        persistent.refuse_unbootable(final, 'this vCPU change', hint)
        return persistent

    @staticmethod
    def _with_maximum(xml_text, plan):
        return with_vcpu_maximum(xml_text, plan.maximum_after, plan.topology_after, plan.cells_after)

    def _write_maximum(self, persistent, plan):
        persistent.define(self._with_maximum(persistent.expected, plan),
                          'setting the maximum to %d vCPUs' % plan.maximum_after)

    def _apply(self, snapshot, plan, persistent):
        """Carry out the plan; return (outcome of the live or guest change, last views or None)."""
        if plan.guest is not None:
            return self._apply_guest(plan)
        raising = plan.maximum_after is not None and plan.maximum_after > plan.maximum_before
        if raising:
            self._write_maximum(persistent, plan)
        outcome, views = COMPLETE, None
        if plan.live is not None and plan.live.changed:
            outcome, views = self._apply_live(snapshot, plan.live)
        if outcome in (COMPLETE, UNVERIFIED):
            if plan.config is not None and plan.config.changed:
                apply_config(self.dom, self.name, plan.config)
                persistent.written(with_enabled_vcpus(persistent.expected, plan.config.after),
                                   'enabling vCPUs %s' % format_cpulist(plan.config.after))
            if plan.maximum_after is not None and not raising:
                self._write_maximum(persistent, plan)
        elif plan.config is not None and plan.config.changed:
            self.warnings.append('the persistent config of domain %s was left unchanged because the live change '
                                 'did not complete' % self.name)
        return outcome, views

    def _apply_live(self, snapshot, live_plan):
        calls = apply_live(self.dom, self.name, live_plan)
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
                mark_leaked_vcpus(self.dom, leaked)
                self.warnings.append(
                    'domain %s runs under TCG: QEMU removed vCPUs %s without finalizing them (a QEMU bug under TCG); '
                    'further vCPU or memory hot-add is refused until the domain is shut down and started again, '
                    'because QEMU would crash' % (self.name, format_cpulist(leaked)))
        if outcome == STALE and self.stale_view == 'resync':
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

        remaining = max(0.0, self.timeout - (time.monotonic() - self.started))
        _done, views, _waited = wait_for(lambda: self._observe(with_guest=True), settled, remaining, interval=0.3)
        return views

    def _apply_guest(self, plan):
        apply_guest(self.dom, self.name, plan.guest)
        snapshot = read_domain(self.dom)
        expected_online = set(plan.guest.before_online) | set(plan.guest.online)
        expected_online -= set(plan.guest.offline)

        def done(view):
            return view.get('available') and set(view['online']) == expected_online

        remaining = max(0.0, self.timeout - (time.monotonic() - self.started))
        ok, view, _waited = wait_for(lambda: guest_vcpus(self.dom, snapshot.live), done, remaining, interval=0.3)
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
        for warning in self.warnings:
            self.module.warn(warning)
        result = dict(
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
            elapsed=round(time.monotonic() - self.started, 2),
        )
        if self.module._diff:
            result['diff'] = dict(before=_diff_view(before, plan, guest_before=True),
                                  after=_diff_view(after, plan, guest=guest))
        return result


def _qemu_changed(plan, views):
    # QEMU (and the guest) may have changed while libvirt's view stayed stale
    return (plan.live is not None and views is not None and views.qemu_present is not None
            and set(views.qemu_present) != set(plan.live.before))


def _guest_changed(plan, guest):
    return (plan.guest is not None and guest is not None and guest.get('available', False)
            and guest.get('online') != list(plan.guest.before_online))


def _diff_view(summary, plan, guest=None, guest_before=False):
    view = {}
    for target in ('live', 'config'):
        if summary.get(target):
            view[target] = dict(summary[target])
    if plan.guest is not None:
        if guest_before:
            view['guest_online'] = list(plan.guest.before_online)
        elif guest is not None:
            view['guest_online'] = guest.get('online')
    return view
