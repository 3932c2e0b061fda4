# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_migrate's outcomes: where the domain ended up, named from the migration call and both hosts re-read.

Pure: the Attempt of apply.py and the host states of verify.py in, an outcome
and its one-line failure message out.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

MIGRATED = 'migrated'
ABORTED = 'aborted'
POSTCOPY = 'postcopy'
FAILED_SOURCE_RUNNING = 'failed_source_running'
# Not one of the outcomes the module aims for: after a failure the domain is not (only) running on the source.
FAILED = 'failed'
CHECK_MODE = 'check_mode'
# The outcomes after which the domain runs (live) or is defined (live: false) on the destination.
MOVED = (MIGRATED, POSTCOPY)


def decide_outcome(request, attempt, hosts):
    src, dst = hosts['source'], hosts['destination']
    src_running = bool(src.get('active'))
    dst_running = bool(dst.get('active'))
    if attempt.ok:
        arrived = dst_running if request.live else bool(dst.get('defined'))
        if arrived and not src_running:
            if attempt.timeout_action == 'postcopy' and not attempt.timeout_action_error:
                return POSTCOPY
            return MIGRATED
        return FAILED
    if request.live and src_running and not dst_running:
        if attempt.timeout_action == 'abort' and not attempt.timeout_action_error:
            return ABORTED
        return FAILED_SOURCE_RUNNING
    if not request.live and src.get('defined') and not dst.get('defined'):
        return FAILED_SOURCE_RUNNING
    return FAILED


def failure_message(request, outcome, attempt, hosts):
    name, dest = request.name, request.dest_uri
    where = 'source %s, destination %s' % (_where(hosts['source']), _where(hosts['destination']))
    if outcome == ABORTED:
        return ('migration of domain %s to %s aborted after the timeout of %d s; it is still running on the source '
                'and not on the destination (%s)' % (name, dest, request.timeout, where))
    if outcome == FAILED_SOURCE_RUNNING:
        return ('migration of domain %s to %s failed: %s; it is still %s on the source and %s (%s)'
                % (name, dest, attempt.error or 'the destination does not run it',
                   'running' if request.live else 'defined',
                   'not on the destination' if hosts['destination'].get('reachable')
                   else 'the destination daemon cannot be asked', where))
    return ('migration of domain %s to %s failed (%s), and the domain is not running on the source alone: %s'
            % (name, dest, attempt.error or 'libvirt reported success', where))


def placement(hosts):
    """Defined or not and state, on both hosts: a failure that changed it is still a change."""
    return tuple((hosts[side].get('defined'), hosts[side].get('state')) for side in ('source', 'destination'))


def _where(state):
    if state.get('reachable') is False:
        return 'unreachable'
    if not state.get('defined'):
        return 'not defined'
    return state.get('state') or '?'
