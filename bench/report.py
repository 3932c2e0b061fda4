#!/usr/bin/env python3
"""docs/performance.md and its plots (docs/images/perf-*.png), generated from bench/results/*.json; no number in the
page is typed by hand. `make bench` runs it last; run it alone to rewrite the page from the results there:

    .venv/bin/python bench/report.py

A part whose results file is missing is listed as not measured.
"""

from __future__ import annotations

import json
import math
import os
import sys

import _common

DOC = os.path.join(_common.REPO, 'docs', 'performance.md')
IMAGES = os.path.join(_common.REPO, 'docs', 'images')
FLEET_HOSTS, FORKS = 1000, 50
COLORS = dict(direct='#55a868', script='#8172b2', role='#4c72b0', naive='#c44e52')


def load(name):
    path = os.path.join(_common.RESULTS, '%s.json' % name)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def s3(summary, unit='s', digits=2):
    """min / median / max of a summary."""
    if not summary or summary.get('median') is None:
        return 'n/a'
    f = '%%.%df' % digits
    return ('%s / **%s** / %s %s' % (f % summary['min'], f % summary['median'], f % summary['max'], unit)).strip()


def r3(r):
    if not r or r.get('median') is None:
        return 'n/a'
    if 'min' in r:
        return '%.2f (%.2f-%.2f)' % (r['median'], r['min'], r['max'])
    return '%.2f' % r['median']


def provenance(data):
    return ('measured %s at commit %s, %d repetitions%s, load average %s on %d CPUs'
            % (data['measured'], data['commit'], data['reps'], ' (--quick)' if data.get('quick') else '',
               ' '.join('%.1f' % x for x in data['load_average']), data['cpus']))


def plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as pyplot
    return pyplot


def save(fig, name):
    os.makedirs(IMAGES, exist_ok=True)
    fig.tight_layout()
    fig.savefig(os.path.join(IMAGES, name), dpi=90, metadata={'Software': None})
    plt().close(fig)
    return '![%s](images/%s)' % (name[:-4], name)


def errorbar(ax, xs, summaries, label, **kw):
    med = [s['median'] for s in summaries]
    lo = [s['median'] - s['min'] for s in summaries]
    hi = [s['max'] - s['median'] for s in summaries]
    ax.errorbar(xs, med, yerr=[lo, hi], marker='o', capsize=3, label=label, **kw)


# --- part 1: planner scale -------------------------------------------------------------------------------------------

def planner_section(data):
    out = ['## Planner scale', '']
    if not data:
        return out + ['Not measured (bench/results/planner_scale.json is missing).', '']
    out += ['The pure planners on generated fleets of 100 to %s VMs, %d VMs a host (`bench/planner_scale_bench.py`; '
            'the fleets are those of `bench/rebalance_planner_bench.py` and `bench/evacuate_planner_bench.py`). '
            'Rebalance plans every host of the fleet; evacuation plans one source carrying all N VMs to the N/%d - 1 '
            'other hosts (every VM placed and put in a wave: its worst case). CPU seconds of the planner call '
            '(min / median / max); peak memory is the planner\'s own allocations (tracemalloc, one extra run); '
            'the growth exponent k of time ~ N^k is the least-squares slope on log-log (1 is linear).'
            % ('{:,}'.format(max(r['vms'] for r in data['planners']['rebalance']['rows'])), data['vms_per_host'],
               data['vms_per_host']), '', provenance(data) + '; reference workload %.3f s CPU.' % data['reference_cpu_s'],
            '']
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(10, 4))
    for planner, info in data['planners'].items():
        rows = info['rows']
        out += ['### %s' % planner.capitalize(), '', '| VMs | hosts | CPU s (min / median / max) | wall s median | '
                'peak MiB | µs per VM | function calls per VM |', '|---:|---:|---|---:|---:|---:|---:|']
        for r in rows:
            out.append('| {:,} | {:,} | {} | {:.4f} | {:.1f} | {:.1f} | {} |'.format(
                r['vms'], r['hosts'], s3(r['cpu'], '', 4), r['wall']['median'], r['peak_mib'],
                1e6 * r['cpu']['median'] / r['vms'], '%.1f' % (r['calls'] / r['vms']) if r.get('calls') else 'n/a'))
        g = info['growth']
        out += ['', 'Growth: time ~ N^%.2f over all sizes, N^%.2f from 1,000 VMs; peak memory ~ N^%.2f from 1,000 VMs%s.'
                % (g['cpu_all'], g['cpu_from_1000'], g['peak_from_1000'],
                   '; function calls (the work done) ~ N^%.2f from 1,000 VMs' % g['calls_from_1000']
                   if g.get('calls_from_1000') else ''), '']
        xs = [r['vms'] for r in rows]
        errorbar(ax1, xs, [r['cpu'] for r in rows], '%s (k=%.2f)' % (planner, g['cpu_from_1000']))
        ax2.plot(xs, [r['peak_mib'] for r in rows], marker='o', label=planner)
    xs = sorted(set(r['vms'] for info in data['planners'].values() for r in info['rows']))
    base = data['planners']['rebalance']['rows'][0]
    ax1.plot(xs, [base['cpu']['median'] * x / base['vms'] for x in xs], ':', color='grey', label='linear')
    for ax, title in ((ax1, 'planner CPU time (s)'), (ax2, 'planner peak memory (MiB)')):
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('VMs (20 per host)')
        ax.set_title(title)
        ax.legend()
        ax.grid(True, which='both', alpha=0.3)
    out += [save(fig, 'perf-planner-scale.png'), '']
    return out


