# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""CPU list strings ("0-3,5", libvirt's "0-7,^2") to sorted id tuples and back.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import re

# One item of a list: "3", "2-5", or (libvirt cpusets only) "^2".  [0-9], not \d: no other digits.
_ITEM = re.compile(r'^(\^)?([0-9]+)(?:-([0-9]+))?$')
CPU_ID_WORDS = 'a CPU id or id range (expected forms: "3", "2-5", "0-3,8")'


def _item_range(item, allow_exclusion, what, expected):
    """(excluded, first, last) of one list item, or ValueError naming it."""
    match = _ITEM.match(item)
    if not match or (match.group(1) and not allow_exclusion):
        raise ValueError('%s%r is not %s' % (what, item, expected))
    first = int(match.group(2))
    last = int(match.group(3)) if match.group(3) is not None else first
    if last < first:
        raise ValueError('%srange %r is reversed' % (what, item))
    return bool(match.group(1)), first, last


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
        exclude, first, last = _item_range(raw_item.strip(), allow_exclusion, '', CPU_ID_WORDS)
        (excluded if exclude else included).update(range(first, last + 1))
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


def parse_id_list(value, what='id', limit=None, expected=CPU_ID_WORDS):
    """The ids a module option names: a list of ints or strings, or a list string, each a number or a range ("2-5,8").

    Anything else (names such as "../cpu0", signs, floats, booleans) raises ValueError naming the bad item,
    with `what` in front ("vCPU", "memory block") and `expected` saying what an item may be.  With a limit
    (one more than the highest id that exists), ranges are cut at it before they are expanded, so
    "0-999999999" allocates nothing.  Returns (sorted ids below the limit, the ids at or above it as a list string).
    """
    if value is None:
        return (), ''
    items = value if isinstance(value, (list, tuple)) else [value]
    prefix = '%s ' % what
    ids = set()
    unknown = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ValueError('%s%r is not %s' % (prefix, item, expected))
        if isinstance(item, int):
            if item < 0:
                raise ValueError('%s%d is negative' % (prefix, item))
            ranges = [(item, item)]
        else:
            ranges = [_item_range(part.strip(), False, prefix, expected)[1:] for part in item.split(',')]
        for first, last in ranges:
            if limit is None or first < limit:
                ids.update(range(first, (last if limit is None else min(last, limit - 1)) + 1))
            if limit is not None and last >= limit:
                unknown.append((max(first, limit), last))
    return tuple(sorted(ids)), ','.join(str(a) if a == b else '%d-%d' % (a, b) for a, b in sorted(unknown))


def normalize_id_list(value, what='id'):
    """parse_id_list without a limit: the sorted ids only."""
    return parse_id_list(value, what)[0]
