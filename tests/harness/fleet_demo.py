"""The fleet part of `make demo`: each scenario's playbook across the fleet lab, in check mode, then for real.

    suite.py demo fleet        (make demo runs it after the single-host demo, with the fleet up)

Scenarios, in this order, each between two put-backs (tests/harness/demo/put_back.yml: every guest canonical at
home, the host parts online, the raised EDAC counters zeroed), so that the fleet is left as `make fleet-up` leaves it:

1. rebalance (playbooks/rebalance.yml on hv1 and hv2): fleet-a and fleet-c grow to 2 vCPUs, fleet-b gives a DIMM back;
2. capacity (playbooks/capacity.yml on hv2, docs/capacity.md): hv2's CPU 3 and blocks 32-33 come online, fleet-c
   grows into them;
3. serviceability (playbooks/serviceability.yml on hv1): CPU 1 and DIMM mc1/dimm0 cross the EDAC threshold; isolate,
   then restore;
4. hypervisor_migration (playbooks/hypervisor_migration.yml): hv1's CPU 1 and blocks 34-35 are replaced: the guests
   pinned to CPU 1 move to hv2/hv3, fleet-c is re-pinned; then restore, the guests brought back.

The set-up of each is the molecule scenario's (extensions/molecule/NAME), its variables are in
tests/harness/demo/NAME.vars.yml.  Before and after each run it prints the guests (host, vCPUs, memory, DIMMs, the pin
of vCPU 0, from libvirt's live definitions) and the hosts (CPUs and memory online, from their sysfs), and after each
run the reports and charts the role wrote.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, 'demo')
DEMO_DIR = '/var/tmp/kvm-hotplug-demo'

# name, playbook, the extra vars of the real run(s) besides NAME.vars.yml: (label, extra -e arguments)
SCENARIOS = [
    dict(name='rebalance', playbook='rebalance.yml', report_dir='rebalance',
         runs=[('rebalance', [])]),
    dict(name='capacity', playbook='capacity.yml', report_dir='capacity',
         runs=[('bring hv2\'s new parts online and rebalance', [])]),
    dict(name='serviceability', playbook='serviceability.yml', report_dir='serviceability',
         runs=[('isolate', ['-e', 'serviceability_action=isolate']),
               ('restore', ['-e', 'serviceability_restore=true'])]),
    dict(name='hypervisor_migration', playbook='hypervisor_migration.yml', report_dir='hypervisor_migration',
         runs=[('evacuate', []),
               ('restore', ['-e', 'hypervisor_migration_phase=restore', '-e', 'hypervisor_migration_return_vms=true'])]),
]


def fleet_hosts(repo):
    """{host: (libvirt URI, sysfs root)} of the fleet inventory."""
    with open(os.path.join(repo, 'tests', 'lab', 'fleet', 'inventory.yml')) as handle:
        inventory = yaml.safe_load(handle)
    hosts = inventory['all']['children']['kvm_hosts']['hosts']
    return {name: (h['kvm_hotplug_migration_uri'], h['kvm_hotplug_sysfs_root']) for name, h in sorted(hosts.items())}


def _read(path):
    with open(path) as handle:
        return handle.read().strip()


def host_view(sysfs_root):
    """CPUs and memory online, from the host's sysfs (the lab's simulated one)."""
    system = os.path.join(sysfs_root, 'devices', 'system')
    block_mib = int(_read(os.path.join(system, 'memory', 'block_size_bytes')), 16) // (1024 * 1024)
    states = {}
    for path in glob.glob(os.path.join(system, 'memory', 'memory[0-9]*')):
        states[int(os.path.basename(path)[6:])] = _read(os.path.join(path, 'state'))
    offline = sorted(b for b, s in states.items() if s != 'online')
    return dict(cpus=_read(os.path.join(system, 'cpu', 'online')),
                memory='%d MiB' % (block_mib * (len(states) - len(offline))),
                offline_blocks=compact(offline) or '-')


def compact(ids):
    """[1, 2, 3, 7] -> '1-3,7'."""
    out, start, prev = [], None, None
    for i in sorted(ids) + [None]:
        if start is not None and (i is None or i != prev + 1):
            out.append('%d' % start if start == prev else '%d-%d' % (start, prev))
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return ','.join(out)


def guest_view(xml):
    """vCPUs (current/maximum), memory, DIMMs and the pin of vCPU 0 from a live domain definition."""
    root = ET.fromstring(xml)
    vcpu = root.find('vcpu')
    mib = int(root.find('memory').text) // 1024  # libvirt writes KiB
    pin = root.find("cputune/vcpupin[@vcpu='0']")
    return dict(vcpus='%s/%s' % (vcpu.get('current', vcpu.text), vcpu.text), memory='%d MiB' % mib,
                dimms=str(len(root.findall("devices/memory[@model='dimm']"))),
                pin=pin.get('cpuset') if pin is not None else vcpu.get('cpuset', 'any'))


def snapshot(hosts):
    """({guest: view with 'host'}, {host: view}) of the whole fleet, read directly (libvirt and sysfs)."""
    import libvirt
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    guests, views = {}, {}
    for name, (uri, sysfs_root) in hosts.items():
        views[name] = host_view(sysfs_root)
        conn = libvirt.openReadOnly(uri)
        try:
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                view = guest_view(dom.XMLDesc(0))
                view['host'] = name if dom.name() not in guests else guests[dom.name()]['host'] + '+' + name
                guests[dom.name()] = view
        finally:
            conn.close()
    return guests, views


def table(title, columns, rows):
    widths = [max(len(str(r[i])) for r in [columns] + rows) for i in range(len(columns))]
    lines = [title, '  ' + '  '.join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ['  ' + '  '.join(str(v).ljust(w) for v, w in zip(row, widths)) for row in rows]
    return '\n'.join(lines)


def _pair(before, after, key):
    b = before.get(key, '-') if before else '-'
    a = after.get(key, '-') if after else '-'
    return b if a == b else '%s -> %s' % (b, a)


def show(before, after, heading):
    """The guest and host tables, each field as 'before -> after' where it changed."""
    (g0, h0), (g1, h1) = before, after
    guest_keys = ['host', 'vcpus', 'memory', 'dimms', 'pin']
    rows = [[name] + [_pair(g0.get(name), g1.get(name), k) for k in guest_keys] for name in sorted(set(g0) | set(g1))]
    host_keys = ['cpus', 'memory', 'offline_blocks']
    hrows = [[name] + [_pair(h0.get(name), h1.get(name), k) for k in host_keys] for name in sorted(set(h0) | set(h1))]
    print('', flush=True)
    print(table('%s: guests (libvirt, live)' % heading, ['guest', 'host', 'vCPUs', 'memory', 'DIMMs', 'vCPU 0 pin'], rows))
    print(table('%s: hosts (sysfs)' % heading, ['host', 'CPUs online', 'memory online', 'blocks offline'], hrows))
    print('', flush=True)
    return before != after


class Demo:
    def __init__(self, repo, env, log):
        self.repo, self.env, self.log = repo, env, log
        self.hosts = fleet_hosts(repo)
        self.times = []

    def playbook(self, path, extra=(), check=False):
        command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
                   '-i', os.path.join(self.repo, 'tests', 'lab', 'fleet', 'inventory.yml')] + list(extra)
        command += ['--check'] if check else []
        command.append(path)
        self.log('$ ' + ' '.join(command))
        started = time.time()
        code = subprocess.call(command, env=self.env, cwd=self.repo)
        return code, time.time() - started

    def step(self, label, path, extra=(), check=False):
        code, seconds = self.playbook(path, extra, check)
        self.times.append((label, seconds, code))
        if code != 0:
            raise RuntimeError('%s failed (ansible-playbook exit %d)' % (label, code))

    def reports(self, report_dir, since):
        files = sorted(p for p in glob.glob(os.path.join(report_dir, '**', '*'), recursive=True)
                       if os.path.isfile(p) and os.path.getmtime(p) >= since)
        self.log('reports and charts written: %s' % ('none' if not files else ''))
        for path in files:
            print('    ' + path, flush=True)

    def scenario(self, sc):
        name = sc['name']
        self.log('=' * 20 + ' scenario %s ' % name + '=' * 20)
        vars_file = ['-e', '@' + os.path.join(DEMO, '%s.vars.yml' % name)]
        prepare = os.path.join(DEMO, '%s_prepare.yml' % name)
        if os.path.isfile(prepare):
            self.step('%s: set-up' % name, prepare, vars_file)
        playbook = os.path.join(self.repo, 'playbooks', sc['playbook'])
        report_dir = os.path.join(DEMO_DIR, sc['report_dir'])
        for label, extra in sc['runs']:
            before = snapshot(self.hosts)
            show(before, before, '%s %s, before' % (name, label))
            self.step('%s: %s, check mode' % (name, label), playbook, vars_file + extra, check=True)
            checked = snapshot(self.hosts)
            changed = show(before, checked, '%s %s, after check mode' % (name, label))
            self.log('check mode changed %s' % ('SOMETHING (it should not)' if changed else 'nothing, as it should'))
            if changed:
                raise RuntimeError('%s: check mode changed the fleet' % name)
            started = time.time()
            self.step('%s: %s' % (name, label), playbook, vars_file + extra)
            show(before, snapshot(self.hosts), '%s %s, before -> after' % (name, label))
            self.reports(report_dir, started - 1)

    def put_back(self, label, baseline=None):
        """put_back.yml, resetting the guests whose view differs from the baseline (the demo's start)."""
        changed = []
        if baseline is not None:
            now = snapshot(self.hosts)[0]
            changed = sorted(g for g in baseline[0] if baseline[0][g] != now.get(g))
        self.step('put back (%s)' % label, os.path.join(DEMO, 'put_back.yml'),
                  ['-e', json.dumps({'demo_reset': changed})])

    def run(self, names=None):
        """Every scenario (or those named); one that fails is reported, the fleet put back, and the next one runs."""
        subprocess.call(['rm', '-rf', DEMO_DIR])
        failures = []
        try:
            self.put_back('start')
        except RuntimeError as exc:
            self.log('FAILED: %s' % exc)
            return 1
        start = snapshot(self.hosts)
        for sc in SCENARIOS:
            if names and sc['name'] not in names:
                continue
            try:
                self.scenario(sc)
            except RuntimeError as exc:
                failures.append(str(exc))
                self.log('FAILED: %s; putting the fleet back' % exc)
            try:
                self.put_back('after %s' % sc['name'], start)
            except RuntimeError as exc:
                failures.append(str(exc))
                self.log('FAILED: %s; the fleet may not be as the demo found it' % exc)
                break
        end = snapshot(self.hosts)
        show(start, end, 'the whole demo, start -> end')
        if start != end:
            failures.append('the fleet is not as the demo found it')
        self.log('the fleet is %s' % ('as the demo found it' if start == end else 'NOT as the demo found it'))
        self.log('fleet demo steps:')
        for label, seconds, code in self.times:
            self.log('  %-62s %s  %5.0f s' % (label, 'ok' if code == 0 else 'FAILED', seconds))
        for line in failures:
            self.log('failed: %s' % line)
        self.log('fleet demo: %s in %.0f s; reports under %s' % ('FAILED' if failures else 'passed',
                                                                 sum(t for _l, t, _c in self.times), DEMO_DIR))
        return 1 if failures else 0