# --- part 2: per-operation overhead ------------------------------------------------------------------------------------

OPS = ('vcpu', 'dimm', 'migrate')
WAYS = (('ping', 'ansible-playbook, one `ansible.builtin.ping` task'),
        ('module', 'ansible-playbook, one kvm.hotplug task'),
        ('module_elapsed', "the module's own `elapsed`"),
        ('module_minus_ping', 'module playbook minus ping playbook (same repetition)'),
        ('script', 'plain Python script (own process)'),
        ('virsh', 'virsh from a bash loop'))


def overhead_section(results):
    out = ['## Per-operation overhead', '']
    present = dict((op, results[op]) for op in OPS if results.get(op))
    if not present:
        return out + ['Not measured (bench/results/op_overhead_*.json are missing).', '']
    out += ['One operation with its wait, four ways in one run, the order rotated each repetition '
            '(`bench/op_overhead_bench.py`; the script is `bench/direct_ops.py`). Seconds, min / **median** / max; '
            'the ratio to the plain script is the ratio of the medians, with the range of the per-repetition ratios '
            'in brackets. The script\'s time includes its own interpreter start and libvirt import, as a user\'s '
            'script does; the module\'s `elapsed` starts inside the module, after Ansible has started it. On this '
            'shared 2-core machine single repetitions vary (a ping playbook slower than the module\'s in the same '
            'repetition gives a negative difference): read the medians.', '']
    for op, data in present.items():
        out += ['### %s' % data['description'], '', provenance(data) + '.', '',
                '| way | seconds | ratio to the script |', '|---|---|---|']
        for way, label in WAYS:
            ratio = data['ratios'].get('%s/script' % way) if way != 'script' else dict(median=1.0)
            out.append('| %s | %s | %s |' % (label, s3(data['stats'].get(way)), r3(ratio)))
        if data.get('downtime_ms'):
            out += ['', 'Guest downtime (libvirt\'s statistics of the completed job, ms): %s.' % '; '.join(
                '%s %s' % (w, s3(v, 'ms', 0)) for w, v in data['downtime_ms'].items())]
        out.append('')
    fig, axes = plt().subplots(1, len(present), figsize=(4 * len(present), 3.6), squeeze=False)
    for ax, (op, data) in zip(axes[0], present.items()):
        ways = ['ping', 'module', 'module_elapsed', 'script', 'virsh']
        stats = [data['stats'][w] if data['stats'][w]['median'] is not None else dict(min=0, median=0, max=0)
                 for w in ways]
        med = [s['median'] for s in stats]
        ax.bar(range(len(ways)), med, yerr=[[m - s['min'] for m, s in zip(med, stats)],
                                            [s['max'] - m for m, s in zip(med, stats)]], capsize=3,
               color=['#bbbbbb', '#4c72b0', '#8fa9d6', '#55a868', '#c44e52'])
        ax.set_xticks(range(len(ways)))
        ax.set_xticklabels(['ping', 'module\n(playbook)', 'module\nelapsed', 'script', 'virsh'], fontsize=8)
        ax.set_title(op)
        ax.set_ylabel('seconds')
    out += [save(fig, 'perf-op-overhead.png'), '']
    return out


# --- part 3: per-host batch --------------------------------------------------------------------------------------------

