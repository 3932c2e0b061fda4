"""The Event-Driven Ansible end-to-end test: the event source kvm.hotplug.edac_errors and the shipped rulebook
kvm.hotplug.serviceability, run by a real ansible-rulebook against hv1 of the fleet lab.

    suite.py eda        (make eda; part of make test)

ansible-rulebook (requirements-eda.txt) lives in its own venv, .tmp/eda-venv, which this file creates and keeps
(remade when requirements-eda.txt changes); it needs Java 17.  The playbook it runs is the main venv's
ansible-playbook (ansible-rulebook finds ansible-galaxy and ansible-playbook on PATH) with the harness's copy
of the collection.

Each case, one ansible-rulebook run with the shipped rulebook and a variables file (serviceability_action,
serviceability_host hv1, kvm_hotplug_sysfs_root hv1's simulated sysfs, a 1 s poll interval):

1. hv1's EDAC counters are zeroed, its CPUs online, fleet-a's vCPU 0 pinned to CPUs 0-1;
2. ansible-rulebook starts; once the source has taken its first reading (its state file exists), CPU 1's
   corrected-error counter is raised by 60 (threshold 50) through the simulated sysfs' control file;
3. the harness waits for the playbook's recap, then stops ansible-rulebook (SIGTERM; it is killed after a grace
   time, and every case has a deadline), and asserts on what the systems say:
   - the source emitted exactly one event, for key cpu1 of host hv1, parsed from ansible-rulebook's own print;
   - report: the playbook ran in report mode (its report names CPU 1 and action report), and hv1's domain
     definitions (live and persistent XML), its CPU and memory-block states and the simulated sysfs' write log
     are exactly as before;
   - isolate: CPU 1 is offline in hv1's sysfs, fleet-a's vCPU 0 is pinned to CPU 0 only (libvirt), the record
     exists; then the collection's playbook with serviceability_restore brings CPU 1 online and the pin back.

Outcomes are read from libvirt (qemu+tcp to hv1) and the simulated sysfs, never from the playbook's results.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import yaml

HARNESS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HARNESS))
REQUIREMENTS = os.path.join(HARNESS, 'requirements-eda.txt')
VENV = os.path.join(REPO, '.tmp', 'eda-venv')
FLEET_INVENTORY = os.path.join(REPO, 'tests', 'lab', 'fleet', 'inventory.yml')
LABCTL = os.path.join(REPO, 'tests', 'lab', 'labctl')

HOST = 'hv1'
HV1_URI = 'qemu+tcp://127.0.1.1/system'
HV1_SYSFS = '/var/lib/kvm-hotplug-lab/fleet/hv1/sys'
CONTROL = os.path.join(HV1_SYSFS, 'simsysfs', 'control')
FAILING_CPU = 1
PINNED_GUEST = 'fleet-a'
PIN_BEFORE = '0-1'      # the real machine has CPUs 0-1 only (tests/lab/README.md); hv1's tree has 0-7
CASE_DEADLINE = 240     # seconds for one ansible-rulebook run, start to stop
FIRST_READING = 90      # seconds until the source's first reading (the JVM's start is most of it)
GRACE = 30              # seconds between SIGTERM and SIGKILL


class CaseFailed(Exception):
    pass


def ensure_venv(log):
    """.tmp/eda-venv with requirements-eda.txt, made once per content of that file; returns its bin directory."""
    digest = hashlib.md5(open(REQUIREMENTS, 'rb').read()).hexdigest()[:12]
    stamp = os.path.join(VENV, '.installed-%s' % digest)
    bindir = os.path.join(VENV, 'bin')
    if os.path.exists(stamp):
        return bindir
    log('eda: creating %s from %s' % (VENV, os.path.relpath(REQUIREMENTS, REPO)))
    shutil.rmtree(VENV, ignore_errors=True)
    # the base interpreter, not this venv's: the new venv must not see .venv's packages
    base = getattr(sys, '_base_executable', None) or sys.executable
    subprocess.run([base, '-m', 'venv', VENV], check=True)
    subprocess.run([os.path.join(bindir, 'python'), '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check',
                    '-r', REQUIREMENTS], check=True)
    open(stamp, 'w').close()
    return bindir


# ---------------------------------------------------------------------------------------------------------------
# the lab, read and set without the collection

def control(command):
    """One command to hv1's simulated sysfs (tests/lab/README.md, "Control interface")."""
    with open(CONTROL, 'w') as handle:
        handle.write(command + '\n')


