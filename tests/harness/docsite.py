"""The collection's documentation site, `make docs` (suite.py docs): an antsibull-docs plugin and role
reference plus the guides in docs/, built with Sphinx.

The Sphinx source is assembled outside the working tree (beside the harness's copy of the collection):

    index.rst, conf.py   from docs/site/
    guides/*.md          docs/*.md, read by myst-parser
    guides/images/       docs/images/ (the plots docs/performance.md shows)
    collection/          `antsibull-docs collection --use-current --squash-hierarchy` of the copied collection

and the HTML goes to .tmp/docs/html (git-ignored). The build fails on any Sphinx warning except those that
only come from having no network (NETWORK_WARNINGS), when docs/troubleshooting.md misses a message the
modules can fail with, and when a complete example of a guide (a ```yaml block starting `# file: NAME`)
does not parse, its playbook fails ansible-playbook --syntax-check, or a playbook it names as a shipped one
(playbooks/NAME) is not that playbook.
"""

from __future__ import annotations

import ast
import glob
import os
import re
import shutil

# The warnings a build gives only because it has no network (measured on this project's machines, which
# reach no documentation site), and the only ones accepted:
#   WARNING: failed to reach any of the inventories with the following issues:
#   intersphinx inventory 'https://docs.ansible.com/projects/ansible/devel/objects.inv' not fetchable due to
#   <class 'requests.exceptions.ConnectionError'>: HTTPSConnectionPool(...): Max retries exceeded ...
#   (the same for https://docs.python.org/3/objects.inv)
# and, since Ansible's inventory is missing, the references antsibull-docs writes into Ansible's own docs:
#   <module>_module.rst:N: WARNING: undefined label: 'common_return_values' [ref.ref]
#   environment_variables.rst:N: WARNING: undefined label: 'ansible_configuration_settings' [ref.ref]
# and ansible-core's own environment variables that a doc fragment of ansible-core names (the inventory_cache
# fragment of the libvirt_domains inventory plugin: ANSIBLE_CACHE_PLUGIN, ANSIBLE_CACHE_PLUGIN_CONNECTION, ...):
#   libvirt_domains_inventory.rst:N: WARNING: 'envvar' reference target not found: ANSIBLE_CACHE_PLUGIN [ref.envvar]
# With network access all of these go away (the labels resolve through the ansible_devel inventory).
ANSIBLE_DOCS_LABELS = ('common_return_values', 'ansible_configuration_settings')
NETWORK_WARNINGS = (
    re.compile(r'failed to reach any of the inventories with the following issues'),
    re.compile(r"intersphinx inventory '[^']+' not fetchable due to"),
    re.compile(r"WARNING: undefined label: '(%s)' \[ref\.ref\]" % '|'.join(ANSIBLE_DOCS_LABELS)),
    re.compile(r"WARNING: 'envvar' reference target not found: ANSIBLE_[A-Z_]+ \[ref\.envvar\]"),
)


TROUBLESHOOTING = os.path.join('docs', 'troubleshooting.md')
FORMAT = re.compile(r'%(\([a-z_]+\))?[-0-9.]*[sdrif]')


def _template(node):
    """The literal text of a message expression: 'x %s' % ..., 'a' 'b', 'a' + 'b', f-strings ('%s' for holes)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _template(node.left)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return (_template(node.left) or '%s') + (_template(node.right) or '%s')
    if isinstance(node, ast.JoinedStr):
        return ''.join(v.value if isinstance(v, ast.Constant) else '%s' for v in node.values)
    return None


def refusal_templates(tree):
    """Every message a module can fail with, as (path:line, template), read from the plugins' source:
    HotplugError(msg), fail_json(msg=...), the refusal reasons joined into one (problems/reasons.append),
    and the failure texts helper functions return (strings of six words or more about a domain or guest)."""
    found = []
    for path in sorted(glob.glob(os.path.join(tree, 'plugins', '**', '*.py'), recursive=True)):
        for node in ast.walk(ast.parse(open(path).read())):
            exprs = []
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ''
                if name == 'HotplugError' and node.args:
                    exprs = node.args[:1]
                elif name == 'fail_json':
                    exprs = [k.value for k in node.keywords if k.arg == 'msg']
                elif (name == 'append' and isinstance(func.value, ast.Name)
                      and func.value.id in ('problems', 'reasons')):
                    exprs = node.args[:1]
            elif isinstance(node, ast.Return) and node.value is not None:
                text = _template(node.value)
                if text and re.search(r'\b(domain|guest)\b', text) and len(text.split()) >= 6:
                    exprs = [node.value]
            for expr in exprs:
                text = _template(expr)
                # messages that are only holes and punctuation ('%s: %s') say nothing of their own
                if text and len(re.sub(r'[^A-Za-z]', '', FORMAT.sub('', text))) >= 4:
                    found.append(('%s:%d' % (os.path.relpath(path, tree), node.lineno), text))
    return found


def undocumented_refusals(tree):
    """The module messages docs/troubleshooting.md does not show (each must match within one line of it,
    its placeholders written as anything, for example <name>)."""
    lines = [re.sub(r'\s+', ' ', line) for line in open(os.path.join(tree, TROUBLESHOOTING))]
    missing = []
    for where, text in refusal_templates(tree):
        pieces = [re.escape(re.sub(r'\s+', ' ', p)) for p in FORMAT.split(text) if p and not p.startswith('(')]
        pattern = re.compile('.*?'.join(p for p in pieces if p.strip()))
        if not any(pattern.search(line) for line in lines):
            missing.append('%s: %s is not in %s: %r' % (where, 'this message', TROUBLESHOOTING, text))
    return missing


def example_files(tree):
    """The files the guides spell out whole: ```yaml blocks whose first line is `# file: NAME`, per page."""
    pages = {}
    for page in sorted(glob.glob(os.path.join(tree, 'docs', '*.md'))):
        blocks = re.findall(r'```ya?ml\n# file: (\S+)\n(.*?)```', open(page).read(), re.S)
        if blocks:
            pages[os.path.relpath(page, tree)] = blocks
    return pages


