# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.hotplug.edac_errors: an ansible-rulebook event source for the host's failing memory and CPUs.

The counting is the collection's own, plugins/module_utils/_host/edac_rate.py, shared with the
serviceability role; this file only polls, keeps the state file and puts the events on the queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time

DOCUMENTATION = r"""
---
short_description: An event for each DIMM or CPU whose EDAC error counters cross a threshold
description:
  - Polls the kernel's EDAC counters of the host it runs on (memory controllers, their DIMMs, ranks or csrows,
    and the cpu EDAC device where the platform has one) every O(interval) seconds.
  - Puts one event on the queue for each component with at least O(threshold) corrected errors within the last
    O(window_hours) hours, or with any uncorrected error, counted by the collection's planner
    (C(plugins/module_utils/_host/edac_rate.py)), the one the C(kvm.hotplug.serviceability) role uses.
  - EDAC only gives totals since the last counter reset, so the earlier readings are kept in O(state_file);
    a total that goes down is a counter reset, and the errors since it count.
  - The controllers show when their counters were last reset (C(seconds_since_reset)); when that falls inside
    the window, the errors since then count from the first reading.  The cpu EDAC device shows no such time,
    so its first reading is only the baseline.
  - A component is announced again only when its counters change; one that falls back below the threshold
    is forgotten, so it is announced again when it crosses again.
  - "The event is C({kvm_hotplug: {event: edac_errors, host, component: {key, kind, id, controller, label,
    location, covers, mapping}, counters: {ce, ue}, corrected_in_window, uncorrected, reason, threshold,
    window_hours}, meta: {hosts: HOST}})."
options:
  sysfs_root:
    description: The sysfs tree to read, V(/sys) on a real host.
    type: str
    default: /sys
  interval:
    description: Seconds between two readings.
    type: float
    default: 60
  threshold:
    description: Corrected errors of one component within O(window_hours) that make an event.
    type: int
    default: 50
  window_hours:
    description: The window the corrected errors are counted in.
    type: float
    default: 24
  state_file:
    description:
      - Where the earlier readings are kept (JSON), so that a restart keeps counting.
      - When not set they are kept in memory only, and the first reading after a start counts only the errors
        since the controller's last counter reset when that falls inside the window.
    type: str
  host:
    description: The host name the events carry in C(meta.hosts), the hypervisor's inventory name.
    type: str
    default: the machine's host name
  rasdaemon_db:
    description:
      - rasdaemon's event database; when it recorded the physical addresses of a DIMM's errors, the event
        names the memory blocks holding them (C(component.mapping.level=memory_block)).
    type: str
"""

EXAMPLES = r"""
- kvm.hotplug.edac_errors:
    interval: 60
    threshold: 50
    window_hours: 24
    state_file: /var/lib/kvm-hotplug/edac_errors.json
"""

DEFAULTS = dict(sysfs_root='/sys', interval=60.0, threshold=50, window_hours=24.0, state_file=None, host=None,
                rasdaemon_db=None)


def _collection_modules():
    """The collection's module_utils this source shares with the role.

    ansible-rulebook runs this file with runpy, so the collection root (the directory holding
    ansible_collections/) is on sys.path only when something put it there.  It is found from this file's
    own place in the collection, else from ANSIBLE_COLLECTIONS_PATH.
    """
    try:
        return _import_modules()
    except ImportError:
        pass
    here = os.path.abspath(__file__)
    # .../ansible_collections/kvm/hotplug/extensions/eda/plugins/event_source/edac_errors.py
    candidates = [os.path.join(here, *([os.pardir] * 8))]
    for entry in os.environ.get('ANSIBLE_COLLECTIONS_PATH', os.environ.get('ANSIBLE_COLLECTIONS_PATHS', '')).split(
            os.pathsep):
        if entry:
            candidates.extend([entry, os.path.join(entry, os.pardir)])
    for candidate in candidates:
        root = os.path.normpath(candidate)
        if os.path.isdir(os.path.join(root, 'ansible_collections', 'kvm', 'hotplug')) and root not in sys.path:
            sys.path.append(root)
    return _import_modules()


