# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vcpu_hotplug's views for results: the vCPUs of both definitions, the check-mode prediction, the plan, the diff.

Pure.  Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist


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


def qemu_changed(plan, views):
    # QEMU (and the guest) may have changed while libvirt's view stayed stale
    return (plan.live is not None and views is not None and views.qemu_present is not None
            and set(views.qemu_present) != set(plan.live.before))


def guest_changed(plan, guest):
    return (plan.guest is not None and guest is not None and guest.get('available', False)
            and guest.get('online') != list(plan.guest.before_online))


def diff_view(summary, plan, guest=None, guest_before=False):
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