def sysfs_state():
    """hv1's simulated host as its control file reports it: CPUs, blocks, and how many writes it has answered."""
    with open(CONTROL) as handle:
        state = json.load(handle)
    return dict(cpus=state['cpus'], blocks=state['blocks'], isolated=state['isolated'], writes=len(state['writes']))


def cpu_online(cpu):
    with open(os.path.join(HV1_SYSFS, 'devices', 'system', 'cpu', 'cpu%d' % cpu, 'online')) as handle:
        return handle.read().strip() == '1'


def libvirt_state():
    """Every domain of hv1: live and persistent XML, and its live vCPU pins."""
    import libvirt  # pylint: disable=import-outside-toplevel
    conn = libvirt.open(HV1_URI)
    try:
        out = {}
        for dom in conn.listAllDomains():
            pins = None
            if dom.isActive():
                pins = [sorted(i for i, on in enumerate(cpus) if on) for cpus in dom.vcpuPinInfo(0)]
            out[dom.name()] = dict(
                active=bool(dom.isActive()), live=dom.XMLDesc(0),
                config=dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if dom.isPersistent() else None, pins=pins)
        return out
    finally:
        conn.close()


def virsh(*args):
    subprocess.run(['virsh', '-c', HV1_URI] + list(args), check=True, stdout=subprocess.DEVNULL)


def zero_counters():
    """Every EDAC counter of hv1 to 0 (controllers, their DIMMs, the CPUs)."""
    state = json.load(open(CONTROL))
    for mc, parts in state['edac'].items():
        for part, counters in parts.items():
            prefix = mc if part == 'counters' else '%s/%s' % (mc, part)
            for counter in counters:
                control('edac %s/%s 0' % (prefix, counter))
    for cpu, counters in state['edac_cpus'].items():
        for counter in counters:
            control('edac %s/%s 0' % (cpu, counter))
    return state


def prepare_hv1():
    """fleet-a running on hv1, zeroed EDAC counters, every CPU online, fleet-a's vCPU 0 on CPUs 0-1 (live)."""
    if not libvirt_state().get(PINNED_GUEST, {}).get('active'):
        # a test may have migrated it: home, fresh boot
        subprocess.run([sys.executable, LABCTL, 'fleet', 'reset', PINNED_GUEST], check=True)
    state = zero_counters()
    # an earlier run may have left CPUs out (a write to sysfs, as the kernel takes it)
    for cpu in state['cpus']:
        if not cpu['online']:
            with open(os.path.join(HV1_SYSFS, 'devices', 'system', 'cpu', 'cpu%d' % cpu['id'], 'online'), 'w') as handle:
                handle.write('1')
    virsh('vcpupin', PINNED_GUEST, '0', PIN_BEFORE, '--live')


# ---------------------------------------------------------------------------------------------------------------
# ansible-rulebook

class Rulebook(object):
    """One ansible-rulebook process, its output collected by a thread."""

    def __init__(self, command, env, cwd, log):
        self.log = log
        self.lines = []
        log('$ ' + ' '.join(command))
        self.proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors='replace')
            self.lines.append(line)
            sys.stdout.write('[rulebook] ' + line)
            sys.stdout.flush()

    @property
    def output(self):
        return ''.join(self.lines)

    def wait_for(self, condition, deadline, what):
        while time.time() < deadline:
            if condition():
                return
            if self.proc.poll() is not None:
                raise CaseFailed('ansible-rulebook ended (rc %s) before %s' % (self.proc.returncode, what))
            time.sleep(0.5)
        raise CaseFailed('no %s within the deadline' % what)

    def stop(self):
        """SIGTERM to its process group, SIGKILL after the grace time; returns how it ended."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(GRACE)
                how = 'stopped on SIGTERM'
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                how = 'killed after %d s' % GRACE
        else:
            how = 'ended by itself (rc %s)' % self.proc.returncode
        self.reader.join(10)
        return how


def printed_events(output):
    """The events ansible-rulebook printed (--print-events: a pprint of each, after 'Event:')."""
    events = []
    for block in re.findall(r'^Event:\n(.*?)(?=^\*\*)', output, re.M | re.S):
        try:
            events.append(ast.literal_eval(block.strip()))
        except (ValueError, SyntaxError):
            events.append(dict(unparsed=block))
    return [e for e in events if isinstance(e, dict) and 'kvm_hotplug' in e]


def recap_of(output, host):
    match = re.search(r'^PLAY RECAP \*+\s*\n(?:.*\n)*?%s\s+:\s+(ok=.*)$' % re.escape(host), output, re.M)
    return dict(re.findall(r'(\w+)=(\d+)', match.group(1))) if match else None


# ---------------------------------------------------------------------------------------------------------------
# the cases

def write_inputs(work, action):
    """The rulebook's variables file and an inventory directory (the fleet's, with the role's variables)."""
    inventory = os.path.join(work, 'inventory')
    os.makedirs(os.path.join(inventory, 'group_vars'), exist_ok=True)
    shutil.copy(FLEET_INVENTORY, os.path.join(inventory, 'fleet.yml'))
    with open(os.path.join(inventory, 'group_vars', 'kvm_hosts.yml'), 'w') as handle:
        yaml.safe_dump(dict(serviceability_report_dir=os.path.join(work, 'report'),
                            serviceability_state_file=os.path.join(work, 'role', '{{ inventory_hostname }}-edac.json'),
                            serviceability_record_file=os.path.join(work, 'role', '{{ inventory_hostname }}-record.json')),
                       handle)
    variables = os.path.join(work, 'rulebook-vars.yml')
    with open(variables, 'w') as handle:
        yaml.safe_dump(dict(serviceability_action=action, serviceability_host=HOST, serviceability_poll_interval=1,
                            serviceability_ce_threshold=50, serviceability_ce_window_hours=24,
                            serviceability_state_file=os.path.join(work, 'source-state.json'),
                            kvm_hotplug_sysfs_root=HV1_SYSFS), handle)
    return inventory, variables


