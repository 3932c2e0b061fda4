# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Scope: which definition of a domain a change goes to, 'live' (the running domain) or 'config' (the persistent one).

One word for it everywhere, and one resolver, so every module refuses and warns in the same words.
Pure: the flags and the reading of one definition through libvirt are in _libvirt/scope.py.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError

LIVE = 'live'
CONFIG = 'config'
SCOPES = (LIVE, CONFIG)


def scope_words(scope):
    """How messages name a scope: 'the live domain' or 'the persistent config'."""
    return 'the live domain' if scope == LIVE else 'the persistent config'


def resolve_scopes(snapshot, live, config, warn):
    """The scopes (in order: live first) that the options live and config can change on the domain read in snapshot.

    A scope the domain does not have (live on a domain that is not running, config on a transient one) is
    ignored with a warning when the other scope is asked for too, and refused when it is the only one.
    snapshot needs name, state, active and persistent; warn is called with each warning.
    """
    name = snapshot.name
    if not live and not config:
        raise HotplugError('nothing to change on domain %s: live and config are both false' % name)
    scopes = []
    if live:
        if snapshot.active:
            scopes.append(LIVE)
        elif config:
            warn('domain %s is %s: live is ignored, only the persistent config is changed' % (name, snapshot.state))
        else:
            raise HotplugError('domain %s is %s: live changes need a running domain (set config: true to change '
                               'the persistent definition instead)' % (name, snapshot.state))
    if config:
        if snapshot.persistent:
            scopes.append(CONFIG)
        elif scopes:
            warn('domain %s is transient: config is ignored, only the running domain is changed' % name)
        else:
            raise HotplugError('domain %s is transient: it has no persistent config to change' % name)
    return tuple(scopes)
