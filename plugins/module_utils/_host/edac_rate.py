# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Error rates from EDAC totals: which components crossed the corrected-error threshold within a window.

EDAC gives only totals since the last counter reset (boot, or a write to mcN/reset_counters), so a rate needs
earlier readings.  The caller keeps them per host as a list of {timestamp, counters} (the state) and passes
them back on each run; plan_detection is pure (no clock, no files): the time is an argument.

A component is one thing that can be taken out: a DIMM or rank (mcN/dimmM, mcN/rankM), a legacy csrow when
the controller lists no DIMMs (mcN/csrowM), the errors a controller could not attribute (mcN), or a CPU
(cpuN).  components_from_edac turns what _host/edac.py read (after analyze() attached the mappings) into
these, each with its counters {ce, ue} and what it covers (memory blocks, NUMA nodes or CPUs).

How the corrected errors within the window are counted, per component:

- the samples are the state's readings inside the window, oldest first, then the current reading;
- between two samples, a total that went up by d adds d; a total that went down means the counters were
  reset in between, and the later total (the errors since the reset) is added;
- when the time of the last reset is known (EDAC's seconds_since_reset) and falls inside the window, the
  samples taken before it are dropped and the reset itself counts as a sample of 0, so the first run after
  a boot or a reset sees the errors since then without any history.

The count never exceeds the errors that really happened inside the window (a reset that the totals do not
show, one followed by more errors than the total before it, is counted as no reset: less, never more).
Any uncorrected error in the current totals flags the component, whatever the threshold and the window.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

# rasdaemon's page-ce-threshold default (PAGE_CE_THRESHOLD 50 in PAGE_CE_REFRESH_CYCLE 24h).
DEFAULT_THRESHOLD = 50
DEFAULT_WINDOW_HOURS = 24

COUNTERS = ('ce', 'ue')


def plan_detection(components, history, now, threshold=DEFAULT_THRESHOLD, window_hours=DEFAULT_WINDOW_HOURS):
    """The components that cross the threshold now, and the state to keep.

    components: dicts with key (a stable id such as 'mc0/dimm1' or 'cpu1'), counters {ce, ue}, optionally
    reset_at (when the counters were last reset, in the clock of now) and anything else, passed through.
    history: the state of the previous run, a list of {timestamp, counters: {key: {ce, ue}}}.
    Returns dict(findings=[...], state=[...]); findings are in key order, each the component with
    corrected_in_window, uncorrected, resets (how many resets the samples showed) and reason.
    """
    if threshold < 1:
        raise ValueError('threshold must be at least 1, got %r' % (threshold,))
    if window_hours <= 0:
        raise ValueError('window_hours must be above 0, got %r' % (window_hours,))
    window_start = now - window_hours * 3600.0
    kept = readings_in_window(history, window_start, now)
    findings = []
    for component in sorted(components, key=lambda c: c['key']):
        counters = _counters(component.get('counters'))
        corrected, resets = corrected_in_window(component['key'], counters['ce'], kept, now, window_start,
                                                component.get('reset_at'))
        reason = _crossing_reason(corrected, counters['ue'], threshold, window_hours)
        if reason:
            findings.append(dict(component, counters=counters, corrected_in_window=corrected,
                                 uncorrected=counters['ue'], resets=resets, reason=reason))
    current = dict(timestamp=now, counters={c['key']: _counters(c.get('counters')) for c in components})
    return dict(findings=findings, state=kept + [current])


def readings_in_window(history, window_start, now):
    """The readings of the state taken within [window_start, now], oldest first.

    Older ones are pruned; newer ones (a clock that went back) are dropped too, since their order against
    the current reading is unknown.  Malformed entries are skipped rather than trusted.
    """
    kept = []
    for reading in history or ():
        if not isinstance(reading, dict) or not isinstance(reading.get('counters'), dict):
            continue
        timestamp = reading.get('timestamp')
        if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
            continue
        if window_start <= timestamp <= now:
            kept.append(dict(timestamp=timestamp,
                             counters={k: _counters(v) for k, v in sorted(reading['counters'].items())}))
    # sorted() is stable: readings with one timestamp keep the state's order
    return sorted(kept, key=lambda r: r['timestamp'])


def corrected_in_window(key, current_ce, readings, now, window_start, reset_at=None):
    """(corrected errors of one component counted within the window, resets seen in its samples)."""
    samples = [(r['timestamp'], r['counters'][key]['ce']) for r in readings if key in r['counters']]
    samples.append((now, current_ce))
    if reset_at is not None and reset_at <= now:
        # samples before the reset belong to the totals the reset cleared
        samples = [s for s in samples if s[0] >= reset_at]
        if reset_at >= window_start:
            samples.insert(0, (reset_at, 0))
    corrected = 0
    resets = 0
    totals = [total for _timestamp, total in samples]
    for before, after in zip(totals, totals[1:]):
        if after >= before:
            corrected += after - before
        else:
            resets += 1
            corrected += after
    return corrected, resets


def _crossing_reason(corrected, uncorrected, threshold, window_hours):
    if uncorrected:
        return '%d uncorrected errors' % uncorrected
    if corrected >= threshold:
        return '%d corrected errors within %g h (threshold %d)' % (corrected, window_hours, threshold)
    return None


def _counters(value):
    """{ce, ue} as non-negative integers; a missing or unreadable counter reads 0."""
    value = value if isinstance(value, dict) else {}
    out = {}
    for name in COUNTERS:
        number = value.get(name)
        out[name] = number if isinstance(number, int) and not isinstance(number, bool) and number > 0 else 0
    return out


# --------------------------------------------------------------------------
# components from what _host/edac.py read

def components_from_edac(edac, cpus=(), now=None):
    """The components of read_edac()'s controllers (after analyze() mapped them) and of read_edac_cpus().

    Each is dict(key, kind, controller, id, label, location, counters, covers, mapping, reset_at):
    covers names what isolating the component takes out, {memory_blocks, nodes, cpus}, as far as the
    mapping knows it (mapping.level and mapping.reason say how far that is).  reset_at is set from the
    controller's seconds_since_reset when now is given.
    """
    components = []
    for mc in edac.get('controllers', []):
        reset_at = None
        if now is not None and mc.get('seconds_since_reset') is not None:
            reset_at = now - mc['seconds_since_reset']
        mc_mapping = mc.get('mapping') or _no_mapping()
        for dimm in mc.get('dimms', []):
            components.append(_memory_component(
                mc, '%s%d' % (dimm['kind'], dimm['id']), dimm['kind'], dimm['id'], dimm.get('label'),
                dimm.get('location'), dimm.get('ce_count'), dimm.get('ue_count'), dimm.get('mapping') or mc_mapping,
                reset_at))
        if not mc.get('dimms'):
            # legacy drivers only show csrows; where DIMM entries exist the csrows count the same errors again
            for row in mc.get('csrows', []):
                labels = [c['label'] for c in row.get('channels', []) if c.get('label')]
                components.append(_memory_component(
                    mc, 'csrow%d' % row['id'], 'csrow', row['id'], ', '.join(labels) or None, None,
                    row.get('ce_count'), row.get('ue_count'), mc_mapping, reset_at))
        if mc.get('ce_noinfo_count') or mc.get('ue_noinfo_count'):
            # errors the controller could not attribute to a DIMM: only the controller as a whole is known
            components.append(_memory_component(mc, None, 'controller', mc['id'], mc.get('name'), None,
                                                mc.get('ce_noinfo_count'), mc.get('ue_noinfo_count'), mc_mapping,
                                                reset_at))
    for cpu in cpus:
        components.append(dict(
            key='cpu%d' % cpu['id'], kind='cpu', controller=None, id=cpu['id'], label=None, location=None,
            counters=_counters(dict(ce=cpu.get('ce_count'), ue=cpu.get('ue_count'))),
            covers=dict(memory_blocks=[], nodes=[], cpus=[cpu['id']]),
            mapping=dict(level='cpu', reason='EDAC counts these errors for CPU %d' % cpu['id']),
            reset_at=None))
    return components


def _memory_component(mc, name, kind, component_id, label, location, ce, ue, mapping, reset_at):
    return dict(
        key='mc%d/%s' % (mc['id'], name) if name else 'mc%d' % mc['id'],
        kind=kind, controller=mc['id'], id=component_id, label=label, location=location,
        counters=_counters(dict(ce=ce, ue=ue)),
        covers=dict(memory_blocks=list(mapping.get('memory_blocks') or []), nodes=list(mapping.get('nodes') or []),
                    cpus=[]),
        mapping=dict(level=mapping.get('level', 'none'), reason=mapping.get('reason')),
        reset_at=reset_at)


def _no_mapping():
    return dict(level='none', memory_blocks=[], nodes=[], reason='no mapping was attached to the controller')
