# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_migrate and the collection's own namespaced domain metadata (_libvirt/metadata.py).

libvirt migrates the domain's metadata as it is in each definition (the live
metadata with the running domain, the persistent one with the persistent
definition).  The module deliberately clears its own two records on the
destination after a successful migration:
- the TCG-unplug marker (live): it protects one QEMU process that holds
  unfinalized vCPUs; the destination runs a new QEMU process without them;
- the evacuation record (live and persistent): it names the source host's CPUs
  that pins were moved off; on another host it would put pins back onto CPUs that
  never went offline there.
What was on the source is returned in `metadata`.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import error_text, is_error, libvirt
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import etree
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.metadata import EVACUATION, TCG_HAZARD

_SCOPE_FLAGS = dict(live='VIR_DOMAIN_AFFECT_LIVE', config='VIR_DOMAIN_AFFECT_CONFIG')


def read_record(dom, namespace, scope):
    """One of the module's records in one definition, or None (also when libvirt cannot say)."""
    try:
        return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace.uri, getattr(libvirt, _SCOPE_FLAGS[scope]))
    except libvirt.libvirtError:
        return None


def clear_record(dom, namespace, scope):
    """Remove one record from one definition; returns None or libvirt's error text."""
    try:
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, namespace.uri,
                        getattr(libvirt, _SCOPE_FLAGS[scope]))
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_DOMAIN_METADATA'):
            return None
        return error_text(exc)
    return None


def our_metadata(dom, snap):
    """The module's own records on the source: the TCG-unplug marker's vCPUs and the evacuation record."""
    marker = read_record(dom, TCG_HAZARD, 'live') if snap.live is not None else None
    return dict(
        tcg_unplug_marker=etree.fromstring(marker.encode()).get('vcpus') if marker else None,
        evacuation_record=dict(live=read_record(dom, EVACUATION, 'live') if snap.live is not None else None,
                               config=read_record(dom, EVACUATION, 'config') if snap.persistent else None),
    )


def clear_our_metadata(run, ddom, report):
    """Clear the TCG-unplug marker and the evacuation record on the destination (see the module docstring)."""
    todo = []
    if run.request.live:
        todo += [('tcg_unplug_marker live', TCG_HAZARD, 'live'), ('evacuation_record live', EVACUATION, 'live')]
    if run.request.persistent:
        todo.append(('evacuation_record config', EVACUATION, 'config'))
    for label, namespace, scope in todo:
        if read_record(ddom, namespace, scope) is None:
            continue
        error = clear_record(ddom, namespace, scope)
        if error:
            report['errors'].append('%s: %s' % (label, error))
            run.warn('could not clear the %s on the destination: %s' % (label, error))
        else:
            report['cleared'].append(label)
