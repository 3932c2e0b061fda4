# Sphinx configuration of the kvm.hotplug documentation site (`make docs`, tests/harness/docsite.py).
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# The source tree is assembled by the build: index.rst from here, the guides (docs/*.md) in guides/, and
# the plugin and role reference that `antsibull-docs collection --squash-hierarchy` writes in collection/.

project = 'kvm.hotplug'
copyright = 'kvm.hotplug contributors'  # pylint: disable=redefined-builtin
title = 'kvm.hotplug'
html_short_title = 'kvm.hotplug'

# sphinx_antsibull_ext renders the reference antsibull-docs writes; myst_parser reads the Markdown guides.
extensions = ['sphinx.ext.intersphinx', 'sphinx_antsibull_ext', 'myst_parser']
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
myst_heading_anchors = 3
myst_enable_extensions = ['colon_fence']

pygments_style = 'ansible'
highlight_language = 'YAML+Jinja'

html_theme = 'sphinx_ansible_theme'
html_show_sphinx = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False
html_theme_options = {'collapse_navigation': False, 'display_version': False}
html_context = {'display_github': False}

# References to the Ansible documentation (ansible.builtin plugins, keywords) resolve through Ansible's
# intersphinx inventory, fetched at build time. Without network access (as on the project's machines and CI)
# Sphinx warns that it cannot fetch it, and those references are then rendered without a link; docsite.py
# accepts exactly those warnings (NETWORK_WARNINGS there) and fails the build on any other.
intersphinx_mapping = {
    'python3': ('https://docs.python.org/3/', None),
    'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/', None),
}
intersphinx_timeout = 10

default_role = 'any'
nitpicky = True
