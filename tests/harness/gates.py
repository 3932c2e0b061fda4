"""The ecosystem's own checks of the collection, run by `suite.py gates` (and so by `make test`).

Each gate is a function of a Gates context that returns a list of problems, one line each; an empty
list is a pass.  They run in the harness's copy of the tree, COLLECTION_ROOT/ansible_collections/kvm/hotplug,
never in the working tree, so that no tool cache (ansible-lint's .ansible/, antsibull-changelog's
.plugin-cache.yaml, galaxy-importer's temporary files) lands where the next `ansible-galaxy collection
build` would ship it.

    ansible-lint           profile production (.ansible-lint) over playbooks, roles and integration targets
    tarball                the built tarball holds no tool cache
    galaxy-importer        Galaxy's own import of the built tarball, without a container (galaxy-importer.cfg)
    antsibull-docs         lint-collection-docs --plugin-docs: plugin and role docs, markup, references
    ansible-doc            every plugin and role documented and listed
    changelog              fragments and changelog.yaml valid, CHANGELOG.rst generated from them
    execution-environment  ansible-builder create: a Containerfile with every step, introspect agreeing with
                           requirements.txt and bindep.txt
    docs                   the documentation site (docsite.py) builds with no warning but those of no network
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tarfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
# plugin directories that hold no plugins of their own
NOT_PLUGIN_TYPES = ('module_utils', 'doc_fragments', 'plugin_utils')
# Tool caches that must never be in the tarball (the issue: ansible-lint's .ansible/ copy of the collection).
NOT_IN_TARBALL = re.compile(r'(^|/)(\.ansible|\.pytest_cache|__pycache__|\.venv|\.tmp|tests/output)(/|$)'
                            r'|(^|/)changelogs/\.plugin-cache\.yaml$|integration_config\.yml$|\.pyc$')


class Gates:
    """What every gate needs: the copied tree, a scratch directory beside it, and the harness's run_tool."""

    def __init__(self, tree, scratch, run_tool, tool, log):
        self.tree = tree
        self.scratch = scratch
        self.run_tool = run_tool
        self.tool = tool
        self.log = log
        self.galaxy = yaml.safe_load(open(os.path.join(tree, 'galaxy.yml')))
        self.fqcn = '%s.%s' % (self.galaxy['namespace'], self.galaxy['name'])
        self._tarball = None

    @property
    def tarball(self):
        """The collection tarball, built once from the copied tree."""
        if self._tarball is None:
            out = os.path.join(self.scratch, 'build')
            code, output = self.run_tool([self.tool('ansible-galaxy'), 'collection', 'build', '--force',
                                          '--output-path', out, self.tree], self.scratch)
            if code != 0:
                raise GateError('ansible-galaxy collection build failed: %s' % output.strip().splitlines()[-1:])
            self._tarball = os.path.join(out, '%s-%s-%s.tar.gz' % (self.galaxy['namespace'], self.galaxy['name'],
                                                                   self.galaxy['version']))
        return self._tarball


class GateError(Exception):
    pass


def problems_of(output, pattern):
    return [line.strip() for line in output.splitlines() if re.search(pattern, line)]


def gate_ansible_lint(g):
    # With ANSIBLE_COLLECTIONS_PATH set to the copy's root, ansible-lint finds the collection there and
    # installs nothing; its cache goes to ANSIBLE_HOME in the scratch directory. --offline: no version check
    # or Galaxy look-up (no network here), which otherwise costs about 20 s of timeouts.
    code, output = g.run_tool([g.tool('ansible-lint'), '--nocolor', '--format', 'pep8', '--offline'],
                              g.tree, env={'ANSIBLE_HOME': os.path.join(g.scratch, 'ansible-home')})
    findings = problems_of(output, r'^\S+:\d+(:\d+)?: ')
    if code != 0 and not findings:
        findings = output.strip().splitlines()[-3:] or ['ansible-lint exited %d' % code]
    if not re.search(r"Profile 'production' was required, and it passed", output) and not findings:
        findings.append('ansible-lint did not report the production profile as passed')
    return findings


