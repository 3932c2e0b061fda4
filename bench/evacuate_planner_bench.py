#!/usr/bin/env python3
"""Time the evacuation planner (plugins/module_utils/_placement/evacuate.py) on a generated fleet, by hand.

    .venv/bin/python bench/evacuate_planner_bench.py [--vms 10000] [--hosts 500] [--sources 20] [--repeat 3]

Issue 10's budget: 10,000 VMs over 500 hosts planned in under a second.  Measured side by side in one run, each
against that budget:

- one source carrying all --vms VMs, evacuated to the other hosts: components all (every VM is placed and put in a
  wave: the worst case of the placement) and one NUMA node of two (the stay/leave rules on every VM, about half
  leave).  No real host runs 10,000 guests; this is the planner's load at the issue's scale;
- the fleet as it is: --vms VMs spread over --hosts hosts, and the planner run once per host for --sources of them
  (each evacuating its own VMs, components all, to the other hosts): the time per plan and for all of them.

The fleet comes from a fixed seed, so runs compare.  About a tenth of the destinations refuse one CPU model
(incompatible), so the placement also walks past destinations that fail a check.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

import _common

MODELS = ('Skylake-Server', 'Cascadelake-Server', 'EPYC-Milan')
BUDGET = 1.0


def _import_planner():
    _common.importable()
    from ansible_collections.kvm.hotplug.plugins.module_utils._placement import evacuate
    return evacuate


def domains(rng, count, first, cpus):
    out = []
    for i in range(first, first + count):
        vcpus = rng.randint(1, 8)
        vm = dict(name='vm%06d' % i, vcpus=vcpus, vcpus_max=rng.choice([vcpus, 16, 32]),
                  memory_mib=rng.randint(2, 32) * 256, hotplugged_mib=rng.choice([0, 0, 512]),
                  cpu_model=rng.choice(MODELS), machine='pc-q35-8.2', persistent=True)
        kind = rng.random()
        if kind < 0.2:      # pinned inside one node
            node = rng.randint(0, 1)
            base = node * (cpus // 2)
            vm['vcpupin'] = dict((str(v), str(base + rng.randrange(cpus // 2))) for v in range(vcpus))
            vm['emulatorpin'] = '%d-%d' % (base, base + 1)
            vm['numatune'] = dict(mode='strict', nodeset=str(node))
        elif kind < 0.3:    # memory on both nodes
            vm['numatune'] = dict(mode=rng.choice(['strict', 'interleave', 'preferred']), nodeset='0-1')
        out.append(vm)
    return out


def source_host(name, vms, cpus=128, block_mib=128, memory_gib=2048):
    """Two NUMA nodes, CPUs and memory split in halves; enough free memory and node memory for what it runs."""
    blocks = memory_gib * 1024 // block_mib
    used = sum(v['memory_mib'] for v in vms)
    total = memory_gib * 1024
    return dict(name=name, online_cpus='0-%d' % (cpus - 1), cpus='0-%d' % (cpus - 1), fixed_cpus='0',
                free_memory_mib=max(0, total - used), memory_block_mib=block_mib,
                memory_blocks=dict((str(b), dict(node=0 if b < blocks // 2 else 1, removable=True, zones=['Movable']))
                                   for b in range(blocks)),
                numa_nodes={'0': dict(cpus='0-%d' % (cpus // 2 - 1), free_mib=max(0, total - used) // 2),
                            '1': dict(cpus='%d-%d' % (cpus // 2, cpus - 1), free_mib=max(0, total - used) // 2)},
                domains=vms)


def destination(rng, name, load_vcpus=0, load_mib=0):
    cpus = 128
    memory = 1024 * 1024
    incompatible = MODELS[0] if rng.random() < 0.1 else None
    return dict(name=name, cpus_total=cpus, cpus_free=cpus - load_vcpus, memory_total_mib=memory,
                memory_free_mib=memory - load_mib - 8192, vcpu_max=dict([('pc-q35-8.2', 288)]), machine='pc-q35-8.2',
                virt_type='kvm', guests=0, online_cpus='0-127',
                cpu_compare=dict((m, 'incompatible' if m == incompatible else 'identical') for m in MODELS),
                cpu_detail=dict((m, 'Host CPU does not provide required features') for m in MODELS if m == incompatible))


def best_of(repeat, func):
    times = []
    result = None
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        result = func()
        times.append((time.perf_counter() - started, time.process_time() - cpu))
    return min(t[0] for t in times), min(t[1] for t in times), result


def line(what, wall, cpu, budget=BUDGET):
    return '%-62s %8.3f s wall %8.3f s CPU  %6.1f%% of the %.0f s budget' % (
        what, wall, cpu, 100.0 * wall / budget, budget)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--vms', type=int, default=10000)
    parser.add_argument('--hosts', type=int, default=500)
    parser.add_argument('--sources', type=int, default=20)
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    evacuate = _import_planner()
    rng = random.Random(10)
    settings = dict(parallel=4, per_destination=2, cpu_overcommit=4.0, memory_overcommit=1.0)

    # one source with every VM, to the other hosts
    vms = domains(rng, args.vms, 0, 128)
    # big enough for its VMs, in 2 GiB blocks (what Linux uses on x86 hosts with 64 GiB or more): ~21,000 blocks
    big = source_host('hv00000', vms, block_mib=2048,
                      memory_gib=max(2048, sum(v['memory_mib'] for v in vms) // 1024 + 1024))
    others = [destination(rng, 'hv%05d' % h) for h in range(1, args.hosts)]
    print('reference workload (1,000,000 small dicts): %.3f s CPU; compare it between runs' % _common.reference())
    rows = []
    for label, components in (('all', 'all'), ('NUMA node 1', dict(numa_nodes='1'))):
        wall, cpu, plan = best_of(args.repeat, lambda c=components: evacuate.plan_hypervisor_evacuation(big, c, others, settings))
        rows.append(line('1 source, %d VMs, %d destinations, components %s' % (args.vms, len(others), label),
                         wall, cpu))
        rows.append('    %d leave in %d waves, %d stay, %d re-pinned' % (
            len(plan['leave']), len(plan['waves']), len(plan['stay']), sum(1 for s in plan['stay'] if s['pinning'])))

    # the fleet: the VMs spread over the hosts, one plan per host for some of them
    fleet_rng = random.Random(11)
    per_host = args.vms // args.hosts
    hosts = []
    for h in range(args.hosts):
        mine = domains(fleet_rng, per_host, h * per_host, 128)
        hosts.append((source_host('hv%05d' % h, mine),
                      destination(fleet_rng, 'hv%05d' % h, sum(v['vcpus'] for v in mine),
                                  sum(v['memory_mib'] for v in mine))))

    def fleet_plans():
        plans = []
        for index in range(min(args.sources, args.hosts)):
            source = hosts[index][0]
            dests = [d for i, (_s, d) in enumerate(hosts) if i != index]
            plans.append(evacuate.plan_hypervisor_evacuation(source, 'all', dests, settings))
        return plans
    wall, cpu, plans = best_of(args.repeat, fleet_plans)
    count = len(plans)
    rows.append(line('%d sources x %d VMs (fleet of %d VMs on %d hosts), %d plans' % (
        count, per_host, per_host * args.hosts, args.hosts, count), wall, cpu))
    rows.append(line('    one of those plans (mean)', wall / count, cpu / count))
    for row in rows:
        print(row)
    print('load average while measuring: %s (the budget is for an idle core)' % ' '.join(
        '%.1f' % x for x in os.getloadavg()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
