# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""rebalance_apply: every change of one host in one module invocation.

Each step (one VM, one resource) is vcpu_hotplug's or memory_hotplug's change (VcpuChange, MemoryChange) run
through the runner's steps (_common/runner.py run_steps): its own session, domain lock, plan, check-mode stop,
apply, verification and re-read.  Removals go first, so the host is never more committed during the run than
before or after it.  A failed step stops the steps after it (the ones already made stay, and are reported).
Afterwards every VM is read again from libvirt and the guest agent.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.argspec import default_params
from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import normalize_id_list
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import run_steps
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import LibvirtSession, conn_uri
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.guest_agent import guest_vcpus
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.run import MemoryChange
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.read import vm_facts
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.rebalance import MEMORY, VCPUS
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu.run import VcpuChange


def steps_for(current, targets):
    """Steps (removals first, then additions; each in name order) from current facts to the targets."""
    down, up = [], []
    for name in sorted(targets):
        target = targets[name]
        now = current.get(name)
        if now is None:
            raise HotplugError('domain %s is not on this host' % name)
        for resource in (VCPUS, MEMORY):
            want = target.get(resource)
            if want is None or want == now[resource]:
                continue
            if not now.get('active'):
                raise HotplugError('domain %s is not running: hotplug needs a running domain' % name)
            step = dict(name=name, resource=resource, before=now[resource], after=want, delta=want - now[resource])
            if resource == VCPUS and want < now[resource] and target.get('vcpus_off'):
                # the vCPUs to remove, named: pinned ones go only by name (vcpu_hotplug's count leaves them)
                step['vcpus_off'] = list(target['vcpus_off'])[:now[resource] - want]
            (down if want < now[resource] else up).append(step)
    return down + up


def _step_params(change, step, params, dimm_mib):
    out = default_params(change)
    out.update(name=step['name'], uri=params['uri'], timeout=params['timeout'],
               wait_for_guest=params['wait_for_guest'], live=True, config=params['config'])
    if step['resource'] == VCPUS and step.get('vcpus_off'):
        out.update(vcpus=[str(v) for v in step['vcpus_off']], state='disabled')
    elif step['resource'] == VCPUS:
        out['count'] = step['after']
    else:
        out['size'] = '%dMiB' % step['after']
        if dimm_mib:
            out['dimm_size'] = '%dMiB' % dimm_mib
    return out


def _view(snapshot, dom):
    facts = vm_facts(snapshot)
    view = dict(vcpus=facts['vcpus'], memory_mib=facts['memory_mib'])
    if snapshot.active:
        guest = guest_vcpus(dom, snapshot.live)
        view['guest_online_vcpus'] = guest.get('online_count') if guest.get('available') else None
    return view


def read_views(conn, names):
    out = {}
    for name in names:
        dom = conn.lookupByName(name)
        out[name] = _view(read_domain(dom), dom)
    return out


def apply_targets(module, params):
    """Apply params['targets'] ({name: {vcpus, memory_mib}}); returns the module result."""
    for t in params['targets']:
        if not isinstance(t.get('name'), str) or not t['name']:
            raise HotplugError('every target needs the name of a domain, got %r' % (t,))
        try:
            normalize_id_list(t.get('vcpus_off'), 'vCPU')
        except ValueError as exc:
            raise HotplugError('target %s vcpus_off: %s' % (t['name'], exc))
    targets = dict((t['name'], dict(vcpus=t.get('vcpus'), memory_mib=t.get('memory_mib'), vcpus_off=t.get('vcpus_off')))
                   for t in params['targets'])
    with LibvirtSession(params['uri']) as conn:
        uri = conn_uri(conn)
        current = {}
        for name in sorted(targets):
            try:
                dom = conn.lookupByName(name)
            except Exception:  # libvirt.libvirtError; the message names the domain
                raise HotplugError('domain %s is not on %s' % (name, uri))
            current[name] = vm_facts(read_domain(dom))
        before = read_views(conn, sorted(targets))
    steps = steps_for(current, targets)
    results, failure = [], None
    for step in steps:
        change = (VcpuChange if step['resource'] == VCPUS else MemoryChange)()
        step_params = _step_params(change, step, params, current[step['name']].get('dimm_mib'))
        try:
            outcome = run_steps(module, change, step_params)
        except HotplugError as exc:
            failure = dict(step, msg=exc.msg)
            results.append(dict(step, changed=bool(exc.details.get('changed')), failed=True, msg=exc.msg,
                                outcome=exc.details.get('outcome') or exc.details.get('unplug')))
            break
        results.append(dict(step, changed=bool(outcome.get('changed')), failed=False,
                            outcome=outcome.get('outcome') or outcome.get('unplug') or 'done',
                            elapsed=outcome.get('elapsed')))
    with LibvirtSession(params['uri']) as conn:
        after = read_views(conn, sorted(targets))
    vms = []
    for name in sorted(targets):
        vm_steps = [r for r in results if r['name'] == name]
        predicted = dict(before[name])
        if module.check_mode:
            for r in vm_steps:
                predicted[r['resource']] = r['after']
        vms.append(dict(name=name, before=before[name], target=targets[name],
                        after=predicted if module.check_mode else after[name],
                        changed=any(r['changed'] for r in vm_steps), steps=vm_steps))
    result = dict(changed=any(r['changed'] for r in results), uri=uri, steps=results, vms=vms,
                  skipped=[dict(s, reason='an earlier step failed') for s in steps[len(results):]])
    if module._diff:
        result['diff'] = [dict(before_header=v['name'], after_header=v['name'],
                               before='vcpus: %s\nmemory_mib: %s\n' % (v['before'][VCPUS], v['before'][MEMORY]),
                               after='vcpus: %s\nmemory_mib: %s\n' % (v['after'][VCPUS], v['after'][MEMORY]))
                          for v in vms if v['before'] != v['after']]
    if failure is not None:
        raise HotplugError('rebalance of %s stopped at %s %s %s -> %s: %s' % (
            uri, failure['name'], failure['resource'], failure['before'], failure['after'], failure['msg']), **result)
    return result