# What the tools leave in a working tree: a plain `ansible-lint` run there installs the collection into
# .ansible/, pytest leaves .pytest_cache, antsibull-changelog .plugin-cache.yaml. The tarball gate plants them
# in the copied tree before the build, so that build_ignore is really exercised.
TOOL_LITTER = ('.ansible/collections/ansible_collections/kvm/hotplug/galaxy.yml', '.ansible/roles/.keep',
               'tests/unit/.pytest_cache/v/cache/nodeids', '.pytest_cache/README.md', 'changelogs/.plugin-cache.yaml',
               'plugins/modules/__pycache__/vcpu_hotplug.cpython-311.pyc')


def gate_tarball(g):
    planted = []
    for rel in TOOL_LITTER:
        path = os.path.join(g.tree, rel)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, 'w').close()
            planted.append(path)
    try:
        with tarfile.open(g.tarball) as tar:
            names = tar.getnames()
    finally:
        for path in planted:
            os.remove(path)
    bad = sorted(n for n in names if NOT_IN_TARBALL.search(n))
    problems = ['tarball ships %s' % n for n in bad[:10]]
    for needed in ('LICENSES/GPL-3.0-or-later.txt', 'CHANGELOG.rst', 'changelogs/changelog.yaml',
                   'meta/runtime.yml', 'meta/execution-environment.yml', 'requirements.txt', 'bindep.txt'):
        if needed not in names:
            problems.append('tarball lacks %s' % needed)
    return problems


def gate_galaxy_importer(g):
    work = os.path.join(g.scratch, 'galaxy-importer')
    os.makedirs(os.path.join(work, 'tmp'), exist_ok=True)
    env = {'GALAXY_IMPORTER_CONFIG': os.path.join(HERE, 'galaxy-importer.cfg'),
           # per run, outside the tree
           'GALAXY_IMPORTER_TMP_ROOT_DIR': os.path.join(work, 'tmp'),
           'GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP': os.path.join(work, 'ansible-tmp')}
    code, output = g.run_tool([g.tool('python'), '-m', 'galaxy_importer.main', g.tarball], work, env=env)
    problems = problems_of(output, r'^(WARNING|ERROR)[: ]')
    if code != 0 and not problems:
        problems = ['galaxy-importer exited %d' % code]
    if 'Importer processing completed successfully' not in output and not problems:
        problems.append('galaxy-importer did not complete')
    result = os.path.join(work, 'importer_result.json')
    if os.path.isfile(result):
        metadata = json.load(open(result)).get('metadata', {})
        for key in ('repository', 'documentation', 'homepage', 'issues'):
            if not metadata.get(key):
                problems.append('galaxy-importer: no %s in the collection metadata' % key)
    return problems


def gate_antsibull_docs(g):
    code, output = g.run_tool([g.tool('antsibull-docs'), 'lint-collection-docs', '--plugin-docs',
                               '--validate-collection-refs', 'all', '--disallow-unknown-collection-refs', '.'],
                              g.tree)
    problems = [line.strip() for line in output.splitlines() if line.strip()]
    if code != 0 and not problems:
        problems = ['antsibull-docs exited %d' % code]
    return problems


def plugin_types(tree):
    base = os.path.join(tree, 'plugins')
    return sorted(d for d in os.listdir(base)
                  if os.path.isdir(os.path.join(base, d)) and d not in NOT_PLUGIN_TYPES and not d.startswith('_'))


def expected_plugins(tree, ptype):
    """The plugin names a plugins/<type>/ directory should give: modules by file, others by doc (sidecar or file)."""
    folder = os.path.join(tree, 'plugins', ptype)
    names = set()
    for path in glob.glob(os.path.join(folder, '*')):
        base, ext = os.path.splitext(os.path.basename(path))
        if base.startswith('_') or base == '__init__':
            continue
        if ptype == 'modules' and ext == '.py':
            names.add(base)
        elif ptype in ('filter', 'test') and ext in ('.yml', '.yaml'):
            names.add(base)  # filter and test files hold several plugins, each documented by a sidecar
        elif ptype not in ('modules', 'filter', 'test') and ext == '.py':
            names.add(base)
    return names


