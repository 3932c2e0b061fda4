#!/usr/bin/env python3
"""The rebalance and evacuation planners from 100 to 100,000 VMs over proportionally many hosts (20 VMs a host):
time, peak memory and the fitted growth exponent, by hand (no lab):

    .venv/bin/python bench/planner_scale_bench.py [--reps 5] [--quick] [--json]

Fleets come from the generators of bench/rebalance_planner_bench.py and bench/evacuate_planner_bench.py (fixed
seeds, so runs compare):

  rebalance   plan_fleet over N VMs on N/20 hosts (demand above capacity on about a third of them), explain on;
  evacuation  plan_hypervisor_evacuation of one source carrying all N VMs, components all, to N/20 - 1
              destinations: every VM is placed and put in a wave, the planner's worst case at that scale.

Each size is timed --reps times (perf_counter wall and process CPU; min, median and max), then once more under
tracemalloc for the peak of memory the planner allocates, and once under cProfile for the number of Python function
calls it makes (the work, whatever the machine's caches do; neither of these runs is timed).
The growth exponent k in time ~ N^k is the least-squares slope of log(median time) on log(N), over all sizes and over
N >= 1000 (below that fixed costs dominate); linear is 1.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import random
import sys
import time
import tracemalloc

import _common
import evacuate_planner_bench
import rebalance_planner_bench

SIZES = (100, 300, 1000, 3000, 10000, 30000, 100000)
QUICK_SIZES = (100, 1000, 10000)
VMS_PER_HOST = 20


def rebalance_case(vms):
    from ansible_collections.kvm.hotplug.plugins.module_utils._placement import rebalance
    hosts = rebalance_planner_bench.fleet(vms, max(1, vms // VMS_PER_HOST))
    settings = dict(max_step=dict(vcpus=2, memory_mib=1024), hysteresis=dict(vcpus=1, memory_mib=256, rounds=1))
    return len(hosts), lambda: rebalance.plan_fleet(hosts, settings, explain=True)


def evacuation_case(vms):
    from ansible_collections.kvm.hotplug.plugins.module_utils._placement import evacuate
    gen = evacuate_planner_bench
    rng = random.Random(10)
    domains = gen.domains(rng, vms, 0, 128)
    source = gen.source_host('hv00000', domains, block_mib=2048,
                             memory_gib=max(2048, sum(v['memory_mib'] for v in domains) // 1024 + 1024))
    others = [gen.destination(rng, 'hv%05d' % h) for h in range(1, max(2, vms // VMS_PER_HOST))]
    settings = dict(parallel=4, per_destination=2, cpu_overcommit=4.0, memory_overcommit=1.0)
    return len(others) + 1, lambda: evacuate.plan_hypervisor_evacuation(source, 'all', others, settings)


def check(planner, plan, vms):
    """The plan covers the fleet (so a fast planner that skipped work would show)."""
    if planner == 'rebalance':
        count = sum(len(p['vms']) for p in plan.values())
    else:
        count = len(plan['leave']) + len(plan['stay'])
    if count != vms:
        sys.exit('%s planner at %d VMs: the plan names %d VMs' % (planner, vms, count))


def measure(planner, case, vms, reps):
    hosts, run = case(vms)
    walls, cpus = [], []
    for _ in range(reps):
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        plan = run()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        check(planner, plan, vms)
        del plan
    gc.collect()
    tracemalloc.start()
    plan = run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del plan
    profile = cProfile.Profile()
    profile.runcall(run)
    calls = sum(entry.callcount for entry in profile.getstats())
    row = dict(vms=vms, hosts=hosts, wall=_common.summary(walls), cpu=_common.summary(cpus), peak_mib=peak / 2 ** 20,
               calls=calls)
    print('%-10s %7d VMs %6d hosts: wall min %.4f median %.4f max %.4f s, CPU median %.4f s, peak %.1f MiB, '
          '%.1f function calls a VM' % (planner, vms, hosts, row['wall']['min'], row['wall']['median'],
                                        row['wall']['max'], row['cpu']['median'], row['peak_mib'], calls / vms),
          flush=True)
    return row


def growth(rows, key='cpu', smallest=0):
    """Least-squares slope of log(median) on log(VMs) over the rows with at least `smallest` VMs."""
    points = [(math.log(r['vms']), math.log(r[key]['median'] if isinstance(r[key], dict) else r[key]))
              for r in rows if r['vms'] >= smallest]
    if len(points) < 2:
        return None
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reps', type=int, default=None, help='timed repetitions per size (default 5, --quick 2)')
    parser.add_argument('--quick', action='store_true', help='sizes up to 10,000 VMs, 2 repetitions: a smoke test')
    parser.add_argument('--sizes', default=None, help='comma-separated VM counts')
    _common.add_json_option(parser, 'planner_scale')
    args = parser.parse_args()
    reps = args.reps or (2 if args.quick else 5)
    sizes = [int(s) for s in args.sizes.split(',')] if args.sizes else list(QUICK_SIZES if args.quick else SIZES)
    _common.importable()
    reference = _common.reference()
    print('reference workload (1,000,000 small dicts): %.3f s CPU' % reference)
    planners = {}
    for planner, case in (('rebalance', rebalance_case), ('evacuation', evacuation_case)):
        rows = [measure(planner, case, vms, reps) for vms in sizes]
        fits = dict(cpu_all=growth(rows), cpu_from_1000=growth(rows, smallest=1000),
                    wall_all=growth(rows, 'wall'), peak_from_1000=growth(rows, 'peak_mib', smallest=1000),
                    calls_from_1000=growth(rows, 'calls', smallest=1000))
        planners[planner] = dict(rows=rows, growth=fits)
        print('%s: time ~ N^%.2f over all sizes, N^%s from 1,000 VMs; peak memory ~ N^%s from 1,000 VMs' % (
            planner, fits['cpu_all'], '%.2f' % fits['cpu_from_1000'] if fits['cpu_from_1000'] else '-',
            '%.2f' % fits['peak_from_1000'] if fits['peak_from_1000'] else '-'))
    if args.json:
        _common.write_result('planner_scale', dict(reps=reps, quick=args.quick, vms_per_host=VMS_PER_HOST,
                                                   reference_cpu_s=reference, planners=planners), args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
