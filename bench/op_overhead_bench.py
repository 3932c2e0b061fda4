#!/usr/bin/env python3
"""Per-operation overhead: one vCPU hot-add, one DIMM hot-add and one live migration, each with its wait, four ways
measured side by side in one run, alternating (issue 14, part 1):

  ping      ansible-playbook with one ansible.builtin.ping task: Ansible's own start-up and task cost;
  module    ansible-playbook with one kvm.hotplug task (vcpu_hotplug / memory_hotplug with wait_for_guest,
            domain_migrate), end to end; the module's own `elapsed` is read from the result (-v);
  script    a plain Python script (bench/direct_ops.py, a process of its own: interpreter, libvirt import, the same
            libvirt calls and the same wait the module does);
  virsh     a bash loop of virsh commands (the call, then virsh polling the guest until it has the resource).

Run by hand from the repository root against the lab (vcpu, dimm: make lab-up) or the fleet lab (migrate: make
fleet-up), holding the lab lock, one operation per run:

    flock /tmp/kvmhp-lab.lock .venv/bin/python bench/op_overhead_bench.py vcpu --reps 5 --json

Between measurements the guest goes back to its start (not timed): vcpu resets lab-vcpu (a TCG guest cannot give a
vCPU back reliably), dimm takes the DIMMs out of lab-mem, migrate needs nothing (each move starts where the last
ended, so directions alternate). Printed and written: min/median/max per way, the ratios to the script, and the
module's playbook minus the ping playbook.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import _common

VCPU_GUEST, DIMM_GUEST, DIMM_MIB = 'lab-vcpu', 'lab-mem', 512
MIGRATE_GUEST = 'fleet-b'
HV1, HV3 = 'qemu+tcp://127.0.1.1/system', 'qemu+tcp://127.0.1.3/system'
WAYS = ('ping', 'module', 'script', 'virsh')

PLAY = """- name: Bench
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Bench task
      %s
"""

VIRSH_VCPU = """set -e
virsh -q setvcpus {guest} 4 --live
until virsh -q guestvcpus {guest} 2>/dev/null | grep -Eq '^online *: *0-3$'; do sleep 0.05; done
"""
VIRSH_DIMM = """set -e
virsh -q attach-device {guest} {xml} --live --config >/dev/null
until [ "$(virsh -q qemu-agent-command {guest} '{{"execute":"guest-get-memory-blocks"}}' 2>/dev/null \\
          | grep -Eo '"online" *: *true' | wc -l)" -ge {blocks} ]; do sleep 0.25; done
