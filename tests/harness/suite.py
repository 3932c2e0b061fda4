#!/usr/bin/env python3
"""Run the collection's test suites the way CI does, and print how many of each ran.

    suite.py sanity | units | gates | integration [TARGET...] | molecule [SCENARIO...] | eda | awx | all
             | demo [single|fleet|SCENARIO...] | docs | ee-context

`gates` are the ecosystem's own checks (ansible-lint, galaxy-importer, antsibull-docs, ansible-doc,
antsibull-changelog, ansible-builder); `awx` runs each shipped playbook through ansible-runner as an AWX
job template does; `eda` runs the shipped rulebook with a real ansible-rulebook against the fleet lab
(tests/harness/eda.py); `docs` builds the antsibull-docs site; `ee-context` writes the execution environment's
build context.

ansible-test needs the collection under ansible_collections/kvm/hotplug, so
each run copies the working tree (files git knows or would add) to
$TMPDIR/kvm.hotplug-tests-XXXX/ansible_collections/kvm/hotplug first.  Nothing here needs
docker or network access beyond the package index: ansible-test's pip
bootstrap download is replaced by a local stand-in (see ensure_pip_standin).
"""

from __future__ import annotations

import argparse
import atexit
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TMP = os.path.join(REPO, '.tmp')
# Outside the repository (inside it, ansible-test would ask the outer git checkout which files exist,
# and .tmp is ignored there, so it would find none), and one tree per run, so that two runs at once
# do not delete each other's tree.  Removed at exit unless KVMHP_KEEP_TREE is set.
COLLECTION_ROOT = tempfile.mkdtemp(prefix='kvm.hotplug-tests-')
COLLECTION = os.path.join(COLLECTION_ROOT, 'ansible_collections', 'kvm', 'hotplug')
PYTHON_VERSION = '%d.%d' % sys.version_info[:2]
# Tooling that is not part of the collection (galaxy.yml build_ignore) stays out of the test tree.
NOT_SHIPPED = ('tests/lab/', 'tests/harness/', 'tests/chaos/', 'bench/', '.ci/', 'Makefile', 'execution-environment/context/')
# ...except the lab's simulated host sysfs, which the unit tests mount (tests/unit/plugins/conftest.py), and the lab's
# choice of QEMU, which they check (tests/unit/plugins/test_lab_qemu.py).
TEST_TOOLS = ('tests/lab/fleet/simsysfs.py', 'tests/lab/lab_qemu.py')

# The lab lives in the repository, not in the copied tree; integration targets reach it through these vars.
LAB_VARS = {
    'kvmhp_python': sys.executable,
    'kvmhp_labctl': os.path.join(REPO, 'tests', 'lab', 'labctl'),
    'kvmhp_lab_state_dir': '/var/lib/kvm-hotplug-lab',
    'kvmhp_repo': REPO,
}


def log(message):
    print('[suite] %s' % message, flush=True)


def tracked_files():
    out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=REPO, check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    return [f for f in out.split('\0')
            if f and (f in TEST_TOOLS or not f.startswith(NOT_SHIPPED)) and os.path.isfile(os.path.join(REPO, f))]


def prepare_tree():
    """Copy the collection into COLLECTION_ROOT/ansible_collections/kvm/hotplug (fresh each run)."""
    if os.path.isdir(COLLECTION):
        shutil.rmtree(COLLECTION)
    for rel in tracked_files():
        dest = os.path.join(COLLECTION, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(os.path.join(REPO, rel), dest)
    config = os.path.join(COLLECTION, 'tests', 'integration', 'integration_config.yml')
    os.makedirs(os.path.dirname(config), exist_ok=True)
    with open(config, 'w') as handle:
        for key, value in LAB_VARS.items():
            handle.write('%s: %s\n' % (key, value))
    return COLLECTION


def ensure_pip_standin():
    """ansible-test bootstraps pip with a script downloaded from a host we cannot reach.

    It first looks for a cached copy; this stand-in installs pip with ensurepip
    and then runs pip with the same arguments, minus get-pip's own flags.
    """
    import ansible_test
    source = os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')
    match = re.search(r"pip='([0-9.]+)'", open(source).read())
    if not match:
        return
    cache = os.path.expanduser('~/.ansible/test/cache/get_pip_%s.py' % match.group(1).replace('.', '_'))
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache, 'w') as handle:
        handle.write(
            'import subprocess, sys\n'
            'args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]\n'
            'subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=False,\n'
            '               stdout=subprocess.DEVNULL)\n'
            'sys.exit(subprocess.run([sys.executable, "-m", "pip", "install"] + args).returncode)\n')


