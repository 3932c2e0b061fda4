# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Option families, each defined once with its doc fragment.

| family | options | doc fragment |
| --- | --- | --- |
| URI_ARGS | uri | kvm.hotplug.libvirt |
| DOMAIN_ARGS | name (required, alias domain), uri | kvm.hotplug.libvirt and kvm.hotplug.libvirt.DOMAIN |
| CHANGE_ARGS | live, config, timeout, wait_for_guest | kvm.hotplug.change |

A module builds its spec with argument_spec(its own options, families...); the timeout is checked in the runner.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import copy

URI_ARGS = dict(
    uri=dict(type='str'),
)

DOMAIN_ARGS = dict(
    name=dict(type='str', required=True, aliases=['domain']),
    **URI_ARGS
)

CHANGE_ARGS = dict(
    live=dict(type='bool', default=True),
    config=dict(type='bool', default=True),
    timeout=dict(type='int', default=60),
    wait_for_guest=dict(type='bool', default=False),
)


def argument_spec(own, *families):
    """The module's own options plus the families, as a fresh dict (own options win)."""
    spec = {}
    for family in families:
        spec.update(copy.deepcopy(family))
    spec.update(own)
    return spec


def default_params(change):
    """Every option of a Change (_common/runner.py) at its default: where a module that runs another module's
    change starts its params from."""
    spec = argument_spec(change.options, *change.option_families)
    return dict((key, option.get('default')) for key, option in spec.items())
