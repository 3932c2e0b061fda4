#!/usr/bin/env python3
"""Give N running guests of one host one more vCPU each and wait until every guest has it online, three ways,
measured side by side in one run (issue 12: O(1) module invocations per host, not one task per VM):

  role     ansible-playbook kvm.hotplug.rebalance (declared demand: each VM's vCPUs + 1): one plan call and one
           apply call for the host, whatever N is;
  naive    a playbook that loops one kvm.hotplug.vcpu_hotplug task per VM (what a user writes without the role);
  direct   virDomainSetVcpusFlags per VM from Python, then poll virDomainGetGuestVcpus until all are online.

Run by hand from the repository root against the single-host lab (make lab-up first):

    .venv/bin/python bench/rebalance_bench.py [--sizes 1,4,7] [--rounds 1]

Before every measurement the guests are reset (tests/lab/labctl reset; not timed): under TCG a guest cannot give
a vCPU back reliably, so each measurement starts from the same boot state. Printed: seconds per method and N, the
ratios role/direct and naive/direct, and how each grows from the smallest N to the largest.
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

import libvirt

import _common

PYTHON = _common.PYTHON
# lab guests that can take one more vCPU (tests/lab/README.md); lab-pinned is left out (its pins would need a plan)
GUESTS = ['lab-small', 'lab-mem', 'lab-vmem', 'lab-q35', 'lab-numa', 'lab-vcpu-stock', 'lab-vcpu']
URI = 'qemu:///system'


def reset(guests):
    for guest in guests:
        _common.labctl('reset', guest)


def current_vcpus(conn, guests):
    return dict((g, conn.lookupByName(g).vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE)) for g in guests)


def online_count(dom):
    text = (dom.guestVcpus() or {}).get('online', '')
    count = 0
    for part in filter(None, text.split(',')):
        first, _, last = part.partition('-')
        count += int(last or first) - int(first) + 1
    return count


def direct(conn, want):
    started = time.monotonic()
    doms = dict((g, conn.lookupByName(g)) for g in want)
    for guest, count in want.items():
        doms[guest].setVcpusFlags(count, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    pending = set(want)
    while pending:
        for guest in sorted(pending):
            try:
                if online_count(doms[guest]) == want[guest]:
                    pending.discard(guest)
            except libvirt.libvirtError:
                pass
        time.sleep(0.05)
    return time.monotonic() - started


def playbook(args, work):
    return _common.playbook(args, cwd=work)


def inventory(work, want):
    path = os.path.join(work, 'inventory.json')
    host = dict(ansible_connection='local', ansible_python_interpreter=PYTHON, kvm_hotplug_uri=URI,
                kvm_hotplug_vms=dict((g, dict(vcpus=c)) for g, c in want.items()),
                kvm_hotplug_host_reserve=dict(cpus=0, memory=0),
                rebalance_cpu_overcommit=64.0, rebalance_memory_overcommit=64.0,
                rebalance_max_step=dict(vcpus=1, memory_mib=0), rebalance_report_dir=os.path.join(work, 'report'))
    with open(path, 'w') as handle:
        json.dump(dict(all=dict(children=dict(kvm_hosts=dict(hosts=dict(hv=host))))), handle)
    return path


def role(work, want):
    return playbook(['-i', inventory(work, want), 'kvm.hotplug.rebalance'], work)


def naive(work, want):
    path = os.path.join(work, 'naive.yml')
    with open(path, 'w') as handle:
        json.dump([dict(name='One task per VM', hosts='kvm_hosts', gather_facts=False, tasks=[dict(
            name='Hot-add the vCPU', loop="{{ kvm_hotplug_vms | dict2items }}",
            **{'kvm.hotplug.vcpu_hotplug': dict(uri=URI, name='{{ item.key }}', count='{{ item.value.vcpus }}',
                                                wait_for_guest=True)})])], handle)
    return playbook(['-i', inventory(work, want), path], work)


def script(want):
    """The floor as a user's script runs it: a process of its own (bench/direct_ops.py vcpus)."""
    started = time.monotonic()
    subprocess.run([PYTHON, os.path.join(_common.BENCH, 'direct_ops.py'), 'vcpus']
                   + ['%d=%s' % (c, g) for g, c in want.items()], check=True, timeout=300)
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='1,4,%d' % len(GUESTS))
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument('--script', action='store_true',
                        help='also time the floor as a plain Python script of its own (bench/direct_ops.py vcpus)')
    _common.add_json_option(parser, 'batch')
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(',')]
    if max(sizes) > len(GUESTS):
        sys.exit('at most %d guests (%s)' % (len(GUESTS), ', '.join(GUESTS)))
    work = tempfile.mkdtemp(prefix='kvmhp-rebalance-bench-')
    conn = libvirt.open(URI)
    methods = ('direct', 'script', 'role', 'naive') if args.script else ('direct', 'role', 'naive')
    times = dict((n, dict((m, []) for m in methods)) for n in sizes)
    for round_no in range(args.rounds):
        for n in sizes:
            guests = GUESTS[:n]
            shift = round_no % len(methods)
            for method in methods[shift:] + methods[:shift]:   # rotating, so drift hits each method alike
                reset(guests)
                want = dict((g, c + 1) for g, c in current_vcpus(conn, guests).items())
                if method == 'direct':
                    seconds = direct(conn, want)
                elif method == 'script':
                    seconds = script(want)
                else:
                    seconds = globals()[method](work, want)
                after = current_vcpus(conn, guests)
                if after != want:
                    sys.exit('%s with N=%d left %s, wanted %s' % (method, n, after, want))
                times[n][method].append(seconds)
                print('N=%d %-6s %.2f s' % (n, method, seconds), flush=True)
    reset(GUESTS[:max(sizes)])
    conn.close()
    print('\n%4s %9s %9s %9s %12s %12s' % ('N', 'direct', 'role', 'naive', 'role/direct', 'naive/direct'))
    med = dict((n, dict((m, statistics.median(v)) for m, v in times[n].items())) for n in sizes)
    for n in sizes:
        m = med[n]
        print('%4d %8.2fs %8.2fs %8.2fs %11.2fx %11.2fx' % (n, m['direct'], m['role'], m['naive'],
                                                          m['role'] / m['direct'], m['naive'] / m['direct']))
    small, large = min(sizes), max(sizes)
    if large > small:
        print('growth from N=%d to N=%d: direct %.2fx, role %.2fx, naive %.2fx (per added VM: role %.2f s, '
              'naive %.2f s)' % (small, large, med[large]['direct'] / med[small]['direct'],
                                med[large]['role'] / med[small]['role'], med[large]['naive'] / med[small]['naive'],
                                (med[large]['role'] - med[small]['role']) / (large - small),
                                (med[large]['naive'] - med[small]['naive']) / (large - small)))
    print('load average: %s (2 cores, TCG guests)' % ' '.join('%.1f' % x for x in os.getloadavg()))
    if args.json:
        rows = []
        for n in sizes:
            stats = dict((m, _common.summary(v)) for m, v in times[n].items())
            rows.append(dict(n=n, guests=GUESTS[:n], stats=stats,
                             ratios=dict(('%s/direct' % m, _common.ratio(stats[m], stats['direct']))
                                         for m in methods if m != 'direct')))
        _common.write_result('batch', dict(reps=args.rounds, rows=rows, methods=list(methods)), args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