def gate_ansible_doc(g):
    problems = []
    checked = 0
    types = [(t, 'module' if t == 'modules' else t, expected_plugins(g.tree, t)) for t in plugin_types(g.tree)]
    roles_dir = os.path.join(g.tree, 'roles')
    if os.path.isdir(roles_dir):
        types.append(('roles', 'role', {r for r in os.listdir(roles_dir) if os.path.isdir(os.path.join(roles_dir, r))}))
    for folder, doc_type, expected in types:
        if not expected:
            continue
        code, output = g.run_tool([g.tool('ansible-doc'), '-t', doc_type, '--list', '--json', g.fqcn], g.tree,
                                  echo=False)
        try:
            listed = {name.split('.', 2)[2] for name in json.loads(output[output.index('{'):])}
        except ValueError:
            problems.append('ansible-doc -t %s --list %s: no JSON (%s)' % (doc_type, g.fqcn, output.strip()[:200]))
            continue
        for missing in sorted(expected - listed):
            problems.append('%s/%s: not listed by ansible-doc -t %s (no or broken documentation%s)'
                            % (folder, missing, doc_type, ', or no meta/argument_specs.yml' if doc_type == 'role' else ''))
        names = ['%s.%s' % (g.fqcn, n) for n in sorted(expected & listed)]
        if not names:
            continue
        code, output = g.run_tool([g.tool('ansible-doc'), '-t', doc_type, '--json'] + names, g.tree, echo=False)
        problems += ['ansible-doc -t %s: %s' % (doc_type, line) for line in problems_of(output, r'\[(WARNING|ERROR)\]')]
        try:
            docs = json.loads(output[output.index('{'):])
        except ValueError:
            problems.append('ansible-doc -t %s: no JSON for %s' % (doc_type, ' '.join(names)))
            continue
        for name in names:
            entry = docs.get(name) or {}
            doc = entry.get('doc') or entry.get('entry_points')
            if not doc:
                problems.append('ansible-doc -t %s %s: no documentation' % (doc_type, name))
            elif doc_type != 'role' and not entry.get('examples') and doc_type in ('module', 'filter', 'test', 'lookup'):
                problems.append('ansible-doc -t %s %s: no EXAMPLES' % (doc_type, name))
            checked += 1
        if code != 0:
            problems.append('ansible-doc -t %s exited %d' % (doc_type, code))
        if doc_type == 'module':
            problems += action_group_problems(g, docs)
    g.log('ansible-doc: %d plugins and roles documented' % checked)
    if not checked:
        problems.append('ansible-doc found no plugin at all')
    return problems


def action_group_problems(g, docs):
    """meta/runtime.yml's libvirt action group must hold exactly the modules that take `uri`, and each of them
    must say so in its docs (the attribute module_defaults users read), so that group/kvm.hotplug.libvirt
    resolves and sets `uri` for every module that talks to libvirt."""
    runtime = yaml.safe_load(open(os.path.join(g.tree, 'meta', 'runtime.yml'))) or {}
    group = set(runtime.get('action_groups', {}).get('libvirt') or [])
    problems = []
    for name, entry in sorted(docs.items()):
        short = name.split('.', 2)[2]
        doc = entry.get('doc') or {}
        takes_uri = 'uri' in (doc.get('options') or {})
        listed = short in group or name in group
        membership = ((doc.get('attributes') or {}).get('action_group') or {}).get('membership') or []
        if takes_uri and not listed:
            problems.append('meta/runtime.yml: %s takes uri but is not in the libvirt action group' % short)
        if listed and not takes_uri:
            problems.append('meta/runtime.yml: %s is in the libvirt action group but takes no uri' % short)
        if listed and '%s.libvirt' % g.fqcn not in membership:
            problems.append('%s: docs do not list the action group %s.libvirt (doc fragment %s.attributes.actiongroup_libvirt)'
                            % (short, g.fqcn, g.fqcn))
    for short in sorted(group - {n.split('.', 2)[2] for n in docs} - set(docs)):
        problems.append('meta/runtime.yml: the libvirt action group lists %s, which is no module' % short)
    return problems


