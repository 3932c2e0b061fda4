#!/usr/bin/env python3
"""Evacuation of K guests from one fleet host with parallel limits 1, 2 and 4, measured side by side in one run
(issue 14, part 4): ansible-playbook kvm.hotplug.hypervisor_migration taking hv1's CPU 1 out, with every guest's
vCPU 0 pinned to that CPU alone, so all K of them leave (to hv2 and hv3).

Run by hand from the repository root against the fleet lab (make fleet-up first), holding the lab lock:

    flock /tmp/kvmhp-lab.lock .venv/bin/python bench/evacuate_bench.py [--guests 3] [--reps 5] [--json]

Before each measurement (not timed): the fleet guests at home (labctl fleet home), CPU 1 of hv1 online, fleet-c
moved to hv1 when K = 3, each guest's vCPU 0 pinned to CPU 1. Timed: the whole playbook. From its JSON report: each
guest's migration time and downtime (libvirt's job statistics, as kvm.hotplug.domain_migrate reports them).
Written: per parallel limit the total, the sum of the single migrations of the same run, and per-guest downtime;
the ratio total(P) / total(1) and total / sum of its migrations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import _common

HV1 = 'qemu+tcp://127.0.1.1/system'
HV2 = 'qemu+tcp://127.0.1.2/system'
GUESTS = ['fleet-a', 'fleet-b', 'fleet-c']   # fleet-c lives on hv2
PARALLEL = (1, 2, 4)

ONLINE = """- name: CPU 1 of hv1 online
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Bring hv1's CPU 1 online
      kvm.hotplug.host_resource_offline:
        uri: %s
        cpus: "1"
        state: online
        sysfs_root: /var/lib/kvm-hotplug-lab/fleet/hv1/sys
        evacuate: false
""" % HV1


def virsh(*args):
    subprocess.run(['virsh', '-q'] + list(args), check=True, stdout=subprocess.DEVNULL)


def on_hv1(guest):
    return subprocess.run(['virsh', '-c', HV1, 'domstate', guest], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def inventory_env():
    return _common.ansible_env(ANSIBLE_HOST_KEY_CHECKING='true')


def put_back(work):
    _common.playbook(['-i', 'localhost,', '-c', 'local', '-e', 'ansible_python_interpreter=%s' % _common.PYTHON,
                      os.path.join(work, 'online.yml')])
    _common.labctl('fleet', 'home')


def prepare(work, guests):
    put_back(work)
    for guest in guests:
        if not on_hv1(guest):
            virsh('-c', HV2, 'migrate', '--live', '--p2p', '--persistent', '--undefinesource', guest, HV1)
        virsh('-c', HV1, 'vcpupin', guest, '0', '1', '--live', '--config')
    for name in ('record.json',):
        path = os.path.join(work, name)
        if os.path.exists(path):
            os.remove(path)


def evacuate(work, parallel, guests):
    report_dir = os.path.join(work, 'report-%d' % parallel)
    extra = dict(hypervisor_migration_source='hv1', hypervisor_migration_components=dict(cpus='1'),
                 hypervisor_migration_parallel=parallel, hypervisor_migration_per_destination=parallel,
                 hypervisor_migration_cpu_overcommit=8.0, hypervisor_migration_memory_overcommit=1.5,
                 hypervisor_migration_policy=dict(timeout=300), hypervisor_migration_report_dir=report_dir,
                 hypervisor_migration_record_file=os.path.join(work, 'record.json'))
    seconds = _common.playbook(['-i', _common.FLEET_INVENTORY, 'kvm.hotplug.hypervisor_migration',
                                '-e', json.dumps(extra)], env=inventory_env())
    with open(os.path.join(report_dir, 'hv1.evacuate.json')) as handle:
        report = json.load(handle)
    migrations = report['migrations']
    moved = sorted(m['name'] for m in migrations if m.get('outcome') == 'migrated')
    if moved != sorted(guests):
        sys.exit('parallel %d moved %s, not %s: %s' % (parallel, moved, guests,
                                                        [m.get('msg') for m in migrations if m.get('failed')]))
    return seconds, migrations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--guests', type=int, default=3, help='K guests on hv1 (at most 3)')
    parser.add_argument('--reps', type=int, default=5)
    _common.add_json_option(parser, 'evacuate')
    args = parser.parse_args()
    guests = GUESTS[:args.guests]
    work = tempfile.mkdtemp(prefix='kvmhp-evacuate-bench-')
    with open(os.path.join(work, 'online.yml'), 'w') as handle:
        handle.write(ONLINE)
    samples = dict((p, dict(total=[], sum_migrations=[], downtime_ms=[], waves=[])) for p in PARALLEL)
    try:
        for rep in range(args.reps):
            order = PARALLEL[rep % 3:] + PARALLEL[:rep % 3]
            for parallel in order:
                prepare(work, guests)
                seconds, migrations = evacuate(work, parallel, guests)
                s = samples[parallel]
                s['total'].append(seconds)
                s['sum_migrations'].append(sum(m['migration_s'] for m in migrations))
                s['downtime_ms'].extend(m['downtime_ms'] for m in migrations if m.get('downtime_ms') is not None)
                s['waves'].append(len(set(m['wave'] for m in migrations)))
                print('rep %d parallel %d: %.1f s total, migrations %s' % (
                    rep + 1, parallel, seconds, ', '.join('%s %.1f s (downtime %s ms)' % (
                        m['name'], m['migration_s'], m.get('downtime_ms')) for m in migrations)), flush=True)
    finally:
        put_back(work)
    rows = []
    for parallel in PARALLEL:
        s = samples[parallel]
        rows.append(dict(parallel=parallel, waves=s['waves'], total=_common.summary(s['total']),
                         sum_migrations=_common.summary(s['sum_migrations']),
                         downtime_ms=_common.summary(s['downtime_ms'])))
    serial = rows[0]['total']
    for row in rows:
        row['ratios'] = {'total/total(parallel 1)': _common.ratio(row['total'], serial),
                         'total/sum of its migrations': _common.ratio(row['total'], row['sum_migrations'])}
        print('parallel %d: total median %.1f s (min %.1f, max %.1f), migrations sum median %.1f s, downtime median '
              '%s ms, total/parallel-1 %.2f' % (row['parallel'], row['total']['median'], row['total']['min'],
                                                 row['total']['max'], row['sum_migrations']['median'],
                                                 row['downtime_ms']['median'],
                                                 row['ratios']['total/total(parallel 1)']['median']))
    if args.json:
        _common.write_result('evacuate', dict(reps=args.reps, guests=guests, rows=rows), args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
