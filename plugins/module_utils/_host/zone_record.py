# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Remembering which zone a memory block was in when this collection took it offline.

The kernel forgets: an offlined ZONE_MOVABLE block brought back with a plain
"online" lands in ZONE_NORMAL (its default once the movable zone shrank), and
stops going offline as soon as the kernel places an unmovable allocation on it.
So host_resource_offline writes the zone of each block it offlines to a small
JSON file under /run (tmpfs: gone at reboot, when the kernel lays out its zones
afresh), with the boot id so a stale file is ignored, and onlines each block
back into that zone.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import json
import os
import tempfile

RECORD_DIRS = ('/run/kvm.hotplug', '/tmp/kvm.hotplug')
RECORD_FILE = 'memory-zones.json'
BOOT_ID = '/proc/sys/kernel/random/boot_id'


def _boot_id():
    try:
        with open(BOOT_ID) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _path():
    for directory in RECORD_DIRS:
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        except OSError:
            continue
        if os.access(directory, os.W_OK):
            return os.path.join(directory, RECORD_FILE)
    return None


def _load_all():
    path = _path()
    if path is None or not os.path.exists(path):
        return {}
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get('boot_id') != _boot_id():
        return {}
    return data.get('roots', {}) if isinstance(data.get('roots'), dict) else {}


def _save_all(roots):
    path = _path()
    if path is None:
        return False
    roots = {k: v for k, v in roots.items() if v}
    fd, tmp = tempfile.mkstemp(prefix='.memory-zones.', dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, 'w') as handle:
            json.dump(dict(boot_id=_boot_id(), roots=roots), handle, sort_keys=True)
        os.rename(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True


def _key(sysfs_root):
    return os.path.realpath(sysfs_root)


def recorded_zones(sysfs_root):
    """{block id: zone} recorded for this sysfs tree in this boot."""
    entries = _load_all().get(_key(sysfs_root), {})
    result = {}
    for block, zone in entries.items():
        if isinstance(block, str) and block.isdigit() and isinstance(zone, str):
            result[int(block)] = zone
    return result


def remember_zones(sysfs_root, zones):
    """Add {block id: zone} for this tree; returns whether the record could be written."""
    if not zones:
        return True
    roots = _load_all()
    entry = roots.setdefault(_key(sysfs_root), {})
    entry.update({str(b): z for b, z in zones.items()})
    return _save_all(roots)


def forget_zones(sysfs_root, blocks):
    roots = _load_all()
    entry = roots.get(_key(sysfs_root))
    if not entry:
        return True
    for block in blocks:
        entry.pop(str(block), None)
    return _save_all(roots)
