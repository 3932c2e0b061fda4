#!/usr/bin/env python3
"""Hot-add 2 -> 4 vCPUs and wait until the guest has them online: kvm.hotplug.vcpu_hotplug versus the same
libvirt calls made directly from Python, measured side by side in one run, alternating.

Run by hand from the repository root against the lab (make lab-up first):

    .venv/bin/python bench/vcpu_hotplug_bench.py --rounds 5

Each measurement starts from a freshly reset guest (tests/lab/labctl reset), because under TCG a vCPU that
was hot-unplugged poisons its QEMU process (see docs/vcpu_hotplug.md). Three numbers per round:
  direct   virDomainSetVcpu for vCPUs 2 and 3, then poll virDomainGetGuestVcpus until 4 are online;
  module   the module's own `elapsed` (reading, planning, the same calls, verification with QEMU and the guest);
  ansible  the whole `ansible localhost -m kvm.hotplug.vcpu_hotplug` command, controller start-up included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

import libvirt

import _common

PYTHON = _common.PYTHON


def reset(domain):
    _common.labctl('reset', domain)


def direct(domain):
    conn = libvirt.open('qemu:///system')
    try:
        dom = conn.lookupByName(domain)
        started = time.monotonic()
        for vcpu in (2, 3):
            dom.setVcpu(str(vcpu), 1, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        while True:
            info = dom.guestVcpus() or {}
            online = info.get('online', '')
            if online == '0-3':
                return time.monotonic() - started
            time.sleep(0.05)
    finally:
        conn.close()


def through_module(domain):
    env = _common.ansible_env(ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_LOAD_CALLBACK_PLUGINS='1')
    command = [os.path.join(os.path.dirname(PYTHON), 'ansible'), 'localhost', '-o',
               '-e', 'ansible_python_interpreter=%s' % PYTHON, '-m', 'kvm.hotplug.vcpu_hotplug',
               '-a', 'name=%s count=4 wait_for_guest=true config=false' % domain]
    started = time.monotonic()
    out = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    total = time.monotonic() - started
    result = json.loads(out.decode().split('=>', 1)[1])
    assert result['outcome'] == 'complete', result
    return result['elapsed'], total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--domain', default='lab-vcpu')
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    rows = []
    for round_no in range(args.rounds):
        # alternate the order so a warming cache or a busy moment does not favour one side
        order = ('direct', 'module') if round_no % 2 == 0 else ('module', 'direct')
        row = {}
        for side in order:
            reset(args.domain)
            if side == 'direct':
                row['direct'] = direct(args.domain)
            else:
                row['module'], row['ansible'] = through_module(args.domain)
        rows.append(row)
        print('round %d: direct %.3f s  module %.3f s  ansible %.3f s'
              % (round_no + 1, row['direct'], row['module'], row['ansible']), flush=True)
    reset(args.domain)
    med = {k: statistics.median(r[k] for r in rows) for k in ('direct', 'module', 'ansible')}
    print()
    print('median over %d rounds: direct %.3f s, module %.3f s, ansible command %.3f s'
          % (args.rounds, med['direct'], med['module'], med['ansible']))
    print('ratio module / direct:  %.2f' % (med['module'] / med['direct']))
    print('ratio ansible / direct: %.2f' % (med['ansible'] / med['direct']))


if __name__ == '__main__':
    main()
