"""Draw a rebalance report's bar chart (vCPUs and memory, before and after, per VM) on the controller.

    rebalance_chart.py REPORT.json OUT.png

Run by the role's report step with the controller's Python (ansible_playbook_python), so that managed hosts need
no plotting library.
"""
from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def main(report_path, out_path):
    with open(report_path) as handle:
        report = json.load(handle)
    vms = [vm for vm in report['vms'] if vm.get('active', True)]
    names = [vm['name'] for vm in vms]
    after = report.get('after') or {}
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.2 * len(names) + 3), 4))
    for ax, resource, label in ((axes[0], 'vcpus', 'vCPUs'), (axes[1], 'memory_mib', 'memory (MiB)')):
        before = [vm['before'][resource] for vm in vms]
        now = [(after.get(vm['name']) or vm['before'])[resource] for vm in vms]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], before, width=0.4, label='before')
        ax.bar([x + 0.2 for x in xs], now, width=0.4, label='after')
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=30, ha='right')
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle('rebalance of %s (%s)' % (report['host'], report['mode']))
    fig.tight_layout()
    fig.savefig(out_path, dpi=80)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], sys.argv[2]))
