# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hypervisor_migration modules' bodies.

hypervisor_migration_plan reads the source and every destination (evacuate_read.py) and plans the whole move
(evacuate.py) for phase evacuate, or lists the migrations back of a recorded evacuation for phase restore.  It
changes nothing.

hypervisor_migration_apply runs the migrations of a plan wave by wave: the migrations of one wave run at once, each
one domain_migrate's change (_migrate/run.py MigrationChange) through the shared runner with its own sessions,
domain lock, pre-checks, verification and re-read.  A failed migration lets its wave finish and skips the later
waves, so nothing moves after a failure is known.  Re-running re-plans from where the domains now run: a domain
already on its destination is not migrated again (domain_migrate reports it already_there).

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import threading

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.hotplug.plugins.module_utils._common.argspec import URI_ARGS, argument_spec, default_params
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.runner import run_module, run_steps
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import DEFAULT_SYSFS_ROOT
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import LibvirtSession, conn_uri
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.facts import TIMEOUT_ACTIONS
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.run import MigrationChange
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.evacuate import (
    ALL, plan_hypervisor_evacuation, plan_is_empty, plan_restore,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._placement.evacuate_read import (
    component_ids, read_destination, read_source, running_where,
)

EVACUATE, RESTORE = 'evacuate', 'restore'

PLAN_OPTIONS = dict(
    source=dict(type='str', required=True),
    source_uri=dict(type='str'),
    phase=dict(type='str', choices=[EVACUATE, RESTORE], default=EVACUATE),
    components=dict(type='raw'),
    destinations=dict(type='list', elements='dict', default=[]),
    record=dict(type='dict', default={}),
    domains=dict(type='list', elements='str', default=[]),
    parallel=dict(type='int', default=2),
    per_destination=dict(type='int', default=2),
    cpu_overcommit=dict(type='float', default=1.0),
    memory_overcommit=dict(type='float', default=1.0),
    reserve_memory_mib=dict(type='int', default=0),
    sysfs_root=dict(type='path', default=DEFAULT_SYSFS_ROOT),
)

# domain_migrate's options a policy may set (hypervisor_migration_policy)
POLICY_KEYS = dict(bandwidth=int, max_downtime_ms=int, auto_converge=bool, parallel_connections=int, timeout=int,
                   timeout_action=str, persistent=bool, undefine_source=bool)

APPLY_OPTIONS = dict(
    migrations=dict(type='list', elements='dict', required=True),
    policy=dict(type='dict', default={}),
)

MIGRATION_KEYS = ('name', 'source', 'destination', 'dest_uri', 'wave')


# --------------------------------------------------------------------------
# plan

def _components(value):
    if value == ALL:
        return ALL
    if isinstance(value, dict):
        return value
    raise HotplugError('components must be "all" or a mapping of cpus, memory_blocks and numa_nodes, got %r'
                       % (value,))


def _destination_list(destinations):
    out = []
    for dest in destinations:
        if not dest.get('name') or not dest.get('uri'):
            raise HotplugError('every destination needs a name and a uri, got %r' % (dest,))
        out.append(dest)
    return out


def _settings(params):
    return dict(parallel=params['parallel'], per_destination=params['per_destination'],
                cpu_overcommit=params['cpu_overcommit'], memory_overcommit=params['memory_overcommit'],
                reserve_memory_mib=params['reserve_memory_mib'])


def _check_limits(params):
    for key in ('parallel', 'per_destination'):
        if params[key] < 1:
            raise HotplugError('%s must be at least 1, got %d' % (key, params[key]))


def only_domains(domains, names, notes):
    """The running domains named (the others stay as they are, whatever the components); a name that does not run
    on the source is noted, not an error (a re-run finds it gone)."""
    running = set(d['name'] for d in domains)
    notes.extend('domain %s does not run on the source' % name for name in sorted(set(names) - running))
    return [d for d in domains if d['name'] in set(names)]


def plan_evacuate(params):
    components = _components(params['components'])
    destinations = _destination_list(params['destinations'])
    with LibvirtSession(params['uri']) as conn:
        source_uri = conn_uri(conn)
        source, platforms, notes = read_source(conn, params['sysfs_root'], params['source'])
    if params['domains']:
        if components != ALL:
            raise HotplugError('domains is for components "all" only: with components the staying domains count '
                               'against the CPUs and memory that remain')
        source['domains'] = only_domains(source['domains'], params['domains'], notes)
    busy = ['%s (%s)' % (d['name'], d['job']) for d in source['domains'] if d.get('job')]
    if busy:
        raise HotplugError('refusing to evacuate %s: a job is in progress on domain %s; nothing was moved'
                           % (params['source'], ', '.join(busy)), notes=notes)
    facts, unreachable = [], {}
    for dest in destinations:
        read = read_destination(dest, platforms)
        if 'unreachable' in read:
            unreachable[dest['name']] = read['unreachable']
            notes.append('destination %s is left out: %s' % (dest['name'], read['unreachable']))
        else:
            facts.append(read)
    try:
        plan = plan_hypervisor_evacuation(source, components, facts, _settings(params))
    except HotplugError as exc:
        exc.details.update(notes=notes, unreachable=unreachable)
        raise
    uris = dict((d['name'], d['uri']) for d in destinations)
    migrations = sorted((dict(name=leave['name'], source=params['source'], destination=leave['destination'],
                              source_uri=params['source_uri'] or source_uri, dest_uri=uris[leave['destination']],
                              wave=leave['wave'])
                         for leave in plan['leave']), key=lambda m: (m['wave'], m['name']))
    for move in migrations:
        move['change'] = migration_change(move)
    repins = [dict(name=s['name'], change=dict(kind='repin', action='repin', pinning=s['pinning'],
                                               cpus_offline=plan['offline']['cpus']))
              for s in plan['stay'] if s['pinning']]
    record = dict(params['record'])
    record.update((m['name'], params['source']) for m in migrations)
    return dict(changed=False, phase=EVACUATE, plan=plan, migrations=migrations, repins=repins,
                offline=plan['offline'],
                empty=plan_is_empty(plan), record=record, notes=notes, unreachable=unreachable,
                source_facts=dict(online_cpus=source['online_cpus'], free_memory_mib=source['free_memory_mib'],
                                  domains=[d['name'] for d in source['domains']]))


def migration_change(move):
    """The change a hook is told of (kvm_hotplug_hook_change, docs/hooks.md)."""
    return dict(kind='migration', action='migrate', source=move['source'], destination=move['destination'],
                wave=move['wave'])


def restore_waves(moves, parallel, per_destination):
    """Waves of the migrations back: they all go to the one source host, so a wave holds min(parallel,
    per_destination) of them, in the given order."""
    size = max(1, min(parallel, per_destination))
    return [dict(move, wave=index // size) for index, move in enumerate(moves)]


def plan_back(params):
    if not params['source_uri']:
        raise HotplugError('phase restore needs source_uri: how the hosts the domains went to reach the source')
    destinations = _destination_list(params['destinations'])
    record = dict((name, origin) for name, origin in params['record'].items() if origin == params['source'])
    hosts = dict((d['name'], d['uri']) for d in destinations)
    hosts[params['source']] = params['uri'] or params['source_uri']
    where, unreachable = running_where(hosts)
    back = plan_restore(record, where)
    notes = ['%s: %s' % (s['name'], s['reason']) for s in back['skipped']]
    notes.extend('host %s could not be read: %s' % (h, why) for h, why in sorted(unreachable.items()))
    moves = [dict(name=m['name'], source=m['source'], destination=m['destination'], source_uri=hosts[m['source']],
                  dest_uri=params['source_uri']) for m in back['moves']]
    migrations = restore_waves(moves, params['parallel'], params['per_destination'])
    for move in migrations:
        move['change'] = migration_change(move)
    online = dict(cpus=[], memory_blocks=[])
    components = params['components']
    if components not in (None, ALL, '', {}):
        online = component_ids(params['sysfs_root'], _components(components))
    return dict(changed=False, phase=RESTORE, plan=back, migrations=migrations, repins=[],
                offline=dict(cpus=[], memory_blocks=[], numa_nodes=[]), online=online, empty=not migrations,
                record=record, notes=notes, unreachable=unreachable)


def plan(module):
    params = module.params
    _check_limits(params)
    if params['phase'] == RESTORE:
        return plan_back(params)
    if params['components'] is None:
        raise HotplugError('phase evacuate needs components: "all" or a mapping of cpus, memory_blocks, numa_nodes')
    return plan_evacuate(params)


# --------------------------------------------------------------------------
# apply

def check_policy(policy):
    unknown = sorted(set(policy) - set(POLICY_KEYS))
    if unknown:
        raise HotplugError('unknown migration policy key %s (known: %s)'
                           % (', '.join(unknown), ', '.join(sorted(POLICY_KEYS))))
    out = {}
    for key, value in policy.items():
        if value is None:
            continue
        kind = POLICY_KEYS[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise HotplugError('migration policy %s must be a whole number of at least 1, got %r' % (key, value))
        if kind is bool and not isinstance(value, bool):
            raise HotplugError('migration policy %s must be true or false, got %r' % (key, value))
        if key == 'timeout_action' and value not in TIMEOUT_ACTIONS:
            raise HotplugError('migration policy timeout_action must be one of %s, got %r'
                               % (', '.join(TIMEOUT_ACTIONS), value))
        out[key] = value
    return out


def check_migrations(migrations, default_uri=None):
    """The migrations, each with its source_uri (default_uri, the module's uri, when it has none)."""
    seen = set()
    out = []
    for move in migrations:
        missing = [k for k in MIGRATION_KEYS if move.get(k) in (None, '')]
        if missing:
            raise HotplugError('migration %r lacks %s' % (move.get('name'), ', '.join(missing)))
        if isinstance(move['wave'], bool) or not isinstance(move['wave'], int) or move['wave'] < 0:
            raise HotplugError('migration %s: wave must be a whole number, got %r' % (move['name'], move['wave']))
        if move['name'] in seen:
            raise HotplugError('domain %s is listed twice in migrations' % move['name'])
        seen.add(move['name'])
        out.append(dict(move, source_uri=move.get('source_uri') or default_uri))
    return out


def move_params(move, policy):
    """domain_migrate's params for one migration of the plan."""
    params = default_params(MigrationChange())
    params.update(policy)
    params.update(name=move['name'], uri=move['source_uri'], dest_uri=move['dest_uri'])
    return params


def _migrate_one(module, move, policy):
    return run_steps(module, MigrationChange(), move_params(move, policy))


def runs_on(move, after):
    """The hosts the domain runs on as re-read after the migration (domain_migrate's `after`), or None when it
    was not read (check mode).  Two hosts, or none, is what a migration must never leave."""
    if not after:
        return None
    return [host for host, side in ((move['source'], 'source'), (move['destination'], 'destination'))
            if (after.get(side) or {}).get('active')]


def _summary(move, result, failed, msg=None):
    timings = result.get('timings') or {}
    after = result.get('after') or {}
    return dict(name=move['name'], source=move['source'], destination=move['destination'], wave=move['wave'],
                changed=bool(result.get('changed')), failed=failed, outcome=result.get('outcome'),
                downtime_ms=timings.get('downtime_ms'), migration_s=timings.get('migration_s'),
                total_s=timings.get('total_s'), after=after, runs_on=runs_on(move, after), msg=msg,
                change=move.get('change') or migration_change(move))


def run_waves(module, moves, policy, migrate=_migrate_one):
    """(results, skipped): the migrations wave by wave, each wave's at once; after a failed wave, the rest skip."""
    waves = {}
    for move in moves:
        waves.setdefault(move['wave'], []).append(move)
    results, skipped = [], []
    failed = False
    for number in sorted(waves):
        if failed:
            skipped.extend(dict(m, reason='an earlier wave failed') for m in waves[number])
            continue
        wave_results = [None] * len(waves[number])

        def one(index, move):
            try:
                wave_results[index] = _summary(move, migrate(module, move, policy), False)
            except HotplugError as exc:
                wave_results[index] = _summary(move, exc.details, True, exc.msg)
            except Exception as exc:  # pylint: disable=broad-except  # a thread must report, never vanish
                wave_results[index] = _summary(move, {}, True, 'unexpected error: %s' % exc)

        threads = [threading.Thread(target=one, args=(i, m)) for i, m in enumerate(waves[number])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results.extend(wave_results)
        failed = any(r['failed'] for r in wave_results)
    return results, skipped


def apply(module):
    params = module.params
    policy = check_policy(params['policy'])
    moves = sorted(params['migrations'], key=lambda m: (m.get('wave', 0), m.get('name') or ''))
    moves = check_migrations(moves, params['uri'])
    results, skipped = run_waves(module, moves, policy)
    result = dict(changed=any(r['changed'] for r in results), migrations=results, skipped=skipped,
                  moved=sorted(r['name'] for r in results if r['changed'] and not r['failed']))
    if module._diff:
        result['diff'] = [dict(before_header=r['name'], after_header=r['name'], before='runs on: %s\n' % r['source'],
                               after='runs on: %s\n' % r['destination']) for r in results if r['changed']]
    failures = [r for r in results if r['failed']]
    if failures:
        first = failures[0]
        raise HotplugError('migration of %s from %s to %s failed: %s (%d later migration(s) skipped)'
                           % (first['name'], first['source'], first['destination'], first['msg'], len(skipped)),
                           **result)
    return result


def plan_main():
    module = AnsibleModule(argument_spec=argument_spec(PLAN_OPTIONS, URI_ARGS), supports_check_mode=True)
    run_module(module, plan)


def apply_main():
    module = AnsibleModule(argument_spec=argument_spec(APPLY_OPTIONS, URI_ARGS), supports_check_mode=True)
    run_module(module, apply)