def _import_modules():
    # pylint: disable=import-outside-toplevel
    from ansible_collections.kvm.hotplug.plugins.module_utils._common import errors
    from ansible_collections.kvm.hotplug.plugins.module_utils._host import edac, edac_rate, sysfs
    return errors, edac, edac_rate, sysfs


errors, edac, edac_rate, sysfs = _collection_modules()


def settings_from(args):
    """The source's arguments with their defaults, checked before the first reading."""
    unknown = sorted(set(args or {}) - set(DEFAULTS))
    if unknown:
        raise ValueError('kvm.hotplug.edac_errors: unknown arguments %s' % ', '.join(unknown))
    out = dict(DEFAULTS, **{k: v for k, v in (args or {}).items() if v is not None})
    out['interval'] = float(out['interval'])
    out['threshold'] = int(out['threshold'])
    out['window_hours'] = float(out['window_hours'])
    if out['interval'] <= 0:
        raise ValueError('kvm.hotplug.edac_errors: interval must be above 0, got %r' % out['interval'])
    if out['threshold'] < 1 or out['window_hours'] <= 0:
        raise ValueError('kvm.hotplug.edac_errors: threshold must be at least 1 and window_hours above 0')
    out['host'] = out['host'] or socket.gethostname()
    return out


def read_components(settings, now):
    """The host's EDAC components now, each with what it covers (blocks, nodes, CPUs)."""
    tree = sysfs.SysfsTree(settings['sysfs_root'])
    readings = edac.read_edac(tree)
    try:
        host = sysfs.read_host(tree)
    except errors.HotplugError:
        host = None     # no CPU tree: the counters are still reported, without what they cover
    if host is not None:
        rasdaemon = (edac.read_rasdaemon(settings['rasdaemon_db'], host.memory) if settings['rasdaemon_db']
                     else dict(available=False))
        edac.analyze(host, readings, rasdaemon)
    return edac_rate.components_from_edac(readings, edac.read_edac_cpus(tree), now=now)


def poll_once(settings, state, now):
    """One reading: (the events to put, the state to keep).  Blocking: run it in an executor."""
    components = read_components(settings, now)
    plan = edac_rate.plan_detection(components, state.get('readings', []), now, settings['threshold'],
                                    settings['window_hours'])
    announced = state.get('announced', {})
    events = []
    for finding in plan['findings']:
        if announced.get(finding['key']) == finding['counters']:
            continue    # announced already with these counters
        events.append(event_of(finding, settings))
    # forget what no longer crosses, so that it is announced when it crosses again
    announced = {f['key']: f['counters'] for f in plan['findings']}
    return events, dict(readings=plan['state'], announced=announced)


def event_of(finding, settings):
    component = {k: finding.get(k) for k in ('key', 'kind', 'id', 'controller', 'label', 'location', 'covers',
                                             'mapping')}
    return dict(kvm_hotplug=dict(event='edac_errors', host=settings['host'], component=component,
                                 counters=finding['counters'], corrected_in_window=finding['corrected_in_window'],
                                 uncorrected=finding['uncorrected'], reason=finding['reason'],
                                 threshold=settings['threshold'], window_hours=settings['window_hours']),
                meta=dict(hosts=settings['host']))


def load_state(path):
    """The state file's content; an absent or unreadable file starts afresh (the planner skips bad entries)."""
    if not path:
        return {}
    try:
        with open(path) as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def save_state(path, state):
    """Write the state file whole (a new file renamed over the old), so a crash never leaves half of it."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = '%s.%d.tmp' % (path, os.getpid())
    with open(temporary, 'w') as handle:
        json.dump(state, handle, sort_keys=True)
    os.replace(temporary, path)


def _poll_and_keep(settings, state):
    events, state = poll_once(settings, state, time.time())
    save_state(settings['state_file'], state)
    return events, state


async def main(queue, args):
    """Poll forever; never returns (ansible-rulebook cancels it)."""
    settings = settings_from(args)
    loop = asyncio.get_running_loop()
    state = await loop.run_in_executor(None, load_state, settings['state_file'])
    while True:
        events, state = await loop.run_in_executor(None, _poll_and_keep, settings, state)
        for event in events:
            await queue.put(event)
        await asyncio.sleep(settings['interval'])