def batch_section(data):
    out = ['## Per-host batch: rebalance of N guests', '']
    if not data:
        return out + ['Not measured (bench/results/batch.json is missing).', '']
    out += ['Each of N lab guests gets one more vCPU and the run waits until every guest has it online '
            '(`bench/rebalance_bench.py`): the `kvm.hotplug.rebalance` role (one plan and one apply call per host), '
            'a playbook with one `vcpu_hotplug` task per VM, and the direct-libvirt floor (the calls and polling '
            'from Python%s).' % (', also timed as a script of its own' if 'script' in data['methods'] else ''), '',
            provenance(data) + '.', '']
    methods = [m for m in data['methods'] if m != 'direct']
    out += ['| N | direct (floor) s | %s |' % ' | '.join('%s s | %s / floor' % (m, m) for m in methods),
            '|---:|---|' + '---|---|' * len(methods)]
    for row in data['rows']:
        out.append('| %d | %s | %s |' % (row['n'], s3(row['stats']['direct']), ' | '.join(
            '%s | %s' % (s3(row['stats'][m]), r3(row['ratios']['%s/direct' % m])) for m in methods)))
    rows = data['rows']
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        out += ['', 'From N=%d to N=%d: %s.' % (first['n'], last['n'], ', '.join(
            '%s grows %.2fx (%.2f s per added guest)' % (m, last['stats'][m]['median'] / first['stats'][m]['median'],
                                                        (last['stats'][m]['median'] - first['stats'][m]['median'])
                                                        / (last['n'] - first['n']))
            for m in ['direct'] + methods))]
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(10, 4))
    ns = [r['n'] for r in rows]
    for m in ['direct'] + methods:
        errorbar(ax1, ns, [r['stats'][m] for r in rows], m, color=COLORS.get(m))
    for m in methods:
        ax2.plot(ns, [r['ratios']['%s/direct' % m]['median'] for r in rows], marker='o', label=m, color=COLORS.get(m))
    ax1.set_title('seconds for N guests')
    ax2.set_title('ratio to the direct-libvirt floor')
    for ax in (ax1, ax2):
        ax.set_xlabel('guests on the host (N)')
        ax.legend()
        ax.grid(True, alpha=0.3)
    out += ['', save(fig, 'perf-batch.png'), '']
    return out


# --- part 4: evacuation --------------------------------------------------------------------------------------------

def evacuate_section(data):
    out = ['## Evacuation of one host', '']
    if not data:
        return out + ['Not measured (bench/results/evacuate.json is missing).', '']
    out += ['`kvm.hotplug.hypervisor_migration` taking hv1\'s CPU 1 out with %d guests pinned to it, so all of them '
            'leave, at parallel limits 1, 2 and 4 (`bench/evacuate_bench.py`). Total is the whole playbook; the sum '
            'is of the migrations of the same run (each one\'s `migration_s`); downtime per guest from libvirt\'s '
            'job statistics.' % len(data['guests']), '', provenance(data) + '.', '',
            '| parallel | waves | total s | sum of its migrations s | total / total at parallel 1 | '
            'total / sum | downtime per guest ms |', '|---:|---|---|---|---|---|---|']
    for row in data['rows']:
        out.append('| %d | %s | %s | %s | %s | %s | %s |' % (
            row['parallel'], ','.join(str(w) for w in sorted(set(row['waves']))), s3(row['total']),
            s3(row['sum_migrations']), r3(row['ratios']['total/total(parallel 1)']),
            r3(row['ratios']['total/sum of its migrations']), s3(row['downtime_ms'], 'ms', 0)))
    fig, ax = plt().subplots(figsize=(5, 3.6))
    ps = [r['parallel'] for r in data['rows']]
    errorbar(ax, ps, [r['total'] for r in data['rows']], 'total')
    errorbar(ax, ps, [r['sum_migrations'] for r in data['rows']], 'sum of its migrations')
    ax.set_xlabel('parallel limit')
    ax.set_ylabel('seconds')
    ax.set_xticks(ps)
    ax.legend()
    ax.grid(True, alpha=0.3)
    out += ['', save(fig, 'perf-evacuate.png'), '']
    return out


# --- part 5: time to isolate -------------------------------------------------------------------------------------------

