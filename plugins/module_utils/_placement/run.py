# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rebalance modules' bodies: rebalance_plan (read, measure, plan) and rebalance_apply (apply_targets).

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.hotplug.plugins.module_utils._common.argspec import URI_ARGS, argument_spec
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import run_module
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import LibvirtSession
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.apply import apply_targets
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.read import (
    measure, measured_demand, read_host, size_mib, with_bounds,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.rebalance import plan_host

PLAN_OPTIONS = dict(
    vms=dict(type='dict', default={}),
    reserve=dict(type='dict', default={}),
    cpu_overcommit=dict(type='float', default=1.0),
    memory_overcommit=dict(type='float', default=1.0),
    mode=dict(type='str', choices=['declared', 'measured'], default='declared'),
    sample_seconds=dict(type='float', default=10),
    target_utilization=dict(type='float', default=0.7),
    headroom=dict(type='dict', default={}),
    max_step=dict(type='dict', default={}),
    hysteresis=dict(type='dict', default={}),
    state=dict(type='dict', default={}),
    facts=dict(type='dict'),
)

APPLY_OPTIONS = dict(
    targets=dict(type='list', elements='dict', required=True),
    timeout=dict(type='int', default=120),
    wait_for_guest=dict(type='bool', default=True),
    config=dict(type='bool', default=True),
)


def _settings(params):
    step = dict(params['max_step'])
    hyst = dict(params['hysteresis'])
    for options in (step, hyst):
        if options.get('memory') is not None and options.get('memory_mib') is None:
            options['memory_mib'] = size_mib(options.pop('memory'), 'memory')
    return dict(max_step=step, hysteresis=hyst)


def plan(module):
    params = module.params
    reserve = params['reserve']
    measured = None
    if params['facts'] is not None:
        if params['mode'] == 'measured':
            raise HotplugError('mode=measured reads the host: it cannot plan from facts')
        host, vms = params['facts'].get('host') or {}, params['facts'].get('vms') or []
        if not isinstance(host, dict) or not isinstance(vms, list) or not all(isinstance(v, dict) for v in vms):
            raise HotplugError('facts needs host, a mapping of cpus and memory_mib, and vms, a list of mappings; '
                               'got host %r and vms %r' % (host, vms))
        if not all(isinstance(v.get('name'), str) and v['name'] for v in vms):
            raise HotplugError('every VM of facts needs a name, got %r' % (vms,))
    else:
        with LibvirtSession(params['uri']) as conn:
            host, vms = read_host(conn)
            if params['mode'] == 'measured':
                if params['sample_seconds'] <= 0:
                    raise HotplugError('sample_seconds must be above 0')
                measured = measure(conn, params['sample_seconds'])
    vms = with_bounds(vms, params['vms'])
    if measured is not None:
        vms = measured_demand(vms, measured, params['target_utilization'], params['headroom'])
    # the planner checks the reserve's counts (host_capacity), naming the bad one
    host = dict(host, reserve=dict(cpus=reserve.get('cpus') or 0,
                                   memory_mib=size_mib(reserve.get('memory') if reserve.get('memory') is not None
                                                       else reserve.get('memory_mib'), 'reserve memory') or 0),
                cpu_overcommit=params['cpu_overcommit'], memory_overcommit=params['memory_overcommit'])
    result = plan_host(host, vms, _settings(params), params['state'])
    targets = [dict(name=e['name'], vcpus=e['target']['vcpus'], memory_mib=e['target']['memory_mib'])
               for e in result['vms'] if e['changed']]
    out = dict(changed=False, plan=result, targets=targets, mode=params['mode'],
               host=dict(cpus=host['cpus'], memory_mib=host['memory_mib']))
    if measured is not None:
        out['measured'] = measured
    return out


def plan_main():
    module = AnsibleModule(argument_spec=argument_spec(PLAN_OPTIONS, URI_ARGS), supports_check_mode=True)
    run_module(module, plan)


def apply_main():
    module = AnsibleModule(argument_spec=argument_spec(APPLY_OPTIONS, URI_ARGS), supports_check_mode=True)
    run_module(module, lambda m: apply_targets(m, m.params))