def venv_tool(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def run_tool(command, cwd, env=None, echo=True):
    """Run a tool of the venv with the copied collection on ANSIBLE_COLLECTIONS_PATH; stream and return its output."""
    full_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTION_ROOT, PYTHONUNBUFFERED='1')
    full_env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + full_env.get('PATH', '')
    full_env.update(env or {})
    log('$ ' + ' '.join(command))
    proc = subprocess.Popen(command, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    for raw in proc.stdout:
        line = raw.decode(errors='replace')
        lines.append(line)
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()
    return proc.wait(), ''.join(lines)


def ansible_test(args, cwd):
    return run_tool([venv_tool('ansible-test')] + args, cwd)


def run_sanity():
    tree = prepare_tree()
    ensure_pip_standin()
    code, output = ansible_test(['sanity', '--local', '--python', PYTHON_VERSION, '--requirements', '--color', 'no'], tree)
    ran = re.findall(r"^Running sanity test ['\"]([^'\"]+)['\"]", output, re.M)
    match = re.search(r'The (\d+) sanity test\(s\) listed below \(out of \d+\) failed', output)
    failed_count = int(match.group(1)) if match else (1 if code != 0 else 0)
    return dict(name='sanity', unit='sanity tests', ran=len(ran), passed=len(ran) - failed_count,
                failed=failed_count, code=code)


def run_units():
    tree = prepare_tree()
    ensure_pip_standin()
    junit_dir = os.path.join(tree, 'tests', 'output', 'junit')
    code, _output = ansible_test(['units', '--local', '--python', PYTHON_VERSION, '--requirements', '--color', 'no'], tree)
    passed = failed = skipped = 0
    if os.path.isdir(junit_dir):
        for name in os.listdir(junit_dir):
            if not name.endswith('.xml'):
                continue
            root = ET.parse(os.path.join(junit_dir, name)).getroot()
            suites = [root] if root.tag == 'testsuite' else root.findall('testsuite')
            for suite in suites:
                total = int(suite.get('tests', 0))
                bad = int(suite.get('failures', 0)) + int(suite.get('errors', 0))
                skip = int(suite.get('skipped', 0))
                passed += total - bad - skip
                failed += bad
                skipped += skip
    if code != 0 and failed == 0:
        failed = 1
    return dict(name='units', unit='unit tests', ran=passed + failed, passed=passed, failed=failed,
                skipped=skipped, code=code)


def gates_context():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gates
    tree = prepare_tree()
    # beside the copied tree, not in it (the tarball is built from the tree)
    scratch = tempfile.mkdtemp(prefix='gates-', dir=COLLECTION_ROOT)
    return gates, gates.Gates(tree, scratch, run_tool, venv_tool, log)


def run_gates(names=None):
    gates, context = gates_context()
    results = gates.run_gates(context, names)
    log('gates:')
    for name, problems, seconds in results:
        log('  %-28s %s  (%.0f s)' % (name, 'passed' if not problems else 'FAILED (%d)' % len(problems), seconds))
    log('gates took %.0f s' % sum(seconds for _n, _p, seconds in results))
    failures = [(name, problems[:5]) for name, problems, _s in results if problems]
    return dict(name='gates', unit='gates', ran=len(results), passed=len(results) - len(failures),
                failed=len(failures), code=1 if failures else 0, failures=failures)


def run_ee_context():
    """`make ee-context`: the tarball in execution-environment/context-collections/ and the build context
    in execution-environment/context/ of the working tree (both git-ignored and left out of the tarball)."""
    gates, context = gates_context()
    dest = os.path.join(REPO, 'execution-environment', 'context')
    shutil.rmtree(dest, ignore_errors=True)
    code, _output, _ee = gates.ee_context(context, dest)
    if code == 0:
        collections = os.path.join(REPO, 'execution-environment', 'context-collections')
        os.makedirs(collections, exist_ok=True)
        shutil.copy2(context.tarball, collections)
        log('build context: %s (build it with: podman build -f %s/Containerfile %s)' % (dest, dest, dest))
    return code


def run_docs():
    """`make docs`: the antsibull-docs site in .tmp/docs/html."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import docsite
    tree = prepare_tree()
    scratch = tempfile.mkdtemp(prefix='docs-', dir=COLLECTION_ROOT)
    problems = docsite.build(tree, scratch, os.path.join(TMP, 'docs', 'html'), run_tool, venv_tool, log)
    for line in problems:
        log('docs problem: ' + line)
    return 1 if problems else 0


def run_summary(name, title, unit, results):
    """Log [(run, problems, seconds)] under TITLE and count them as part NAME of the summary (no run fails it)."""
    log('%s:' % title)
    for run, problems, seconds in results:
        log('  %-28s %s  (%.0f s)' % (run, 'passed' if not problems else 'FAILED', seconds))
        for line in problems:
            log('      ' + line)
    failures = [(run, problems[:5]) for run, problems, _s in results if problems]
    return dict(name=name, unit=unit, ran=len(results), passed=len(results) - len(failures),
                failed=len(failures), code=1 if failures or not results else 0, failures=failures)


def run_awx(playbooks=None):
    """Each shipped playbook as an AWX job template runs it: ansible-runner in a private data directory."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import awx_jobs
    tree = prepare_tree()
    scratch = tempfile.mkdtemp(prefix='awx-', dir=COLLECTION_ROOT)
    playbooks = playbooks or awx_jobs.shipped_playbooks(tree)

    def reset_guest(name):
        code = subprocess.call([sys.executable, LAB_VARS['kvmhp_labctl'], 'reset', name])
        if code != 0:
            raise RuntimeError('labctl reset %s failed' % name)

    results = []
    for playbook in playbooks:
        started = time.time()
        try:
            problems = awx_jobs.run_job(tree, playbook, scratch, LAB_VARS, run_tool, venv_tool, log, reset_guest)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            problems = ['%s: %s' % (type(exc).__name__, exc)]
        results.append((playbook, problems, time.time() - started))
    return run_summary('awx', 'AWX jobs', 'playbooks as jobs', results)


def molecule_scenarios(tree):
    base = os.path.join(tree, 'extensions', 'molecule')
    return sorted(name for name in os.listdir(base) if os.path.isfile(os.path.join(base, name, 'molecule.yml'))) \
        if os.path.isdir(base) else []


def run_molecule(scenarios=None):
    """The roles' molecule scenarios (extensions/molecule/NAME), `molecule test -s NAME` against the fleet lab.

    They run in the copied tree, which is ansible_collections/kvm/hotplug, so that kvm.hotplug resolves to it;
    the lab's paths come in as KVMHP_* environment variables (the scenarios' own plays read them).
    """
    tree = prepare_tree()
    scenarios = scenarios or molecule_scenarios(tree)
    env = dict(ANSIBLE_NOCOLOR='1', NO_COLOR='1', KVMHP_REPO=REPO, KVMHP_PYTHON=sys.executable, KVMHP_LABCTL=LAB_VARS['kvmhp_labctl'])
    results = []
    for scenario in scenarios:
        started = time.time()
        # A fresh state directory per run: molecule keys its default one on the project's folder name
        # ("hotplug"), so a second `make test` on the same machine would find "already prepared" and skip prepare.
        env['MOLECULE_EPHEMERAL_DIRECTORY'] = tempfile.mkdtemp(prefix='molecule-%s-' % scenario, dir=COLLECTION_ROOT)
        code, _output = run_tool([venv_tool('molecule'), 'test', '-s', scenario], tree, env=env)
        results.append((scenario, code, time.time() - started))
    log('molecule scenarios:')
    for scenario, code, seconds in results:
        log('  %-28s %s  (%.0f s)' % (scenario, 'passed' if code == 0 else 'FAILED', seconds))
    failed = sum(1 for _s, code, _t in results if code != 0)
    return dict(name='molecule', unit='molecule scenarios', ran=len(results), passed=len(results) - failed,
                failed=failed, code=1 if failed else 0)


def run_eda():
    """The event source and the shipped rulebook under a real ansible-rulebook, on the fleet lab (tests/harness/eda.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import eda
    prepare_tree()
    scratch = tempfile.mkdtemp(prefix='eda-', dir=COLLECTION_ROOT)
    results = eda.run(COLLECTION_ROOT, scratch, log)
    return run_summary('eda', 'rulebook runs', 'rulebook runs', results)


def integration_targets():
    base = os.path.join(REPO, 'tests', 'integration', 'targets')
    if not os.path.isdir(base):
        return []
    return sorted(t for t in os.listdir(base)
                  if os.path.isdir(os.path.join(base, t)) and _enabled(os.path.join(base, t)))


def _enabled(path):
    aliases = os.path.join(path, 'aliases')
    if not os.path.isfile(aliases):
        return True
    words = open(aliases).read().split()
    return 'disabled' not in words and 'hidden' not in words


# Targets whose aliases say `needs/tcg-vcpu-unplug` hot-unplug vCPUs of TCG guests: stock QEMU never finalizes such an
# unplug, so they need the lab's fixed QEMU.  Whether the lab has it is tests/lab/lab_qemu.py's decision (labctl gives
# the guests the same one).
TCG_UNPLUG_ALIAS = 'needs/tcg-vcpu-unplug'


def lab_qemu_decision():
    sys.path.insert(0, os.path.join(REPO, 'tests', 'lab'))
    import lab_qemu
    return lab_qemu.current()


def _aliases(target):
    path = os.path.join(REPO, 'tests', 'integration', 'targets', target, 'aliases')
    return open(path).read().split() if os.path.isfile(path) else []


def skip_reason(target, lab_qemu):
    """Why the target cannot run on this machine, or None."""
    if TCG_UNPLUG_ALIAS in _aliases(target) and not lab_qemu.unplug_fix:
        return 'needs a completed TCG vCPU unplug: %s' % lab_qemu.reason
    return None


HOSTLAB_ALIAS = 'needs/target/setup_hostlab'


def stop_hostlab():
    """lab-hostres (an emulated Debian host) takes most of a core while it runs: end it once no later target needs
    it, so that the targets after it are not slowed down (setup_hostlab starts it again when asked)."""
    run_tool([sys.executable, os.path.join(REPO, 'tests', 'lab', 'hostlab', 'hostlab'), 'down'], REPO)


def run_integration(targets):
    tree = prepare_tree()
    targets = targets or integration_targets()
    results = []
    failures = []
    skipped = []
    lab_qemu = lab_qemu_decision()
    log('lab QEMU: %s' % lab_qemu.reason)
    for target in list(targets):
        reason = skip_reason(target, lab_qemu)
        if reason:
            skipped.append((target, reason))
            targets = [t for t in targets if t != target]
    last_hostlab_user = ([t for t in targets if HOSTLAB_ALIAS in _aliases(t)] or [None])[-1]
    for target in targets:
        started = time.time()
        code, output = ansible_test(['integration', '--local', '--python', PYTHON_VERSION, '--color', 'no',
                                      '--allow-destructive', '--allow-root', '-v', target], tree)
        results.append((target, code, time.time() - started))
        if code != 0:
            failures.append((target, unignored_failures(output)))
        if target == last_hostlab_user:
            stop_hostlab()
    log('integration targets:')
    for target, code, seconds in results:
        log('  %-28s %s  (%.0f s)' % (target, 'passed' if code == 0 else 'FAILED', seconds))
    for target, reason in skipped:
        log('  %-28s skipped: %s' % (target, reason))
    failed = sum(1 for _t, code, _s in results if code != 0)
    return dict(name='integration', unit='integration targets', ran=len(results), passed=len(results) - failed,
                failed=failed, skipped=len(skipped), code=1 if failed else 0, failures=failures, skips=skipped)


def unignored_failures(output, limit=3):
    """The task failures that failed a target (not those a test expected and ignored), shortened.

    Printed again under the summary, so that the end of a long CI log says what went wrong.
    """
    found = []
    # one chunk per task: its TASK line, its results, and '...ignoring' when ignore_errors applied
    for chunk in re.split(r'\n(?=TASK \[)', output):
        lines = chunk.splitlines()
        if any(line.strip() == '...ignoring' for line in lines):
            continue
        task = lines[0].rstrip(' *') if lines and lines[0].startswith('TASK [') else ''
        for line in lines:
            if re.match(r'^(fatal|failed): \[', line) or line.startswith('ERROR: '):
                found.append(('%s\n      %s' % (task, line[:600])).strip())
    return found[:limit]


def run_demo(parts=None):
    """The README's `make demo`: the demo playbook against the local lab ("single"), then each scenario's playbook
    across the fleet lab ("fleet", tests/harness/fleet_demo.py), both by default."""
    parts = parts or ['single', 'fleet']
    scenarios = [p for p in parts if p not in ('single', 'fleet')]  # some fleet scenarios only
    link_root = os.path.join(TMP, 'demo-collections', 'ansible_collections', 'kvm')
    os.makedirs(link_root, exist_ok=True)
    link = os.path.join(link_root, 'hotplug')
    if not os.path.islink(link):
        if os.path.exists(link):
            shutil.rmtree(link)
        os.symlink(REPO, link)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(TMP, 'demo-collections'),
               ANSIBLE_STDOUT_CALLBACK='default', ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='0')
    timings, code = [], 0
    if 'single' in parts:
        command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                   '-e', 'ansible_python_interpreter=%s' % sys.executable,
                   '-e', 'lab_serial_log_dir=%s' % LAB_VARS['kvmhp_lab_state_dir'],
                   os.path.join(REPO, 'playbooks', 'demo.yml')]
        log('$ ' + ' '.join(command))
        started = time.time()
        code = subprocess.call(command, env=env)
        timings.append(('single-host lab, playbooks/demo.yml', code, time.time() - started))
    if ('fleet' in parts or scenarios) and code == 0:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import fleet_demo
        fleet_env = dict(env, ANSIBLE_HOST_KEY_CHECKING='true', KVMHP_REPO=REPO, KVMHP_PYTHON=sys.executable,
                         KVMHP_LABCTL=LAB_VARS['kvmhp_labctl'])
        started = time.time()
        code = fleet_demo.Demo(REPO, fleet_env, log).run(scenarios)
        timings.append(('fleet lab, each scenario\'s playbook', code, time.time() - started))
    for label, part_code, seconds in timings:
        log('demo: %-40s %s  (%.0f s)' % (label, 'passed' if part_code == 0 else 'FAILED', seconds))
    return code


def summarize(results):
    print('', flush=True)
    print('=' * 64)
    print('kvm.hotplug test summary')
    for res in results:
        extra = ', %d skipped' % res['skipped'] if res.get('skipped') else ''
        print('  %-12s %4d %-20s %4d passed, %d failed%s' % (res['name'], res['ran'], res['unit'], res['passed'],
                                                            res['failed'], extra))
    passed = sum(r['passed'] for r in results)
    failed = sum(r['failed'] for r in results)
    print('=' * 64)
    for res in results:
        # repeated here so that the end of a long CI log says what did not run, and why
        for target, reason in res.get('skips', []):
            print('%s %s skipped: %s' % (res['name'], target, reason))
        for target, lines in res.get('failures', []):
            print('%s %s failed at:' % (res['name'], target))
            for line in lines or ['(no task failure found in its output; see above)']:
                print('    ' + line)
    print('total: %d passed, %d failed' % (passed, failed), flush=True)
    return 0 if failed == 0 and all(r['code'] == 0 for r in results) else 1


def remove_tree():
    if not os.environ.get('KVMHP_KEEP_TREE'):
        shutil.rmtree(COLLECTION_ROOT, ignore_errors=True)


def main():
    atexit.register(remove_tree)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('part', choices=['sanity', 'units', 'gates', 'integration', 'molecule', 'eda', 'awx', 'all',
                                         'demo', 'docs', 'ee-context'])
    parser.add_argument('targets', nargs='*',
                        help='integration targets, gates, molecule scenarios, playbooks, or demo parts: single, fleet '
                             '(or some fleet scenarios: rebalance, capacity, serviceability, hypervisor_migration) '
                             '(default: all)')
    args = parser.parse_args()
    if args.part == 'demo':
        return run_demo(args.targets)
    if args.part == 'ee-context':
        return run_ee_context()
    if args.part == 'docs':
        return run_docs()
    results = []
    if args.part in ('sanity', 'all'):
        results.append(run_sanity())
    if args.part in ('gates', 'all'):
        results.append(run_gates(args.targets if args.part == 'gates' else None))
    if args.part in ('units', 'all'):
        results.append(run_units())
    if args.part in ('integration', 'all'):
        results.append(run_integration(args.targets if args.part == 'integration' else None))
    if args.part in ('molecule', 'all'):
        results.append(run_molecule(args.targets if args.part == 'molecule' else None))
    if args.part in ('eda', 'all'):
        results.append(run_eda())
    if args.part in ('awx', 'all'):
        results.append(run_awx(args.targets if args.part == 'awx' else None))
    return summarize(results)


if __name__ == '__main__':
    sys.exit(main())
