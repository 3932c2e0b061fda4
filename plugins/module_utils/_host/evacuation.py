# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Planning to move libvirt domains' pinning off host CPUs that are about to go offline, and back.

A domain's threads are "pinned" when its definition restricts them: a
<vcpupin>, <emulatorpin> or <iothreadpin>, the <vcpu cpuset> default, or
<vcpu placement='auto'> (numad).  Domains with none of these run on any online
CPU: the kernel moves their threads when a CPU goes offline, and they need no re-pinning.

Evacuating CPUs X from a pinned thread whose set is P:
- P without X when that is not empty;
- else the domain's fallback set: its <vcpu cpuset> without X (when it has one),
  otherwise every host CPU that stays online and is not isolated (isolcpus);
- when the fallback set is empty, the domain would have no CPU to run on, and
  the whole task is refused before anything changes.  A <vcpu cpuset> made only
  of CPUs in X is refused the same way.

Live and persistent definitions (scopes) are planned separately.  What was moved is
recorded in the domain's metadata (_libvirt/metadata.py EVACUATION) so that repin_on_online
can put each pin back exactly as it was once all its CPUs are online again.
Pure: reading and changing the pinning through libvirt is _host/pins.py.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._common.scope import SCOPES
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import etree
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.snapshot import DomainSummary

# numatune modes that keep a domain's memory on its nodes; 'preferred' lets it fall back elsewhere.
BINDING_MODES = ('strict', 'restrictive', 'interleave')


def thread_name(kind, ident):
    return kind if ident is None else '%s %d' % (kind, ident)


@dataclass
class ScopePins:
    """One definition (live or config) of one domain: what is pinned where, and the evacuation record."""
    cpuset: tuple | None = None                 # <vcpu cpuset>
    placement: str = 'static'
    pins: dict = field(default_factory=dict)    # (kind, id) -> (source, cpus)
    unpinned: list = field(default_factory=list)  # thread names with no restriction
    record: dict = field(default_factory=dict)  # (kind, id) -> (original cpus, evacuated_to cpus)

    def pinned_view(self):
        return {thread_name(k, i): format_cpulist(cpus) for (k, i), (_s, cpus) in sorted(self.pins.items(), key=_key)}


def _key(item):
    (kind, ident), _value = item
    return ({'vcpu': 0, 'emulator': 1, 'iothread': 2}.get(kind, 3), -1 if ident is None else ident)


@dataclass
class DomainPins(DomainSummary):
    """One domain's pinning in each of its definitions (scopes), and whether a migration moves it right now."""
    migrating: bool
    job_operation: str | None
    scopes: dict                                # scope -> ScopePins
    bound_nodes: tuple = ()                     # host NUMA nodes its running memory is bound to
    dom: object = None

    @property
    def pinned(self):
        return any(s.pins for s in self.scopes.values())


@dataclass
class PinChange:
    scope: str
    kind: str
    id: int | None
    source: str
    before: tuple
    after: tuple
    fallback: bool = False
    reason: str = ''

    @property
    def thread(self):
        return thread_name(self.kind, self.id)

    def to_dict(self):
        return dict(scope=self.scope, thread=self.thread, source=self.source, before=format_cpulist(self.before),
                    after=format_cpulist(self.after), fallback=self.fallback, reason=self.reason)


@dataclass
class DomainChange:
    domain: DomainPins
    changes: list
    records_after: dict                         # scope -> {(kind, id): (original, evacuated_to)}
    notes: list = field(default_factory=list)

    def to_dict(self):
        return dict(name=self.domain.name, state=self.domain.state,
                    changes=[c.to_dict() for c in self.changes], notes=list(self.notes))

    def views(self):
        """(before, after) pinning per scope for diff output."""
        before = {}
        after = {}
        for scope in sorted(set(c.scope for c in self.changes)):
            current = self.domain.scopes[scope].pinned_view()
            new = dict(current)
            for change in self.changes:
                if change.scope == scope:
                    current.setdefault(change.thread, format_cpulist(change.before))
                    new[change.thread] = format_cpulist(change.after)
            before[scope] = current
            after[scope] = new
        return before, after