def gate_changelog(g):
    problems = []
    tool = g.tool('antsibull-changelog')
    for args in (['lint'], ['lint-changelog-yaml', 'changelogs/changelog.yaml']):
        code, output = g.run_tool([tool] + args, g.tree)
        problems += ['antsibull-changelog %s: %s' % (args[0], line.strip()) for line in output.splitlines()
                     if line.strip()]
        if code != 0 and not problems:
            problems.append('antsibull-changelog %s exited %d' % (args[0], code))
    # CHANGELOG.rst is generated, never edited: regenerating it from changelog.yaml must give the same file.
    committed = open(os.path.join(g.tree, 'CHANGELOG.rst')).read()
    code, output = g.run_tool([tool, 'generate'], g.tree)
    if code != 0:
        problems.append('antsibull-changelog generate exited %d: %s' % (code, output.strip()[-300:]))
    elif open(os.path.join(g.tree, 'CHANGELOG.rst')).read() != committed:
        problems.append('CHANGELOG.rst differs from what antsibull-changelog generates from changelogs/changelog.yaml')
    return problems


def requirement_lines(path):
    lines = []
    for line in open(path):
        line = line.split('#', 1)[0].strip()
        if line:
            lines.append(re.sub(r'\s+', ' ', line))
    return lines


def ee_context(g, dest):
    """Put the tarball where the EE definition expects it and run ansible-builder create into dest."""
    ee_dir = os.path.join(g.tree, 'execution-environment')
    ee_file = os.path.join(ee_dir, 'execution-environment.yml')
    collections_dir = os.path.join(ee_dir, 'context-collections')
    os.makedirs(collections_dir, exist_ok=True)
    shutil.copy2(g.tarball, collections_dir)
    code, output = g.run_tool([g.tool('ansible-builder'), 'create', '-f', ee_file, '-c', dest,
                               '--output-filename', 'Containerfile'], ee_dir)
    return code, output, ee_file


