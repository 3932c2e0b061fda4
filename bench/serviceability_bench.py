#!/usr/bin/env python3
"""Isolate a failing CPU of hv1 with N pinned guests on it, from the event to the CPU offline, two ways side by side
in one run (issue 11):

  role     raise CPU 1's corrected-error counter past the threshold on hv1's simulated EDAC tree, then
           ansible-playbook kvm.hotplug.serviceability -e serviceability_action=isolate on hv1 (detect, plan,
           record, re-pin, offline, report), timed from the counter write to the playbook's end;
  direct   the same counter write, then the module alone (ansible-playbook with one kvm.hotplug.host_resource_offline
           task: re-pin and offline, no detection, no plan, no report).

Run by hand from the repository root against the fleet lab (make fleet-up first):

    .venv/bin/python bench/serviceability_bench.py [--sizes 1,2,3] [--rounds 1]

N guests are the fleet guests on hv1 (fleet-c is moved there for N = 3), each with vCPU 0 pinned to CPUs 0-1 (the
real machine's CPUs; CPU 1 goes offline in hv1's simulated tree, so each is re-pinned to 0).  Before every
measurement CPU 1 is brought back online, the pins set again and the counters zeroed (not timed).  Printed:
seconds per method and N, the ratio role/direct, and how each grows from the smallest N to the largest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import _common

PYTHON = _common.PYTHON
LABCTL = _common.LABCTL
INVENTORY = _common.FLEET_INVENTORY
HV1 = 'qemu+tcp://127.0.1.1/system'
HV2 = 'qemu+tcp://127.0.1.2/system'
HV1_SYSFS = '/var/lib/kvm-hotplug-lab/fleet/hv1/sys'
GUESTS = ['fleet-a', 'fleet-b', 'fleet-c']

DIRECT_PLAYBOOK = """
- hosts: hv1
  gather_facts: false
  tasks:
    - kvm.hotplug.host_resource_offline:
        cpus: "1"
        sysfs_root: "{{ kvm_hotplug_sysfs_root }}"
"""


def fleet(*args):
    subprocess.run([PYTHON, LABCTL, 'fleet'] + list(args), check=True, stdout=subprocess.DEVNULL)


def virsh(*args):
    subprocess.run(['virsh', '-q'] + list(args), check=True, stdout=subprocess.DEVNULL)


def playbook(_collections, args):
    _common.playbook(['-i', INVENTORY] + args, env=_common.ansible_env(ANSIBLE_HOST_KEY_CHECKING='true'))


def on_hv1(guest):
    return subprocess.run(['virsh', '-c', HV1, 'domstate', guest], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def prepare(count, scratch):
    """CPU 1 online, counter zeroed, no state or record; the first `count` guests on hv1 with vCPU 0 pinned to 0-1,
    the others fresh at home (unpinned)."""
    playbook(scratch['collections'], [scratch['online']])
    fleet('sysfs', 'hv1', 'edac', 'cpu1/ce_count', '0')
    for name in ('state.json', 'record.json'):
        path = os.path.join(scratch['dir'], name)
        if os.path.exists(path):
            os.remove(path)
    for index, guest in enumerate(GUESTS):
        if index >= count:
            fleet('reset', guest)
            continue
        if not on_hv1(guest):   # fleet-c lives on hv2
            virsh('-c', HV2, 'migrate', '--live', '--persistent', '--undefinesource', guest, HV1)
        virsh('-c', HV1, 'vcpupin', guest, '0', '0-1', '--live', '--config')


def isolate_role(scratch):
    started = time.monotonic()
    fleet('sysfs', 'hv1', 'edac', 'cpu1/ce_count', '+60')
    playbook(scratch['collections'], ['kvm.hotplug.serviceability', '-e', '@' + scratch['vars']])
    return time.monotonic() - started


def isolate_direct(scratch):
    started = time.monotonic()
    fleet('sysfs', 'hv1', 'edac', 'cpu1/ce_count', '+60')
    playbook(scratch['collections'], [scratch['direct']])
    return time.monotonic() - started


def set_up_scratch():
    base = tempfile.mkdtemp(prefix='kvmhp-svc-bench-')
    collections = _common.collections_path()
    paths = dict(dir=base, collections=collections, vars=os.path.join(base, 'vars.json'),
                 direct=os.path.join(base, 'direct.yml'), online=os.path.join(base, 'online.yml'))
    with open(paths['vars'], 'w') as handle:
        json.dump(dict(serviceability_hosts='hv1', serviceability_action='isolate',
                       serviceability_report_dir=os.path.join(base, 'report'),
                       serviceability_state_file=os.path.join(base, 'state.json'),
                       serviceability_record_file=os.path.join(base, 'record.json')), handle)
    with open(paths['direct'], 'w') as handle:
        handle.write(DIRECT_PLAYBOOK)
    with open(paths['online'], 'w') as handle:
        handle.write(DIRECT_PLAYBOOK.replace('sysfs_root:', 'state: online\n        sysfs_root:'))
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='1,2,3', help='guests pinned on hv1 (at most 3)')
    parser.add_argument('--rounds', type=int, default=1)
    _common.add_json_option(parser, 'isolate')
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(','))
    if sizes[0] < 1 or sizes[-1] > len(GUESTS):
        sys.exit('--sizes: between 1 and %d guests' % len(GUESTS))
    scratch = set_up_scratch()
    fleet('home')
    results = dict(role={}, direct={})
    samples = dict(role={}, direct={})
    try:
        for count in sizes:
            times = dict(role=[], direct=[])
            for round_no in range(args.rounds):
                methods = (('role', isolate_role), ('direct', isolate_direct))
                for method, run in methods if round_no % 2 == 0 else methods[::-1]:   # alternating
                    prepare(count, scratch)
                    if method == 'role':
                        # the first reading the detection needs (CPU counters have no reset time), not timed
                        playbook(scratch['collections'], ['kvm.hotplug.serviceability', '-e', '@' + scratch['vars'],
                                                          '-e', 'serviceability_action=report'])
                    times[method].append(run(scratch))
                    print('N=%d %-6s %.2f s' % (count, method, times[method][-1]), flush=True)
            for method, values in times.items():
                results[method][count] = statistics.median(values)
                samples[method][count] = _common.summary(values)
    finally:
        prepare(0, scratch)
        fleet('home')
    print('%-8s %s' % ('guests', '  '.join('%8d' % n for n in sizes)))
    for method in ('role', 'direct'):
        print('%-8s %s' % (method, '  '.join('%7.2fs' % results[method][n] for n in sizes)))
    print('%-8s %s' % ('ratio', '  '.join('%8.2f' % (results['role'][n] / results['direct'][n]) for n in sizes)))
    for method in ('role', 'direct'):
        print('%s grows %.2fx from %d to %d guests' % (method, results[method][sizes[-1]] / results[method][sizes[0]],
                                                       sizes[0], sizes[-1]))
    if args.json:
        rows = [dict(n=n, stats=dict(role=samples['role'][n], direct=samples['direct'][n]),
                     ratios={'role/direct': _common.ratio(samples['role'][n], samples['direct'][n])}) for n in sizes]
        _common.write_result('isolate', dict(reps=args.rounds, rows=rows), args.json)


if __name__ == '__main__':
    main()