def run_rulebook(work, action, tools, log):
    """Start ansible-rulebook, raise CPU 1's counter after the source's first reading, stop after the playbook."""
    inventory, variables = write_inputs(work, action)
    command = [os.path.join(tools['eda_bin'], 'ansible-rulebook'), '-r', 'kvm.hotplug.serviceability',
               '-i', inventory, '--vars', variables, '--print-events']
    started = time.time()
    rulebook = Rulebook(command, tools['env'], work, log)
    try:
        rulebook.wait_for(lambda: os.path.exists(os.path.join(work, 'source-state.json')),
                          started + FIRST_READING, "first reading of the event source")
        control('edac cpu%d/ce_count +60' % FAILING_CPU)
        log('eda: raised cpu%d/ce_count by 60 on %s after %.1f s' % (FAILING_CPU, HOST, time.time() - started))
        rulebook.wait_for(lambda: recap_of(rulebook.output, HOST) is not None, started + CASE_DEADLINE,
                          'playbook recap for %s' % HOST)
        # a second event would come within a poll interval or two
        time.sleep(3)
    finally:
        how = rulebook.stop()
        log('eda: ansible-rulebook %s after %.1f s' % (how, time.time() - started))
        with open(os.path.join(work, 'rulebook.log'), 'w') as handle:
            handle.write(rulebook.output)
    return rulebook.output


def check_event(output, problems):
    events = printed_events(output)
    if len(events) != 1:
        problems.append('expected one edac_errors event, ansible-rulebook printed %d: %r' % (len(events), events))
        return
    event = events[0]
    got = event['kvm_hotplug']
    expect = dict(event='edac_errors', host=HOST, key='cpu%d' % FAILING_CPU, kind='cpu', hosts=HOST)
    seen = dict(event=got.get('event'), host=got.get('host'), key=got.get('component', {}).get('key'),
                kind=got.get('component', {}).get('kind'), hosts=event.get('meta', {}).get('hosts'))
    if seen != expect:
        problems.append('event %r, expected %r' % (seen, expect))
    if got.get('corrected_in_window', 0) < 60 or got.get('threshold') != 50:
        problems.append('event counted %r corrected errors at threshold %r, expected 60 at 50'
                        % (got.get('corrected_in_window'), got.get('threshold')))


def report_of(work):
    path = os.path.join(work, 'report', '%s.json' % HOST)
    return json.load(open(path)) if os.path.exists(path) else None


