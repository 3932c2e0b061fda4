# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""CPU list strings ("0-3,5", libvirt's "0-7,^2") to sorted id tuples and back.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import re

_ITEM = re.compile(r'^(\^)?(\d+)(?:-(\d+))?$')


def parse_cpulist(text, allow_exclusion=True):
    """Return the ids named by a list string as a sorted tuple of ints.

    Accepts the kernel's sysfs format ("0-3,8") and libvirt's cpuset format,
    which may exclude ids with "^" ("0-7,^2").  Anything else (names, paths,
    negative numbers, reversed ranges) raises ValueError with the bad item named.
    """
    if text is None:
        return ()
    text = str(text).strip()
    if not text:
        return ()
    included = set()
    excluded = set()
    for raw_item in text.split(','):
        item = raw_item.strip()
        match = _ITEM.match(item)
        if not match or (match.group(1) and not allow_exclusion):
            raise ValueError('%r is not a CPU id or id range (expected forms: "3", "2-5", "0-3,8")' % item)
        first = int(match.group(2))
        last = int(match.group(3)) if match.group(3) is not None else first
        if last < first:
            raise ValueError('range %r is reversed' % item)
        (excluded if match.group(1) else included).update(range(first, last + 1))
    return tuple(sorted(included - excluded))


def format_cpulist(ids):
    """Return the compact list string for ids: (0, 1, 2, 3, 5) -> "0-3,5"."""
    ordered = sorted(set(int(i) for i in ids))
    parts = []
    start = previous = None
    for current in ordered:
        if start is None:
            start = previous = current
        elif current == previous + 1:
            previous = current
        else:
            parts.append(_range_text(start, previous))
            start = previous = current
    if start is not None:
        parts.append(_range_text(start, previous))
    return ','.join(parts)


def _range_text(first, last):
    return str(first) if first == last else '%d-%d' % (first, last)


def normalize_id_list(value, what='id'):
    """Turn a module option that is a list of ints/strings or a list string into sorted ids.

    Strings may be ranges ("2-5,8"); every element must be a plain number or
    range, so names such as "../cpu0" are refused with a ValueError.
    """
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    ids = set()
    for item in items:
        if isinstance(item, bool):
            raise ValueError('%s %r is not a number' % (what, item))
        if isinstance(item, int):
            if item < 0:
                raise ValueError('%s %d is negative' % (what, item))
            ids.add(item)
            continue
        try:
            ids.update(parse_cpulist(str(item), allow_exclusion=False))
        except ValueError as exc:
            raise ValueError('%s %s' % (what, exc))
    return tuple(sorted(ids))