def check_examples(tree, scratch, run_tool, tool):
    """Each page's example files parse, each playbook among them passes --syntax-check with each
    inventory of the same page (with the collection of the tree), and one named as a shipped playbook
    (playbooks/NAME) is that playbook, comments aside."""
    import yaml
    problems = []
    for page, blocks in example_files(tree).items():
        folder = os.path.join(scratch, 'examples', os.path.splitext(os.path.basename(page))[0])
        os.makedirs(folder, exist_ok=True)
        playbooks, inventories = [], []
        for name, text in blocks:
            with open(os.path.join(folder, name), 'w') as handle:
                handle.write(text)
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                problems.append('%s: %s does not parse: %s' % (page, name, str(exc).splitlines()[0]))
                continue
            (playbooks if isinstance(data, list) else inventories).append(name)
            shipped = os.path.join(tree, 'playbooks', name)
            if isinstance(data, list) and os.path.isfile(shipped):
                with open(shipped) as handle:
                    if yaml.safe_load(handle) != data:
                        problems.append('%s: %s differs from playbooks/%s' % (page, name, name))
        for playbook in playbooks:
            for inventory in inventories or ['localhost,']:
                code, output = run_tool([tool('ansible-playbook'), '--syntax-check', '-i', inventory, playbook],
                                        folder, echo=False)
                if code != 0:
                    problems.append('%s: ansible-playbook --syntax-check -i %s %s: %s'
                                    % (page, inventory, playbook, output.strip().splitlines()[-1:]))
    return problems


def assemble(tree, src, run_tool, tool):
    """Write the Sphinx source tree into src; return (code, output) of antsibull-docs."""
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(os.path.join(src, 'collection'), mode=0o700)
    os.chmod(src, 0o700)  # antsibull-docs wants its destination writable by its owner only
    os.chmod(os.path.join(src, 'collection'), 0o700)
    site = os.path.join(tree, 'docs', 'site')
    shutil.copy2(os.path.join(site, 'index.rst'), src)
    os.makedirs(os.path.join(src, 'guides'))
    for guide in sorted(glob.glob(os.path.join(tree, 'docs', '*.md'))):
        shutil.copy2(guide, os.path.join(src, 'guides'))
    if os.path.isdir(os.path.join(tree, 'docs', 'images')):
        shutil.copytree(os.path.join(tree, 'docs', 'images'), os.path.join(src, 'guides', 'images'))
    return run_tool([tool('antsibull-docs'), 'collection', '--use-current', '--squash-hierarchy', '--fail-on-error',
                     '--dest-dir', os.path.join(src, 'collection'), 'kvm.hotplug'], src)


def build(tree, scratch, out, run_tool, tool, log):
    """Build the site into out; return the problems (unexpected warnings, failures), one line each."""
    src = os.path.join(scratch, 'docs-src')
    code, output = assemble(tree, src, run_tool, tool)
    if code != 0:
        return ['antsibull-docs collection exited %d: %s' % (code, output.strip()[-300:])]
    warnings_file = os.path.join(scratch, 'sphinx-warnings.txt')
    shutil.rmtree(out, ignore_errors=True)
    code, output = run_tool([tool('sphinx-build'), '-b', 'html', '-c', os.path.join(tree, 'docs', 'site'), '-q',
                             '--keep-going', '-w', warnings_file, src, out], src)
    warnings = [line.rstrip() for line in open(warnings_file)] if os.path.isfile(warnings_file) else []
    unexpected = [w for w in warnings if w.strip() and not any(p.search(w) for p in NETWORK_WARNINGS)]
    expected = len(warnings) - len(unexpected)
    log('docs: %s (%d warnings from having no network, %d others)'
        % (os.path.join(out, 'index.html'), expected, len(unexpected)))
    problems = unexpected + undocumented_refusals(tree) + check_examples(tree, scratch, run_tool, tool)
    if code != 0 and not problems:
        problems = ['sphinx-build exited %d' % code]
    if not os.path.isfile(os.path.join(out, 'index.html')):
        problems.append('no index.html in %s' % out)
    return problems
