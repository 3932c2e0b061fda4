# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Memory sizes: user strings ("1536MiB", "2GiB", 512) and libvirt XML units, all to KiB.

libvirt reports memory in KiB, so KiB is the internal unit everywhere in this
collection.  Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import re

# libvirt's unit names (docs: formatdomain.html#memory-allocation); "b"/"bytes" are bytes,
# k/KiB are 1024, KB is 1000, and so on.  Case matters for the decimal/binary split
# in libvirt, but users write "mb" and mean MiB often enough that we accept the
# binary meaning for lower-case forms, as libvirt itself does for "k", "m", "g".
_BYTES_PER_UNIT = {
    'b': 1, 'bytes': 1,
    'k': 1024, 'kib': 1024, 'KiB': 1024, 'KB': 1000,
    'm': 1024 ** 2, 'mib': 1024 ** 2, 'MiB': 1024 ** 2, 'MB': 1000 ** 2,
    'g': 1024 ** 3, 'gib': 1024 ** 3, 'GiB': 1024 ** 3, 'GB': 1000 ** 3,
    't': 1024 ** 4, 'tib': 1024 ** 4, 'TiB': 1024 ** 4, 'TB': 1000 ** 4,
}

_SIZE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$')


def unit_to_bytes(unit):
    """Bytes in one libvirt/user unit; raises ValueError for an unknown unit."""
    if unit in _BYTES_PER_UNIT:
        return _BYTES_PER_UNIT[unit]
    if unit.lower() in _BYTES_PER_UNIT:
        return _BYTES_PER_UNIT[unit.lower()]
    raise ValueError('unknown size unit %r (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)' % unit)


def parse_size_kib(value, default_unit='MiB'):
    """Parse a user size into KiB.  Plain numbers are in default_unit (MiB).

    "1536MiB", "2GiB", "2G", "512" (MiB) and 512 are accepted; the result must be
    a whole number of KiB, otherwise ValueError says so.
    """
    if isinstance(value, bool):
        raise ValueError('size %r is not a number with a unit' % (value,))
    if isinstance(value, int):
        number, unit = value, default_unit
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError('size %r is not a number with an optional unit, e.g. "1536MiB" or "2GiB"' % (value,))
        number = float(match.group(1)) if '.' in match.group(1) else int(match.group(1))
        unit = match.group(2) or default_unit
    total_bytes = number * unit_to_bytes(unit)
    if total_bytes < 0:
        raise ValueError('size %r is negative' % (value,))
    if total_bytes % 1024:
        raise ValueError('size %r is not a whole number of KiB' % (value,))
    return int(total_bytes // 1024)


def xml_size_kib(text, unit='KiB'):
    """Convert a number read from libvirt XML, with its unit attribute, to KiB."""
    return int(int(text) * unit_to_bytes(unit or 'KiB') // 1024)


def kib_to_mib(kib):
    """KiB to MiB for results: an int when exact, else a float rounded to 3 places."""
    if kib is None:
        return None
    if kib % 1024 == 0:
        return kib // 1024
    return round(kib / 1024.0, 3)


def format_kib(kib):
    """Human text for messages: 1572864 -> "1536 MiB", 2097152 -> "2 GiB"."""
    if kib % (1024 * 1024) == 0 and kib:
        return '%d GiB' % (kib // (1024 * 1024))
    if kib % 1024 == 0:
        return '%d MiB' % (kib // 1024)
    return '%d KiB' % kib
