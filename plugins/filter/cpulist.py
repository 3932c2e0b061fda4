# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters between CPU list strings ("0-3,8") and lists of ids."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_cpulist


def expand_cpulist(value):
    """'0-3,8' -> [0, 1, 2, 3, 8]."""
    try:
        return list(parse_cpulist(value))
    except ValueError as exc:
        raise AnsibleFilterError('expand_cpulist: %s' % exc)


def to_cpulist(value):
    """[0, 1, 2, 3, 8] -> '0-3,8'."""
    try:
        return format_cpulist(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError('to_cpulist: %s' % exc)


class FilterModule(object):
    def filters(self):
        return dict(expand_cpulist=expand_cpulist, to_cpulist=to_cpulist)