"""
VIRSH_MIGRATE = """set -e
virsh -q -c {src} migrate --live --p2p --persistent --undefinesource {guest} {dst}
"""


def write(path, text):
    with open(path, 'w') as handle:
        handle.write(text)
    return path


def run_playbook(path, work):
    """ansible-playbook -v PATH: (wall seconds, the task's result or None)."""
    inventory = write(os.path.join(work, 'inventory.ini'),
                      'localhost ansible_connection=local ansible_python_interpreter=%s\n' % _common.PYTHON)
    started = time.monotonic()
    proc = subprocess.run([_common.tool('ansible-playbook'), '-v', '-i', inventory, path], cwd=work,
                          env=_common.ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit('ansible-playbook %s failed:\n%s' % (path, proc.stdout[-3000:]))
    # -v prints the task's result after `=>`: one line of JSON, or an indented block ending with a `}` line
    match = (re.search(r'^(?:ok|changed): \[localhost\] => (\{.*\})$', proc.stdout, re.M)
             or re.search(r'^(?:ok|changed): \[localhost\] => (\{.*?^\})$', proc.stdout, re.M | re.S))
    return seconds, json.loads(match.group(1)) if match else None


def timed(command, **kwargs):
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=300, **kwargs)
    return time.monotonic() - started


class Operation:
    """One operation: set up and put back (untimed), and each way of doing it (timed)."""
    task = None

    def __init__(self, work):
        self.work = work
        self.ping_play = write(os.path.join(work, 'ping.yml'), PLAY % 'ansible.builtin.ping:')

    def prepare(self):
        pass

    def restore(self):
        pass

    def module_task(self):
        raise NotImplementedError

    def ping(self):
        return run_playbook(self.ping_play, self.work)[0], None

    def module(self):
        play = write(os.path.join(self.work, 'module.yml'), PLAY % self.module_task())
        seconds, result = run_playbook(play, self.work)
        if not result or not result.get('changed'):
            sys.exit('the module changed nothing: %s' % result)
        return seconds, result.get('elapsed')

    def script(self):
        return timed([_common.PYTHON, os.path.join(_common.BENCH, 'direct_ops.py')] + self.script_args()), None

    def virsh(self):
        return timed(['bash', '-c', self.virsh_loop()]), None

    def check(self, way):
        pass

    def finish(self):
        self.restore()


class Vcpu(Operation):
    name = 'vcpu hot-add 2 -> 4, wait for the guest'

    def prepare(self):
        _common.labctl('reset', VCPU_GUEST)

    def module_task(self):
        return ('kvm.hotplug.vcpu_hotplug:\n        name: %s\n        count: 4\n        wait_for_guest: true\n'
                '        config: false' % VCPU_GUEST)

    def script_args(self):
        return ['vcpu', VCPU_GUEST, '4']

    def virsh_loop(self):
        return VIRSH_VCPU.format(guest=VCPU_GUEST)

    def check(self, way):
        if way == 'ping':
            return
        import libvirt
        conn = libvirt.open('qemu:///system')
        try:
            online = (conn.lookupByName(VCPU_GUEST).guestVcpus() or {}).get('online')
        finally:
            conn.close()
        if online != '0-3':
            sys.exit('%s left %s with vCPUs %s online, not 0-3' % (way, VCPU_GUEST, online))

    def finish(self):
        _common.labctl('reset', VCPU_GUEST)


class Dimm(Operation):
    name = 'DIMM hot-add of %d MiB, wait for the guest to online it' % DIMM_MIB

    def __init__(self, work):
        super().__init__(work)
        import libvirt
        import memory_hotplug_bench as mem
        self.mem = mem
        self.libvirt = libvirt
        _common.labctl('reset', DIMM_GUEST)   # from its canonical boot memory
        self.dom = libvirt.open('qemu:///system').lookupByName(DIMM_GUEST)
        if mem.dimms(self.dom) or mem.dimms(self.dom, libvirt.VIR_DOMAIN_XML_INACTIVE):
            sys.exit('%s already has DIMMs; start from its boot memory (labctl reset %s)' % (DIMM_GUEST, DIMM_GUEST))
        self.boot_blocks = mem.online_blocks(self.dom)
        self.base_mib = self._base_mib()
        self.expected = self.boot_blocks + DIMM_MIB // 128
        self.xml = write(os.path.join(work, 'dimm.xml'), mem.DIMM_XML % DIMM_MIB)

    def _base_mib(self):
        from lxml import etree
        return int(etree.fromstring(self.dom.XMLDesc(0)).findtext('memory')) // 1024

    def restore(self):
        self.mem.take_back(self.dom, self.boot_blocks)

    def module_task(self):
        return ('kvm.hotplug.memory_hotplug:\n        name: %s\n        size: %dMiB\n        wait_for_guest: true\n'
                '        timeout: 120' % (DIMM_GUEST, self.base_mib + DIMM_MIB))

    def script_args(self):
        return ['dimm', DIMM_GUEST, str(DIMM_MIB), str(self.expected)]

    def virsh_loop(self):
        return VIRSH_DIMM.format(guest=DIMM_GUEST, xml=self.xml, blocks=self.expected)

    def check(self, way):
        if way != 'ping' and self.mem.online_blocks(self.dom) != self.expected:
            sys.exit('%s returned before %s had the DIMM online' % (way, DIMM_GUEST))


class Migrate(Operation):
    name = 'live migration of %s between hv1 and hv3 (p2p, persistent, undefine source)' % MIGRATE_GUEST

    def __init__(self, work):
        super().__init__(work)
        import domain_migrate_bench
        self.downtime = domain_migrate_bench.completed_downtime_ms
        self.src, self.dst = HV1, HV3
        self.downtimes = dict((w, []) for w in WAYS if w != 'ping')
        _common.labctl('fleet', 'home')
        subprocess.run(['virsh', '-q', '-c', HV1, 'domstate', MIGRATE_GUEST], check=True, stdout=subprocess.DEVNULL)

    def module_task(self):
        return ('kvm.hotplug.domain_migrate:\n        name: %s\n        uri: %s\n        dest_uri: %s'
                % (MIGRATE_GUEST, self.src, self.dst))

    def script_args(self):
        return ['migrate', MIGRATE_GUEST, self.src, self.dst]

    def virsh_loop(self):
        return VIRSH_MIGRATE.format(guest=MIGRATE_GUEST, src=self.src, dst=self.dst)

    def check(self, way):
        if way == 'ping':
            return
        subprocess.run(['virsh', '-q', '-c', self.dst, 'domstate', MIGRATE_GUEST], check=True,
                       stdout=subprocess.DEVNULL)
        self.downtimes[way].append(self.downtime(self.dst, MIGRATE_GUEST))
        self.src, self.dst = self.dst, self.src

    def finish(self):
        _common.labctl('fleet', 'home')


OPERATIONS = dict(vcpu=Vcpu, dimm=Dimm, migrate=Migrate)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('operation', choices=sorted(OPERATIONS))
    parser.add_argument('--reps', type=int, default=5)
    _common.add_json_option(parser, 'op_overhead_OPERATION')
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix='kvmhp-op-bench-')
    op = OPERATIONS[args.operation](work)
    times = dict((w, []) for w in WAYS)
    elapsed = []
    try:
        for rep in range(args.reps):
            order = WAYS[rep % len(WAYS):] + WAYS[:rep % len(WAYS)]   # rotate, so drift hits each way alike
            for way in order:
                if way != 'ping':   # a ping changes nothing: no guest to set up or put back
                    op.prepare()
                seconds, module_elapsed = getattr(op, way)()
                op.check(way)
                if way != 'ping':
                    op.restore()
                times[way].append(seconds)
                if module_elapsed is not None:
                    elapsed.append(module_elapsed)
                print('rep %d %-7s %.2f s%s' % (rep + 1, way, seconds, '' if module_elapsed is None
                                                 else ' (module elapsed %.2f s)' % module_elapsed), flush=True)
    finally:
        op.finish()
    stats = dict((w, _common.summary(v)) for w, v in times.items())
    stats['module_elapsed'] = _common.summary(elapsed)
    stats['module_minus_ping'] = _common.summary([m - p for m, p in zip(times['module'], times['ping'])])
    ratios = dict(('%s/script' % w, _common.ratio(stats[w], stats['script']))
                  for w in ('module', 'module_elapsed', 'module_minus_ping', 'virsh', 'ping'))
    print('\n%s, %d repetitions (min / median / max, s):' % (op.name, args.reps))
    for way in WAYS + ('module_elapsed', 'module_minus_ping'):
        s = stats[way]
        print('  %-18s %6.2f %6.2f %6.2f' % (way, s['min'], s['median'], s['max']))
    for key, r in ratios.items():
        print('  %-24s %.2f' % (key, r['median']))
    data = dict(operation=args.operation, description=op.name, reps=args.reps, stats=stats, ratios=ratios)
    if isinstance(op, Migrate):
        data['downtime_ms'] = dict((w, _common.summary(v)) for w, v in op.downtimes.items())
    if args.json:
        path = args.json.replace('OPERATION', args.operation)
        _common.write_result('op_overhead_%s' % args.operation, data, path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