def gate_execution_environment(g):
    problems = []
    context = os.path.join(g.scratch, 'ee-context')
    code, output, ee_file = ee_context(g, context)
    if code != 0:
        return ['ansible-builder create exited %d: %s' % (code, output.strip()[-300:])]
    definition = yaml.safe_load(open(ee_file))
    containerfile = open(os.path.join(context, 'Containerfile')).read()
    deps = definition.get('dependencies', {})

    # The collection itself: the prebuilt tarball, in the context, named by galaxy.yml's version.
    tar_name = os.path.basename(g.tarball)
    sources = [c.get('source', '') for c in deps.get('galaxy', {}).get('collections', [])
               if c.get('name') == g.fqcn]
    if not any(os.path.basename(s) == tar_name for s in sources):
        problems.append('execution-environment.yml installs %s from %s, not from %s (galaxy.yml version %s)'
                        % (g.fqcn, sources or 'nowhere', tar_name, g.galaxy['version']))
    for source in sources:
        if not os.path.isfile(os.path.join(context, '_build', source)):
            problems.append('the build context lacks %s (make ee-context builds it)' % source)
    requirements = yaml.safe_load(open(os.path.join(context, '_build', 'requirements.yml')))
    if not any(c.get('name') == g.fqcn for c in requirements.get('collections', [])):
        problems.append('_build/requirements.yml does not install %s' % g.fqcn)

    # A Python the ansible-core range accepts, with pip; CRB for libvirt-devel.
    match = re.search(r'^ARG PYCMD="[^"]*python(\d+)\.(\d+)"', containerfile, re.M)
    if not match or (int(match.group(1)), int(match.group(2))) < (3, 10):
        problems.append('the image runs a Python older than 3.10 (ARG PYCMD), which ansible-core 2.16+ refuses')
    steps = [
        ('the Python interpreter package', r'RUN \$PKGMGR install \$PYPKG'),
        ('pip for it', r'RUN /output/scripts/pip_install \$PYCMD'),
        ('ansible-core and ansible-runner', r'ARG ANSIBLE_INSTALL_REFS="[^"]*ansible-core[^"]*ansible-runner'),
        ('the CRB repository (libvirt-devel)', r'config-manager --set-enabled crb'),
        ('the build context', r'^COPY _build /build$'),
        ('the collection install', r'ansible-galaxy collection install .*-r requirements\.yml'),
        ('introspection of Python and system dependencies', r'introspect\.py introspect --write-bindep=\S+ --write-pip=\S+'),
        ('the builder stage (compile packages, wheels)', r'^RUN /output/scripts/assemble$'),
        ('the run-time system packages and wheels', r'^RUN /output/scripts/install-from-bindep'),
        ('the ansible check', r'^RUN /output/scripts/check_ansible'),
    ]
    for what, pattern in steps:
        if not re.search(pattern, containerfile, re.M):
            problems.append('Containerfile has no step for %s (/%s/)' % (what, pattern))

    # bindep must parse bindep.txt (exit 2 is a parse error; 1 only means packages are missing here)
    for profile in ([], ['compile'], ['host']):
        code, output = g.run_tool([g.tool('bindep'), '-f', 'bindep.txt', '-l', 'newline'] + profile, g.tree, echo=False)
        if code == 2 or 'Traceback' in output:
            problems.append('bindep cannot parse bindep.txt: %s' % output.strip()[-300:])
            break

    # ansible-builder introspect of the installed tarball must give requirements.txt and bindep.txt exactly.
    installed = os.path.join(g.scratch, 'ee-collections')
    code, output = g.run_tool([g.tool('ansible-galaxy'), 'collection', 'install', '--force', '-p', installed,
                               g.tarball], g.scratch, env={'ANSIBLE_COLLECTIONS_PATH': installed})
    if code != 0:
        return problems + ['ansible-galaxy collection install of the tarball failed']
    code, output = g.run_tool([g.tool('ansible-builder'), 'introspect', '--sanitize', installed], g.scratch)
    if code != 0:
        return problems + ['ansible-builder introspect exited %d' % code]
    found = yaml.safe_load(output[output.index('---'):]) or {}
    strip = (lambda items: [re.sub(r'\s+', ' ', re.sub(r'\s*# from collection .*$', '', i)).strip()
                            for i in items or []])
    for kind, filename in (('python', 'requirements.txt'), ('system', 'bindep.txt')):
        want = requirement_lines(os.path.join(g.tree, filename))
        got = strip(found.get(kind))
        if sorted(got) != sorted(want):
            problems.append('ansible-builder introspect %s: %s, but %s says %s' % (kind, got, filename, want))
    return problems


def gate_docs(g):
    import docsite  # beside this file; suite.py puts this directory on sys.path
    return docsite.build(g.tree, g.scratch, os.path.join(g.scratch, 'docs-html'), g.run_tool, g.tool, g.log)


GATES = [
    ('ansible-lint', gate_ansible_lint),
    ('tarball', gate_tarball),
    ('galaxy-importer', gate_galaxy_importer),
    ('antsibull-docs', gate_antsibull_docs),
    ('ansible-doc', gate_ansible_doc),
    ('changelog', gate_changelog),
    ('execution-environment', gate_execution_environment),
    ('docs', gate_docs),
]


def run_gates(g, names=None):
    """Run the gates (all, or those named); return (name, problems, seconds) per gate."""
    results = []
    for name, gate in GATES:
        if names and name not in names:
            continue
        g.log('gate %s' % name)
        started = time.time()
        try:
            problems = gate(g)
        except GateError as exc:
            problems = [str(exc)]
        except Exception as exc:  # pylint: disable=broad-except  # a gate that crashes has failed, the others still run
            problems = ['%s crashed: %s: %s' % (name, type(exc).__name__, exc)]
        seconds = time.time() - started
        results.append((name, problems, seconds))
        g.log('gate %s %s (%.0f s)' % (name, 'passed' if not problems else 'FAILED', seconds))
        for line in problems:
            g.log('    ' + line)
    return results