def _record_order(item):
    (kind, ident), _value = item
    return kind, ident or -1


def parse_record(text):
    if not text or etree is None:
        return {}
    try:
        root = etree.fromstring(text.encode('utf-8') if isinstance(text, str) else text)
    except etree.XMLSyntaxError:
        return {}
    record = {}
    for pin in root.findall('pin'):
        try:
            ident = pin.get('id')
            key = (pin.get('kind'), int(ident) if ident not in (None, '') else None)
            record[key] = (parse_cpulist(pin.get('original')), parse_cpulist(pin.get('evacuated_to')))
        except (TypeError, ValueError):
            continue
    return record


def format_record(record):
    """The metadata element for a record; None when the record is empty (the element is then removed)."""
    if not record:
        return None
    lines = ['<evacuation>']
    for (kind, ident), (original, moved) in sorted(record.items(), key=_record_order):
        lines.append('  <pin kind="%s"%s original="%s" evacuated_to="%s"/>'
                     % (kind, '' if ident is None else ' id="%d"' % ident, format_cpulist(original),
                        format_cpulist(moved)))
    lines.append('</evacuation>')
    return '\n'.join(lines)


def bound_nodes_map(domains):
    """{host node: [running domains whose memory numatune binds them to it]}."""
    result = {}
    for domain in domains:
        for node in domain.bound_nodes:
            result.setdefault(node, []).append(domain.name)
    return result


@dataclass
class EvacuationPlan:
    changes: list                               # DomainChange
    unpinned: list                              # names of domains with no pinning at all
    unaffected: list                            # pinned, but not to the CPUs concerned
    refusals: list = field(default_factory=list)

    @property
    def changed_domains(self):
        return [c.domain.name for c in self.changes]


def fallback_cpus(scope_pins, offlined, online_after, isolated):
    if scope_pins.cpuset:
        return tuple(sorted((set(scope_pins.cpuset) - set(offlined)) & set(online_after)))
    return tuple(sorted(set(online_after) - set(isolated)))


def plan_evacuation(domains, offlined, online_after, isolated=()):
    """Plan moving every pinned thread off `offlined`; HotplugError listing every domain that would have no CPU."""
    offlined = set(offlined)
    plan = EvacuationPlan(changes=[], unpinned=[], unaffected=[])
    problems = []
    for domain in domains:
        if not domain.pinned:
            plan.unpinned.append(domain.name)
            continue
        domain_changes, records, notes = [], {}, []
        for scope, pins in _definitions(domain):
            record = dict(pins.record)
            fallback = fallback_cpus(pins, offlined, online_after, isolated)
            if pins.cpuset and not (set(pins.cpuset) - offlined):
                problems.append('domain %s (%s): its <vcpu cpuset> %s has no CPU left once CPU %s go offline'
                                % (domain.name, scope, format_cpulist(pins.cpuset), format_cpulist(offlined)))
                continue
            for (kind, ident), (source, cpus) in sorted(pins.pins.items(), key=_key):
                if not set(cpus) & offlined:
                    continue
                remaining = tuple(sorted(set(cpus) - offlined))
                used_fallback = not remaining
                if used_fallback:
                    if not fallback:
                        why = ('its <vcpu cpuset> %s' % format_cpulist(pins.cpuset) if pins.cpuset else
                               'every CPU that stays online is isolated' if online_after else
                               'no CPU stays online')
                        problems.append('domain %s (%s): %s is pinned to CPU %s only and would have no CPU to run '
                                        'on (%s)' % (domain.name, scope, thread_name(kind, ident),
                                                     format_cpulist(cpus), why))
                        continue
                    remaining = fallback
                lost = sorted(set(cpus) & offlined)
                if used_fallback:
                    reason = 'all its CPUs go offline; moved to the %s' % (
                        'CPUs of its <vcpu cpuset> that stay online' if pins.cpuset
                        else 'host CPUs that stay online (not isolated)')
                else:
                    reason = ('CPU %s goes offline' if len(lost) == 1 else 'CPUs %s go offline') % format_cpulist(lost)
                domain_changes.append(PinChange(scope=scope, kind=kind, id=ident, source=source, before=tuple(cpus),
                                                after=remaining, fallback=used_fallback, reason=reason))
                original = record.get((kind, ident), (tuple(cpus), None))[0]
                record[(kind, ident)] = (original, remaining)
            if pins.cpuset and set(pins.cpuset) & offlined:
                notes.append('%s: <vcpu cpuset> %s still names CPU %s; every thread now has its own pin, which '
                             'takes precedence' % (scope, format_cpulist(pins.cpuset),
                                                   format_cpulist(set(pins.cpuset) & offlined)))
            records[scope] = record
        if domain_changes:
            if domain.migrating:
                problems.append('domain %s: a %s job is running (wait for it to finish or abort it)'
                                % (domain.name, (domain.job_operation or 'migration').replace('_', ' ')))
            plan.changes.append(_domain_change(domain, domain_changes, records, notes))
        else:
            plan.unaffected.append(domain.name)
    if problems:
        raise HotplugError('refusing to offline CPU %s: %s; nothing was changed'
                           % (format_cpulist(offlined), '; '.join(problems)), refusals=problems)
    return plan


