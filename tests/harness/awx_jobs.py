"""AWX's way of running the collection's playbooks, `suite.py awx` (and so `make test`).

For each shipped playbook (playbooks/*.yml that holds plays; task files such as playbooks/demo_tasks/ are
not playbooks), this does what an AWX job template does with a project that is this repository:

1. project update: the project checkout is copied to PRIVATE/project, and
   `ansible-galaxy collection install -r collections/requirements.yml -p PRIVATE/requirements_collections`
   runs in it (AWX's project_update playbook runs it with the project as working directory);
2. job: ansible-runner gets a private data directory with inventory/hosts, env/extravars (the job template's
   extra_vars and survey answers), env/envvars (ANSIBLE_COLLECTIONS_PATH=PRIVATE/requirements_collections,
   as AWX sets it) and env/settings, and runs `ansible-runner run PRIVATE -p playbooks/NAME.yml`;
3. the job's artifacts are checked as AWX reads them: rc and status, stdout, and the job events: one
   playbook_on_start, the plays, every task of `ansible-playbook --list-tasks` started, a result event for
   each of them per host of the play, no failure that was not ignored, no unreachable host, and the
   playbook_on_stats of every host (and the set_stats artifacts the job template expects).

A job template per playbook may live in tests/harness/job_templates/NAME.yml (extra_vars, limit, verbosity,
job_type run|check, inventory (a dict) or inventory_file (a path in the repository), lab_reset: guests to reset
first, artifacts: set_stats keys the job must publish);
a playbook without one runs with the lab's inventory and extra vars alone.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, 'job_templates')
RESULT_EVENTS = ('runner_on_ok', 'runner_on_failed', 'runner_on_skipped', 'runner_on_unreachable')


def shipped_playbooks(tree):
    """playbooks/*.yml whose top level is a list of plays (import_playbook counts as a play)."""
    found = []
    for path in sorted(glob.glob(os.path.join(tree, 'playbooks', '*.y*ml'))):
        data = yaml.safe_load(open(path))
        if isinstance(data, list) and data and all(isinstance(p, dict) and ('hosts' in p or 'import_playbook' in p
                                                                            or 'ansible.builtin.import_playbook' in p)
                                                   for p in data):
            found.append(os.path.relpath(path, tree))
    return found


def job_template(playbook):
    name = os.path.splitext(os.path.basename(playbook))[0]
    path = os.path.join(TEMPLATES, name + '.yml')
    template = yaml.safe_load(open(path)) if os.path.isfile(path) else {}
    template.setdefault('name', name)
    return template


def write_yaml(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        yaml.safe_dump(data, handle, default_flow_style=False)


def listed_tasks(output):
    """Task names per play from `ansible-playbook --list-tasks` (role tasks as 'role : name')."""
    plays = []
    for line in output.splitlines():
        if re.match(r'^\s+play #\d+ ', line):
            plays.append([])
        elif plays and re.match(r'^\s{6}\S', line):
            plays[-1].append(re.sub(r'\tTAGS: \[.*\]$', '', line.strip()).strip())
    return plays


def _short_role(name):
    # --list-tasks names a collection role by its FQCN (kvm.hotplug.rebalance : task), the job events by its
    # short name (rebalance : task)
    return re.sub(r'^[A-Za-z0-9_]+\.[A-Za-z0-9_]+\.([A-Za-z0-9_]+ : )', r'\1', name)


def matches(listed, started):
    listed, started = _short_role(listed), _short_role(started)
    if '{{' not in listed:
        return listed == started
    pattern = '^' + re.sub(r'\\\{\\\{.*?\\\}\\\}', '.*', re.escape(listed)) + '$'
    return re.match(pattern, started) is not None


def read_events(artifacts):
    events = []
    for path in glob.glob(os.path.join(artifacts, 'job_events', '*.json')):
        events.append(json.load(open(path)))
    return sorted(events, key=lambda e: e.get('counter', 0))


def check_job(artifacts, plays_tasks, template):
    """The problems AWX would show for this job, from its artifacts; and a one-line summary."""
    problems = []
    rc = open(os.path.join(artifacts, 'rc')).read().strip() if os.path.isfile(os.path.join(artifacts, 'rc')) else '?'
    status = (open(os.path.join(artifacts, 'status')).read().strip()
              if os.path.isfile(os.path.join(artifacts, 'status')) else '?')
    if rc != '0' or status != 'successful':
        problems.append('job rc=%s status=%s' % (rc, status))
    stdout = open(os.path.join(artifacts, 'stdout')).read() if os.path.isfile(os.path.join(artifacts, 'stdout')) else ''
    if 'PLAY RECAP' not in stdout:
        problems.append('stdout has no PLAY RECAP')
    events = read_events(artifacts)
    if not events:
        return problems + ['no job events'], 'no events'
    counters = [e['counter'] for e in events]
    if counters != list(range(1, len(events) + 1)):
        problems.append('job event counters are not 1..%d' % len(events))
    if len({e.get('runner_ident') for e in events}) != 1:
        problems.append('job events of more than one job')
    kinds = [e['event'] for e in events]
    if kinds.count('playbook_on_start') != 1 or kinds.count('playbook_on_stats') != 1:
        problems.append('%d playbook_on_start and %d playbook_on_stats events (one each expected)'
                        % (kinds.count('playbook_on_start'), kinds.count('playbook_on_stats')))
    stats = next((e['event_data'] for e in events if e['event'] == 'playbook_on_stats'), {})
    hosts = sorted(stats.get('processed', {}))
    if not hosts:
        problems.append('playbook_on_stats processed no host')
    for host in hosts:
        for key in ('failures', 'dark'):
            if stats.get(key, {}).get(host):
                problems.append('%s: %s=%s in playbook_on_stats' % (host, key, stats[key][host]))
    for key in template.get('artifacts', []):
        if key not in (stats.get('artifact_data') or {}):
            problems.append('set_stats artifact %s missing (playbook_on_stats artifact_data: %s)'
                            % (key, sorted(stats.get('artifact_data') or {})))

    plays = [e for e in events if e['event'] == 'playbook_on_play_start']
    if len(plays) != len(plays_tasks):
        problems.append('%d plays started, --list-tasks lists %d' % (len(plays), len(plays_tasks)))
    results = 0
    for index, play in enumerate(plays):
        play_uuid = play['event_data'].get('play_uuid') or play['uuid']
        starts = [e for e in events if e['event'] == 'playbook_on_task_start'
                  and e['event_data'].get('play_uuid') == play_uuid]
        names = [('%s : %s' % (e['event_data']['role'], e['event_data']['task']) if e['event_data'].get('role')
                  else e['event_data'].get('task', '')) for e in starts]
        for listed in plays_tasks[index] if index < len(plays_tasks) else []:
            if not any(matches(listed, started) for started in names):
                problems.append('play %d: task %r never started' % (index + 1, listed))
        for start, name in zip(starts, names):
            task_uuid = start['event_data'].get('task_uuid') or start['uuid']
            done = [e for e in events if e['event'] in RESULT_EVENTS and e['event_data'].get('task_uuid') == task_uuid]
            for host in hosts:
                mine = [e for e in done if e['event_data'].get('host') == host]
                results += len(mine)
                if not mine:
                    problems.append('task %r: no result event for host %s' % (name, host))
                for event in mine:
                    data = event['event_data']
                    if event['event'] == 'runner_on_unreachable':
                        problems.append('task %r: %s unreachable' % (name, host))
                    elif event['event'] == 'runner_on_failed' and not data.get('ignore_errors'):
                        problems.append('task %r failed on %s: %s' % (name, host, (data.get('res') or {}).get('msg', '')))
    summary = ('%d events, %d plays, %d tasks started, %d host results, hosts %s'
               % (len(events), len(plays), kinds.count('playbook_on_task_start'), results, ','.join(hosts)))
    return problems, summary


def run_job(tree, playbook, scratch, lab_vars, run_tool, tool, log, reset_guest):
    """Run one playbook as an AWX job; return its problems, one line each."""
    template = job_template(playbook)
    private = os.path.join(scratch, template['name'])
    shutil.rmtree(private, ignore_errors=True)
    project = os.path.join(private, 'project')
    shutil.copytree(tree, project, ignore=shutil.ignore_patterns('output', 'integration_config.yml'))
    collections = os.path.join(private, 'requirements_collections')
    # AWX's environment: only the job's own collections, never the harness's copy
    env = {'ANSIBLE_COLLECTIONS_PATH': collections + os.pathsep + '/usr/share/ansible/collections',
           'ANSIBLE_NOCOLOR': '1'}

    # 1. project update
    code, output = run_tool([tool('ansible-galaxy'), 'collection', 'install', '-r', 'collections/requirements.yml',
                             '-p', collections], project, env=env)
    if code != 0:
        return ['project update: ansible-galaxy collection install -r collections/requirements.yml failed: %s'
                % output.strip()[-300:]]

    # 2. the job's private data directory
    python = lab_vars['kvmhp_python']
    if template.get('inventory_file'):     # an inventory of the repository, e.g. the fleet lab's
        hosts = yaml.safe_load(open(os.path.join(lab_vars['kvmhp_repo'], template['inventory_file'])))
    else:
        hosts = template.get('inventory') or {'all': {'hosts': {'localhost': {
            'ansible_connection': 'local', 'ansible_python_interpreter': python}}}}
    write_yaml(os.path.join(private, 'inventory', 'hosts.yml'), hosts)
    extravars = {'lab_serial_log_dir': lab_vars['kvmhp_lab_state_dir']}
    extravars.update(template.get('extra_vars') or {})
    write_yaml(os.path.join(private, 'env', 'extravars'), extravars)
    write_yaml(os.path.join(private, 'env', 'envvars'), env)
    write_yaml(os.path.join(private, 'env', 'settings'), {'job_timeout': int(template.get('timeout', 900)),
                                                          'suppress_ansible_output': False})
    args = ['-p', playbook]
    cmdline = []
    if template.get('limit'):
        args += ['--limit', template['limit']]
    if template.get('job_type') == 'check':
        cmdline.append('--check')
    if template.get('verbosity'):
        args += ['-' + 'v' * int(template['verbosity'])]

    # the tasks AWX will have to show: --list-tasks of the same playbook, inventory and collections
    code, output = run_tool([tool('ansible-playbook'), '-i', os.path.join(private, 'inventory'),
                             '-e', '@' + os.path.join(private, 'env', 'extravars'), '--list-tasks', playbook]
                            + (['--limit', template['limit']] if template.get('limit') else []),
                            project, env=env, echo=False)
    if code != 0:
        return ['ansible-playbook --list-tasks %s failed: %s' % (playbook, output.strip()[-300:])]
    plays_tasks = listed_tasks(output)

    for guest in template.get('lab_reset', []):
        reset_guest(guest)

    ident = 'job-' + template['name']
    command = [tool('ansible-runner'), 'run', private, '--ident', ident] + args
    if cmdline:
        command.append('--cmdline=' + ' '.join(cmdline))
    code, output = run_tool(command, private, env=env)
    artifacts = os.path.join(private, 'artifacts', ident)
    if not os.path.isdir(artifacts):
        return ['ansible-runner wrote no artifacts (exit %d)' % code]
    problems, summary = check_job(artifacts, plays_tasks, template)
    log('AWX job %s: %s' % (playbook, summary))
    if code != 0 and not problems:
        problems.append('ansible-runner exited %d' % code)
    return problems
