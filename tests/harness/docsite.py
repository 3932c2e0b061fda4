"""The collection's documentation site, `make docs` (suite.py docs): an antsibull-docs plugin and role
reference plus the guides in docs/, built with Sphinx.

The Sphinx source is assembled outside the working tree (beside the harness's copy of the collection):

    index.rst, conf.py   from docs/site/
    guides/*.md          docs/*.md, read by myst-parser
    collection/          `antsibull-docs collection --use-current --squash-hierarchy` of the copied collection

and the HTML goes to .tmp/docs/html (git-ignored). The build fails on any Sphinx warning except those that
only come from having no network (NETWORK_WARNINGS).
"""

from __future__ import annotations

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
# With network access all of these go away (the labels resolve through the ansible_devel inventory).
ANSIBLE_DOCS_LABELS = ('common_return_values', 'ansible_configuration_settings')
NETWORK_WARNINGS = (
    re.compile(r'failed to reach any of the inventories with the following issues'),
    re.compile(r"intersphinx inventory '[^']+' not fetchable due to"),
    re.compile(r"WARNING: undefined label: '(%s)' \[ref\.ref\]" % '|'.join(ANSIBLE_DOCS_LABELS)),
)


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
    problems = unexpected
    if code != 0 and not problems:
        problems = ['sphinx-build exited %d' % code]
    if not os.path.isfile(os.path.join(out, 'index.html')):
        problems.append('no index.html in %s' % out)
    return problems
