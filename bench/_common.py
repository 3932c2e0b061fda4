"""What the benchmarks share: the collection on an import path, running ansible(-playbook) against this tree,
repetitions summarised as min/median/max, a fixed reference workload, and results written as JSON.

Every bench script measures its sides in one run, alternating them, and reports ratios of medians taken in that run.
Results go to bench/results/<name>.json (bench/report.py turns them into docs/performance.md and its plots).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, 'results')
PYTHON = sys.executable
LABCTL = os.path.join(REPO, 'tests', 'lab', 'labctl')
FLEET_INVENTORY = os.path.join(REPO, 'tests', 'lab', 'fleet', 'inventory.yml')


def collections_path():
    """A directory holding ansible_collections/kvm/hotplug -> this tree (the tree itself when it already sits at
    such a path), for ANSIBLE_COLLECTIONS_PATH and for importing module_utils."""
    parts = REPO.split(os.sep)
    if parts[-3:-1] == ['ansible_collections', 'kvm'] and parts[-1] == 'hotplug':
        return os.sep.join(parts[:-3])
    root = os.path.join(REPO, '.tmp', 'bench-collections')
    link = os.path.join(root, 'ansible_collections', 'kvm', 'hotplug')
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)
    return root


def importable():
    """Put the collection on sys.path, so `ansible_collections.kvm.hotplug...` imports from this tree."""
    path = collections_path()
    if path not in sys.path:
        sys.path.insert(0, path)


def ansible_env(**extra):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0', ANSIBLE_RETRY_FILES_ENABLED='0')
    env.update(extra)
    return env


def tool(name):
    return os.path.join(os.path.dirname(PYTHON), name)


def playbook(args, cwd=None, env=None):
    """ansible-playbook ARGS against this tree; its wall time in seconds (exits with its output if it fails)."""
    started = time.monotonic()
    proc = subprocess.run([tool('ansible-playbook')] + list(args), cwd=cwd, env=env or ansible_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit('ansible-playbook %s failed:\n%s' % (' '.join(args), proc.stdout[-3000:]))
    return seconds


def labctl(*args):
    subprocess.run([PYTHON, LABCTL] + list(args), check=True, stdout=subprocess.DEVNULL)


def summary(values):
    """min, median and max of repetitions, and how many."""
    values = [v for v in values if v is not None]
    if not values:
        return dict(n=0, min=None, median=None, max=None, values=[])
    return dict(n=len(values), min=min(values), median=statistics.median(values), max=max(values),
                values=[round(v, 6) for v in values])


def ratio(numerator, denominator):
    """Ratio of two summaries' medians, with the range of the per-repetition ratios when they pair up."""
    if numerator['median'] is None or not denominator['median']:
        return dict(median=None)
    out = dict(median=numerator['median'] / denominator['median'])
    a, b = numerator['values'], denominator['values']
    if len(a) == len(b) and a and all(b):
        pairs = [x / y for x, y in zip(a, b)]
        out.update(min=min(pairs), max=max(pairs))
    return out


def reference():
    """CPU seconds for a fixed pure-Python workload (1,000,000 small dicts), to tell a slow planner from a busy
    machine between runs."""
    started = time.process_time()
    for i in range(1000000):
        dict(a=i, b=i, c=i, d=i)
    return time.process_time() - started


def git_commit():
    try:
        return subprocess.run(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_result(name, data, path=None):
    """bench/results/NAME.json: data plus when, where and from which commit it was measured."""
    path = path or os.path.join(RESULTS, '%s.json' % name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = dict(data, bench=name, measured=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
                commit=git_commit(), python=platform.python_version(), cpus=os.cpu_count(),
                load_average=[round(x, 2) for x in os.getloadavg()])
    with open(path, 'w') as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write('\n')
    print('wrote %s' % os.path.relpath(path, REPO))
    return path


def add_json_option(parser, name):
    parser.add_argument('--json', nargs='?', const=os.path.join(RESULTS, '%s.json' % name), default=None,
                        metavar='PATH', help='also write the results as JSON (default path bench/results/%s.json)'
                        % name)