def isolate_section(data):
    out = ['## Time to isolate a failing CPU', '']
    if not data:
        return out + ['Not measured (bench/results/isolate.json is missing).', '']
    out += ['From the corrected-error counter write on hv1\'s simulated EDAC tree to CPU 1 offline, with N guests '
            'pinned to it (`bench/serviceability_bench.py`): the `kvm.hotplug.serviceability` playbook (detect, '
            'plan, record, re-pin, offline, report) against one `host_resource_offline` task alone. The fleet lab '
            'has 3 guests, so N stops at 3.', '', provenance(data) + '.', '',
            '| N pinned guests | role s | module alone s | role / module |', '|---:|---|---|---|']
    for row in data['rows']:
        out.append('| %d | %s | %s | %s |' % (row['n'], s3(row['stats']['role']), s3(row['stats']['direct']),
                                             r3(row['ratios']['role/direct'])))
    fig, ax = plt().subplots(figsize=(5, 3.6))
    ns = [r['n'] for r in data['rows']]
    errorbar(ax, ns, [r['stats']['role'] for r in data['rows']], 'serviceability role')
    errorbar(ax, ns, [r['stats']['direct'] for r in data['rows']], 'host_resource_offline alone')
    ax.set_xlabel('pinned guests')
    ax.set_ylabel('seconds')
    ax.set_xticks(ns)
    ax.legend()
    ax.grid(True, alpha=0.3)
    out += ['', save(fig, 'perf-isolate.png'), '']
    return out


# --- part 6: fleet on paper --------------------------------------------------------------------------------------------

def planner_at(planners, planner, vms):
    """Median CPU seconds of a planner at `vms`, from the nearest measured size scaled by the fitted exponent."""
    info = planners[planner]
    row = min(info['rows'], key=lambda r: abs(math.log(r['vms'] / vms)))
    return row['cpu']['median'] * (vms / row['vms']) ** info['growth']['cpu_from_1000']


