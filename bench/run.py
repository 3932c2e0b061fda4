#!/usr/bin/env python3
"""`make bench`: every benchmark of issue 14, then docs/performance.md and its plots from the results (bench/report.py).

    .venv/bin/python bench/run.py [--quick] [--reps N] [--parts planner,vcpu,dimm,migrate,batch,evacuate,isolate]

Run by hand, never by `make test`. The planner part is pure (no lab). Each lab part is its own short run under the
shared lab lock (flock LOCK, default /tmp/kvmhp-lab.lock), so other users of the lab interleave between parts; each
puts the guests back as it found them. --quick is a smoke test (2 repetitions, planner sizes up to 10,000 VMs, batch
sizes 1 and 4): its results say so in docs/performance.md. A failing part is reported and the others still run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import _common

LOCK = os.environ.get('KVMHP_LAB_LOCK', '/tmp/kvmhp-lab.lock')


def parts(args):
    reps = args.reps
    quick_reps = reps or (2 if args.quick else 5)
    bench = lambda name: os.path.join(_common.BENCH, name)   # noqa: E731
    return [
        ('planner', False, [bench('planner_scale_bench.py'), '--json'] + (['--quick'] if args.quick else [])
         + (['--reps', str(reps)] if reps else [])),
        ('vcpu', True, [bench('op_overhead_bench.py'), 'vcpu', '--reps', str(quick_reps), '--json']),
        ('dimm', True, [bench('op_overhead_bench.py'), 'dimm', '--reps', str(quick_reps), '--json']),
        ('migrate', True, [bench('op_overhead_bench.py'), 'migrate', '--reps', str(quick_reps), '--json']),
        ('batch', True, [bench('rebalance_bench.py'), '--sizes', '1,4' if args.quick else '1,4,7',
                         '--rounds', str(reps or (1 if args.quick else 5)), '--json']),
        ('evacuate', True, [bench('evacuate_bench.py'), '--reps', str(reps or (1 if args.quick else 5)), '--json']),
        ('isolate', True, [bench('serviceability_bench.py'), '--sizes', '1,2,3',
                           '--rounds', str(reps or (1 if args.quick else 5)), '--json']),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--reps', type=int, default=None, help='repetitions for every part (overrides the defaults)')
    parser.add_argument('--parts', default=None, help='comma-separated, of: planner vcpu dimm migrate batch evacuate '
                                                      'isolate (default all)')
    parser.add_argument('--no-report', action='store_true', help='do not rewrite docs/performance.md')
    args = parser.parse_args()
    chosen = args.parts.split(',') if args.parts else None
    failed = []
    for name, lab, command in parts(args):
        if chosen and name not in chosen:
            continue
        command = [_common.PYTHON] + command
        if lab:
            command = ['flock', LOCK] + command
        print('== %s: %s' % (name, ' '.join(command)), flush=True)
        if subprocess.run(command, cwd=_common.REPO).returncode != 0:
            failed.append(name)
    if not args.no_report:
        subprocess.run([_common.PYTHON, os.path.join(_common.BENCH, 'report.py')], check=True, cwd=_common.REPO)
    if failed:
        print('failed parts: %s (their earlier results, if any, are kept)' % ', '.join(failed))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
