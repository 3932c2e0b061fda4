#!/usr/bin/env python3
"""Live migration of a lab guest there and back: kvm.hotplug.domain_migrate versus `virsh migrate --live`, measured
side by side in one run on the same pair of hypervisors, alternating.

Run by hand from the repository root against the fleet lab (make fleet-up first), holding the lab lock:

    flock /tmp/kvmhp-lab.lock .venv/bin/python bench/domain_migrate_bench.py --rounds 5

Each round moves the guest src -> dst and back with `virsh migrate --live --p2p --persistent --undefinesource`,
then src -> dst and back with the module (its main() in this process: reading both hosts, every pre-check, the
same peer-to-peer migration, the re-read of both hosts and the verification with QEMU and the guest agent).
Per move it records the wall time and the guest's downtime, read for both the same way: libvirt's statistics of
the completed migration job on the destination (`virsh domjobinfo --completed`). It prints the medians (of
2 x rounds moves each) and the module's ratios to virsh.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import statistics
import subprocess
import sys
import time

import _common


def completed_downtime_ms(uri, guest):
    out = subprocess.run(['virsh', '-c', uri, 'domjobinfo', '--completed', '--keep-completed', guest], check=True,
                         capture_output=True, text=True).stdout
    match = re.search(r'^Total downtime:\s+(\d+)\s+ms', out, re.M)
    return int(match.group(1)) if match else None


def by_virsh(src, dst, guest):
    started = time.monotonic()
    subprocess.run(['virsh', '-c', src, 'migrate', '--live', '--p2p', '--persistent', '--undefinesource', guest, dst],
                   check=True, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    return seconds, completed_downtime_ms(dst, guest)


def by_module(src, dst, guest):
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.kvm.hotplug.plugins.modules import domain_migrate

    output = io.StringIO()
    started = time.monotonic()
    with patch_module_args(dict(name=guest, uri=src, dest_uri=dst)), contextlib.redirect_stdout(output):
        try:
            domain_migrate.main()
        except SystemExit:
            pass
    seconds = time.monotonic() - started
    result = json.loads(output.getvalue())
    if result.get('failed') or result.get('outcome') != 'migrated':
        sys.exit('domain_migrate failed: %s' % result.get('msg'))
    return seconds, completed_downtime_ms(dst, guest)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--guest', default='fleet-b')
    parser.add_argument('--src', default='qemu+tcp://127.0.1.1/system')
    parser.add_argument('--dst', default='qemu+tcp://127.0.1.3/system')
    args = parser.parse_args()
    _common.importable()
    samples = dict(virsh=[], module=[])
    for round_number in range(1, args.rounds + 1):
        for how, move in (('virsh', by_virsh), ('module', by_module)):
            for src, dst in ((args.src, args.dst), (args.dst, args.src)):
                seconds, downtime = move(src, dst, args.guest)
                samples[how].append((seconds, downtime))
                print('round %d %-6s %s -> %s: %.2f s, downtime %s ms' % (round_number, how, src, dst, seconds,
                                                                         downtime), flush=True)
    medians = {}
    for how, values in samples.items():
        medians[how] = (statistics.median(v[0] for v in values),
                        statistics.median(v[1] for v in values if v[1] is not None))
    print('\nmedians of %d moves each' % len(samples['virsh']))
    print('%-8s %10s %12s' % ('how', 'time s', 'downtime ms'))
    for how in ('virsh', 'module'):
        print('%-8s %10.2f %12.1f' % (how, medians[how][0], medians[how][1]))
    print('module / virsh: time %.2f, downtime %.2f'
          % (medians['module'][0] / medians['virsh'][0],
             medians['module'][1] / medians['virsh'][1] if medians['virsh'][1] else float('nan')))


if __name__ == '__main__':
    main()