def case_report(work, tools, log):
    prepare_hv1()
    before = dict(libvirt=libvirt_state(), sysfs=sysfs_state())
    output = run_rulebook(work, 'report', tools, log)
    problems = []
    check_event(output, problems)
    recap = recap_of(output, HOST)
    if not recap or recap.get('failed') != '0' or recap.get('unreachable') != '0':
        problems.append('the playbook did not run cleanly on %s: %r' % (HOST, recap))
    report = report_of(work)
    if not report or report.get('action') != 'report' or report.get('part', {}).get('cpus') != [FAILING_CPU]:
        problems.append('the report is not a report of CPU %d: %r' % (FAILING_CPU, report and {
            k: report.get(k) for k in ('action', 'part')}))
    after = dict(libvirt=libvirt_state(), sysfs=sysfs_state())
    # the simulated sysfs answered no write (the counter raise is a control command, not a write)
    for what in ('libvirt', 'sysfs'):
        if before[what] != after[what]:
            changed = sorted(k for k in set(before[what]) | set(after[what])
                             if before[what].get(k) != after[what].get(k))
            problems.append('report mode changed %s: %s' % (what, ', '.join(changed)))
    if os.path.exists(os.path.join(work, 'role', '%s-record.json' % HOST)):
        problems.append('report mode wrote an isolation record')
    return problems


def case_isolate(work, tools, log):
    prepare_hv1()
    output = run_rulebook(work, 'isolate', tools, log)
    problems = []
    check_event(output, problems)
    recap = recap_of(output, HOST)
    if not recap or recap.get('failed') != '0' or recap.get('changed', '0') == '0':
        problems.append('the playbook did not isolate cleanly on %s: %r' % (HOST, recap))
    pins = libvirt_state()[PINNED_GUEST]['pins']
    if cpu_online(FAILING_CPU):
        problems.append('CPU %d of %s is still online in its sysfs' % (FAILING_CPU, HOST))
    if pins[0] != [0]:
        problems.append('%s vCPU 0 is pinned to %r, expected [0]' % (PINNED_GUEST, pins[0]))
    if not os.path.exists(os.path.join(work, 'role', '%s-record.json' % HOST)):
        problems.append('isolate mode wrote no record')
    report = report_of(work)
    if not report or report.get('action') != 'isolate':
        problems.append('the report is not an isolation: %r' % (report and report.get('action')))
    # the replacement: the collection's playbook restores what the rulebook's run isolated
    inventory = os.path.join(work, 'inventory')
    code = subprocess.call([tools['ansible_playbook'], '-i', inventory, 'kvm.hotplug.serviceability',
                            '-e', 'serviceability_hosts=%s' % HOST, '-e', 'serviceability_restore=true'],
                           env=tools['env'], cwd=work)
    pins = libvirt_state()[PINNED_GUEST]['pins']
    if code != 0 or not cpu_online(FAILING_CPU) or pins[0] != [0, 1]:
        problems.append('the restore (rc %d) left CPU %d %s and %s vCPU 0 on %r, expected online and [0, 1]'
                        % (code, FAILING_CPU, 'online' if cpu_online(FAILING_CPU) else 'offline', PINNED_GUEST,
                           pins[0]))
    return problems


CASES = (('report', case_report), ('isolate', case_isolate))


def run(collection_root, scratch, log):
    """Every case; returns [(name, problems, seconds)]."""
    if not shutil.which('java'):
        return [('java', ['no java on PATH: ansible-rulebook needs Java 17 (openjdk-17-jre-headless, '
                          'tests/lab/install-packages)'], 0.0)]
    eda_bin = ensure_venv(log)
    # idempotent: starts only what is down (make eda runs make fleet-up first)
    subprocess.run([sys.executable, LABCTL, 'fleet', 'up'], check=True)
    main_bin = os.path.dirname(sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collection_root, ANSIBLE_HOST_KEY_CHECKING='true',
               ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', NO_COLOR='1', PYTHONUNBUFFERED='1',
               ANSIBLE_RETRY_FILES_ENABLED='0')
    # ansible-rulebook first, then the main venv's ansible-galaxy and ansible-playbook, which it calls
    env['PATH'] = os.pathsep.join([eda_bin, main_bin, env.get('PATH', '/usr/bin:/bin')])
    env.pop('VIRTUAL_ENV', None)
    tools = dict(eda_bin=eda_bin, env=env, ansible_playbook=os.path.join(main_bin, 'ansible-playbook'))
    results = []
    for name, case in CASES:
        work = os.path.join(scratch, name)
        os.makedirs(work, exist_ok=True)
        started = time.time()
        try:
            problems = case(work, tools, log)
        except Exception as exc:  # pylint: disable=broad-except  # libvirt's errors too: the case failed, go on
            problems = ['%s: %s' % (type(exc).__name__, exc)]
        try:
            zero_counters()     # the raised counter is no later test's business
        except (OSError, ValueError) as exc:
            problems.append('could not zero hv1\'s EDAC counters after the case: %s' % exc)
        results.append((name, problems, time.time() - started))
    return results