def fleet_section(planner, ops, batch, evac, isolate):
    out = ['## A fleet on paper: 1,000 hypervisors, forks %d' % FORKS, '']
    ping = ops.get('vcpu') or ops.get('dimm') or ops.get('migrate')
    if not ping or not (batch or evac or isolate):
        return out + ['Not computed: it needs the per-operation results and at least one per-host result.', '']
    start = ping['stats']['ping']['median']
    batches = int(math.ceil(FLEET_HOSTS / float(FORKS)))
    vms = FLEET_HOSTS * 20
    out += ['What an AWX job running each playbook over %s hypervisors with forks %d would take, from the per-host '
            'figures above. Model: Ansible\'s linear strategy runs each task on %d hosts at a time and waits for '
            'the slowest of them before the next batch, so a job over hosts that are alike takes about the '
            'playbook\'s start-up plus %d batches x one host\'s time. It assumes the controller keeps up with %d '
            'forks (its share is below), hosts like the lab\'s, and no host slower '
            'than the rest; a real fleet\'s slowest host in each batch sets the pace.'
            % ('{:,}'.format(FLEET_HOSTS), FORKS, FORKS, batches, FORKS), '', '**Inputs** (medians of this run):', '']
    inputs = [('playbook start-up and one ping task (S)', start, 'op_overhead_%s' % ping['operation'])]
    rows = []
    if batch:
        last = batch['rows'][-1]
        host = last['stats']['role']['median']
        naive = last['stats']['naive']['median']
        inputs += [('rebalance role, one host with %d guests' % last['n'], host, 'batch'),
                   ('one vcpu_hotplug task per VM, same host', naive, 'batch'),
                   ('direct-libvirt floor, same host', last['stats']['direct']['median'], 'batch')]
        plan = planner_at(planner['planners'], 'rebalance', vms) if planner else None
        rows.append(('rebalance (%d guests a host)' % last['n'], host, plan,
                     'plan + apply per host; the floor is %.1f s of it' % last['stats']['direct']['median']))
        rows.append(('one vcpu_hotplug task per VM (%d a host)' % last['n'], naive, None,
                     'one task start-up per VM'))
    if isolate:
        last = isolate['rows'][-1]
        inputs += [('serviceability isolate, one host, %d pinned guests' % last['n'],
                    last['stats']['role']['median'], 'isolate')]
        rows.append(('serviceability isolate (%d pinned guests)' % last['n'], last['stats']['role']['median'], None,
                     'detect, plan, re-pin, offline, report; the offline alone is %.1f s'
                     % last['stats']['direct']['median']))
    if evac:
        row = [r for r in evac['rows'] if r['parallel'] == 2][0]
        inputs += [('hypervisor_migration, one source, %d guests, parallel 2' % len(evac['guests']),
                    row['total']['median'], 'evacuate'),
                   ('the same, the sum of its migrations', row['sum_migrations']['median'], 'evacuate')]
    if planner:
        inputs += [('rebalance planner at %s VMs (fitted)' % '{:,}'.format(vms),
                    planner_at(planner['planners'], 'rebalance', vms), 'planner_scale'),
                   ('evacuation planner, one source with all %s VMs (fitted)' % '{:,}'.format(vms),
                    planner_at(planner['planners'], 'evacuation', vms), 'planner_scale')]
    vcpu = ops.get('vcpu')
    extra = None
    if vcpu and vcpu['stats']['module_elapsed']['median'] is not None:
        extra = vcpu['stats']['module_minus_ping']['median'] - vcpu['stats']['module_elapsed']['median']
        inputs += [('a vcpu_hotplug task beyond a ping task, outside the module\'s own work (module playbook - ping '
                    'playbook - module elapsed)', extra, 'op_overhead_vcpu'),
                    ('the vcpu_hotplug module\'s own work (elapsed)', vcpu['stats']['module_elapsed']['median'],
                     'op_overhead_vcpu')]
    out += ['| input | seconds | from |', '|---|---:|---|']
    out += ['| %s | %.2f | bench/results/%s.json |' % (what, value, src) for what, value, src in inputs]
    out += ['', '**Estimate** per playbook (job ≈ S + %d x (one host - S)):' % batches, '',
            '| playbook | one host s | job over %s hosts | where the time goes |' % '{:,}'.format(FLEET_HOSTS),
            '|---|---:|---:|---|']
    for name, host, plan, note in rows:
        job = start + batches * max(0.0, host - start)
        out.append('| %s | %.1f | %.0f s (%.1f min) | start-up %.1f s once, %d x %.1f s per batch; %s%s |' % (
            name, host, job, job / 60, start, batches, host - start, note,
            '' if plan is None else '; planning all %s VMs in one call would be %.2f s' % ('{:,}'.format(vms), plan)))
    if evac:
        row = [r for r in evac['rows'] if r['parallel'] == 2][0]
        plan = planner_at(planner['planners'], 'evacuation', vms) if planner else 0.0
        out.append('| hypervisor_migration (one source, %d guests, parallel 2) | %.1f | at least %.0f s | one source, '
                   'so the job is that host\'s run, not 20 batches: its migrations (%.1f s in sum) and the planner at '
                   '%s VMs (%.2f s); not measured here (the lab has 2 destinations): reading 999 destinations for the '
                   'plan, and the skipped tasks of 999 hosts |'
                   % (len(evac['guests']), row['total']['median'], row['total']['median'] + plan,
                      row['sum_migrations']['median'], '{:,}'.format(vms), plan))
    if extra is not None:
        elapsed = vcpu['stats']['module_elapsed']['median']
        out += ['', 'The controller\'s share: a kvm.hotplug task costs about %.2f s more than a ping task outside the '
                'module\'s own work (AnsiballZ packaging of its module_utils, imports), against %.2f s of the '
                'module\'s own work for a vCPU hot-add. With %d forks that is up to %.0f CPU seconds per batch and task '
                '(taking that wall time as CPU), '
                'so a controller (an AWX execution node) with fewer than about %d cores is what sets the pace of a '
                'batch, not the hypervisors (on this machine controller and hosts share 2 cores).'
                % (extra, elapsed, FORKS, FORKS * extra, int(math.ceil(FORKS * extra / elapsed)) if elapsed else 0)]
    out.append('')
    return out


def main():
    planner = load('planner_scale')
    ops = dict((op, load('op_overhead_%s' % op)) for op in OPS)
    batch, evac, isolate = load('batch'), load('evacuate'), load('isolate')
    lines = ['# Performance', '',
             'Measured by `make bench` (run by hand, never part of `make test`) and written by `bench/report.py` from '
             '`bench/results/*.json`: do not edit this page, run the benchmarks again. Every figure compares ways '
             'measured side by side in the same run, alternating, and gives min, median and max over the '
             'repetitions. The lab is TCG guests on a 2-core machine shared with other work, so absolute seconds '
             'are this machine\'s; the ratios are the point.', '']
    lines += planner_section(planner)
    lines += overhead_section(ops)
    lines += batch_section(batch)
    lines += evacuate_section(evac)
    lines += isolate_section(isolate)
    lines += fleet_section(planner, dict((k, v) for k, v in ops.items() if v), batch, evac, isolate)
    with open(DOC, 'w') as handle:
        handle.write('\n'.join(lines).rstrip() + '\n')
    print('wrote %s' % os.path.relpath(DOC, _common.REPO))
    return 0


if __name__ == '__main__':
    sys.exit(main())