def plan_repin(domains, online_after):
    """Plan putting evacuated pins back (repin_on_online): only pins this collection moved, as recorded.

    A pin goes back to its original CPUs once they are all online; to the online
    part of them when only some are; it is left alone when someone changed it
    since the evacuation (its CPUs are no longer what was recorded).
    """
    online_after = set(online_after)
    plan = EvacuationPlan(changes=[], unpinned=[], unaffected=[])
    for domain in domains:
        domain_changes, records, notes = [], {}, []
        for scope, pins in _definitions(domain):
            if not pins.record:
                continue
            record = dict(pins.record)
            for key, (original, moved) in sorted(pins.record.items(), key=_record_order):
                kind, ident = key
                current = pins.pins.get(key, (None, None))[1]
                if current is None or tuple(current) != tuple(moved):
                    notes.append('%s: %s is pinned to %s, not to %s where the evacuation put it; left alone'
                                 % (scope, thread_name(kind, ident),
                                    format_cpulist(current) if current is not None else 'nothing',
                                    format_cpulist(moved)))
                    continue
                target = tuple(sorted(set(original) & online_after))
                if not target or target == tuple(current):
                    continue
                domain_changes.append(PinChange(
                    scope=scope, kind=kind, id=ident, source=pins.pins[key][0], before=tuple(current), after=target,
                    reason='back to its pinning before the evacuation' if target == tuple(original)
                    else 'back to the online part of its pinning before the evacuation (%s)' % format_cpulist(original)))
                if target == tuple(original):
                    del record[key]
                else:
                    record[key] = (original, target)
            records[scope] = record
        if domain_changes:
            plan.changes.append(_domain_change(domain, domain_changes, records, notes))
        elif domain.pinned:
            plan.unaffected.append(domain.name)
        else:
            plan.unpinned.append(domain.name)
    return plan


def _definitions(domain):
    """(scope, ScopePins) of each definition the domain has, live first."""
    return [(scope, domain.scopes[scope]) for scope in SCOPES if domain.scopes.get(scope) is not None]


def _domain_change(domain, changes, records, notes):
    """The DomainChange of one domain, with the records of the scopes it changes."""
    return DomainChange(domain=domain, changes=changes, notes=notes,
                        records_after={s: r for s, r in records.items() if any(c.scope == s for c in changes)})
