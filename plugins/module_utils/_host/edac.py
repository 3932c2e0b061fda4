# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Memory error counters: the kernel's EDAC sysfs tree and rasdaemon's event database.

EDAC (Documentation/admin-guide/ras.rst) shows one directory per memory controller,
devices/system/edac/mc/mcN/{mc_name,size_mb,ce_count,ue_count,ce_noinfo_count,ue_noinfo_count},
with its DIMMs or ranks in dimmN/ or rankN/ ({dimm_label,dimm_location,size,dimm_ce_count,
dimm_ue_count,dimm_mem_type,dimm_edac_mode}) and the legacy csrowN/ view
({ce_count,ue_count,size_mb,chN_ce_count,chN_dimm_label}).  Per-CPU counts exist where an edac_device
driver registers a controller named cpu (CPU cache ECC drivers, on ARM servers for example):
devices/system/edac/cpu/cpuN/{ce_count,ue_count}; x86 machine checks of CPUs are not counted in EDAC.

EDAC does not show which physical addresses a DIMM holds, so a DIMM can not be
mapped to memory blocks from sysfs alone.  What can be said, and is said with
its level:

- memory_block: rasdaemon recorded the physical address of errors on that DIMM;
  the blocks holding those addresses are named (exact for the failing addresses).
- node: the controller is tied to a NUMA node (a nodeN link or a numa_node file in
  its directory, a "Socket#N"/"SrcID#N" name whose socket's CPUs form one node, or a
  host with a single memory node); every block of that node is named.
- none: nothing ties the controller to a node; the reason says so.

rasdaemon's database (ras-mc_event.db, table mc_event) is read with the standard
sqlite3 module through a read-only URI.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import os
import re
import sqlite3
import traceback
from urllib.parse import quote

from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import linked_node, numbered_entries

EDAC_MC_DIR = ('devices', 'system', 'edac', 'mc')
# an edac_device controller is devices/system/edac/<name>/, its instances <name>N/
EDAC_CPU_DIR = ('devices', 'system', 'edac', 'cpu')
# rasdaemon's database name (RAS_DB_FNAME) is ras-mc_event.db in its releases and distributions;
# ras-mc_ctx.db is accepted as well for builds that renamed it.
RASDAEMON_DB_PATHS = ('/var/lib/rasdaemon/ras-mc_event.db', '/var/lib/rasdaemon/ras-mc_ctx.db')

_SOCKET_IN_NAME = re.compile(r'(?:Socket#|SrcID#)(\d+)')
_LOCATION_PART = re.compile(r'([A-Za-z_-]+)\s+(\d+)')
# rasdaemon stores -1 (or 255 from an unsigned char) for a layer the driver did not report.
_NO_LAYER = (-1, 255)


def _counts(tree, directory, names):
    return {key: tree.read_int(os.path.join(directory, name)) for key, name in names}


def _location(text):
    """'channel 1 slot 0' -> ((channel, 1), (slot, 0)); () when empty."""
    return tuple((m.group(1), int(m.group(2))) for m in _LOCATION_PART.finditer(text or ''))


def read_edac(tree):
    """The EDAC controllers under sysfs_root as plain dicts (no mapping yet)."""
    base = tree.path(*EDAC_MC_DIR)
    if not os.path.isdir(base):
        return dict(available=False, reason='no EDAC memory controllers at %s (no EDAC driver loaded for this '
                    'platform, or the kernel has no EDAC support)' % base, controllers=[])
    controllers = []
    for mc_id in numbered_entries(base, 'mc'):
        mc_dir = os.path.join(base, 'mc%d' % mc_id)
        mc = dict(id=mc_id, name=tree.read(os.path.join(mc_dir, 'mc_name')),
                  size_mib=tree.read_int(os.path.join(mc_dir, 'size_mb')))
        mc.update(_counts(tree, mc_dir, (('ce_count', 'ce_count'), ('ue_count', 'ue_count'),
                                         ('ce_noinfo_count', 'ce_noinfo_count'),
                                         ('ue_noinfo_count', 'ue_noinfo_count'))))
        mc['seconds_since_reset'] = tree.read_int(os.path.join(mc_dir, 'seconds_since_reset'))
        mc['linked_node'] = _controller_node_link(tree, mc_dir)
        dimms = []
        for kind in ('dimm', 'rank'):
            for dimm_id in numbered_entries(mc_dir, kind):
                d_dir = os.path.join(mc_dir, '%s%d' % (kind, dimm_id))
                location = tree.read(os.path.join(d_dir, 'dimm_location'))
                dimm = dict(id=dimm_id, kind=kind, label=tree.read(os.path.join(d_dir, 'dimm_label')),
                            location=location, location_layers=[list(p) for p in _location(location)],
                            size_mib=tree.read_int(os.path.join(d_dir, 'size')),
                            mem_type=tree.read(os.path.join(d_dir, 'dimm_mem_type')),
                            dev_type=tree.read(os.path.join(d_dir, 'dimm_dev_type')),
                            edac_mode=tree.read(os.path.join(d_dir, 'dimm_edac_mode')))
                dimm.update(_counts(tree, d_dir, (('ce_count', 'dimm_ce_count'), ('ue_count', 'dimm_ue_count'))))
                dimms.append(dimm)
        mc['dimms'] = dimms
        csrows = []
        for row_id in numbered_entries(mc_dir, 'csrow'):
            r_dir = os.path.join(mc_dir, 'csrow%d' % row_id)
            row = dict(id=row_id, size_mib=tree.read_int(os.path.join(r_dir, 'size_mb')),
                       mem_type=tree.read(os.path.join(r_dir, 'mem_type')),
                       edac_mode=tree.read(os.path.join(r_dir, 'edac_mode')))
            row.update(_counts(tree, r_dir, (('ce_count', 'ce_count'), ('ue_count', 'ue_count'))))
            channels = []
            for name in sorted(os.listdir(r_dir)):
                match = re.match(r'^ch(\d+)_ce_count$', name)
                if match:
                    ch = int(match.group(1))
                    channels.append(dict(id=ch, ce_count=tree.read_int(os.path.join(r_dir, name)),
                                         label=tree.read(os.path.join(r_dir, 'ch%d_dimm_label' % ch))))
            row['channels'] = sorted(channels, key=lambda c: c['id'])
            csrows.append(row)
        mc['csrows'] = csrows
        controllers.append(mc)
    return dict(available=bool(controllers), controllers=controllers,
                reason=None if controllers else 'the EDAC directory %s lists no memory controllers' % base)


def read_edac_cpus(tree):
    """[{id, ce_count, ue_count}] of the EDAC device controller named cpu; [] when there is none."""
    base = tree.path(*EDAC_CPU_DIR)
    cpus = []
    for cpu_id in numbered_entries(base, 'cpu'):
        cpu_dir = os.path.join(base, 'cpu%d' % cpu_id)
        cpus.append(dict(id=cpu_id, **_counts(tree, cpu_dir, (('ce_count', 'ce_count'), ('ue_count', 'ue_count')))))
    return cpus


def _controller_node_link(tree, mc_dir):
    """A NUMA node the kernel ties to the controller: a nodeN entry or a numa_node file (self or device/)."""
    for sub in ('', 'device'):
        directory = os.path.join(mc_dir, sub) if sub else mc_dir
        node = linked_node(directory)
        if node is not None:
            return node
        value = tree.read_int(os.path.join(directory, 'numa_node'))
        if value is not None and value >= 0:
            return value
    return None


def controller_nodes(mc, host):
    """(level, nodes, reason) for one controller: which NUMA nodes its memory belongs to, as far as known."""
    memory_nodes = sorted(n.id for n in host.nodes.values() if n.memory_blocks)
    if mc.get('linked_node') is not None:
        return 'node', [mc['linked_node']], 'the kernel links mc%d to node %d' % (mc['id'], mc['linked_node'])
    match = _SOCKET_IN_NAME.search(mc.get('name') or '')
    if match:
        socket = int(match.group(1))
        nodes = sorted(set(c.node for c in host.cpus.values()
                           if c.package_id == socket and c.node is not None))
        if nodes:
            how = 'node %d' % nodes[0] if len(nodes) == 1 else 'nodes %s (the socket is split into several nodes)' \
                % ', '.join(str(n) for n in nodes)
            return 'node', nodes, ('mc%d is named %r: socket %d, whose online CPUs are in %s'
                                   % (mc['id'], mc['name'], socket, how))
    if len(memory_nodes) == 1:
        return 'node', memory_nodes, 'the host has a single NUMA node with memory (node %d)' % memory_nodes[0]
    return 'none', [], ('EDAC does not say which NUMA node mc%d (%s) serves and the host has %d memory nodes; '
                        'rasdaemon event addresses or the platform\'s DIMM map are needed'
                        % (mc['id'], mc.get('name') or 'unnamed', len(memory_nodes)))


def _blocks_of_nodes(host, nodes):
    return sorted(b for n in nodes if n in host.nodes for b in host.nodes[n].memory_blocks)


# --------------------------------------------------------------------------
# rasdaemon

def rasdaemon_path(option):
    """The rasdaemon database to read: the option, else the first of RASDAEMON_DB_PATHS that exists."""
    if option is not None:
        return option
    for path in RASDAEMON_DB_PATHS:
        if os.path.exists(path):
            return path
    return RASDAEMON_DB_PATHS[0]


def read_rasdaemon(path, memory):
    """Summary of rasdaemon's mc_event table, grouped by DIMM, with the memory blocks of error addresses."""
    result = dict(path=path, available=False)
    if not path:
        result['reason'] = 'not asked to read a rasdaemon database'
        return result
    if not os.path.isfile(path):
        result['reason'] = 'no rasdaemon database at %s' % path
        return result
    try:
        conn = sqlite3.connect('file:%s?mode=ro' % quote(os.path.abspath(path)), uri=True, timeout=5)
    except sqlite3.Error as exc:
        result.update(reason='cannot open %s read-only: %s' % (path, exc), exception=traceback.format_exc())
        return result
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        result['tables'] = {}
        for table in tables:
            if re.match(r'^[A-Za-z_][A-Za-z0-9_]*$', table):
                result['tables'][table] = conn.execute('SELECT COUNT(*) FROM "%s"' % table).fetchone()[0]
        if 'mc_event' not in tables:
            result.update(available=True, events=0, groups=[],
                          reason='the database has no mc_event table (rasdaemon records no memory controller events)')
            return result
        columns = set(r[1] for r in conn.execute('PRAGMA table_info(mc_event)'))
        result.update(_summarize_mc_events(conn, columns, memory))
        result['available'] = True
    except sqlite3.Error as exc:
        result.update(available=False, reason='cannot read %s: %s' % (path, exc), exception=traceback.format_exc())
    finally:
        conn.close()
    return result


def _col(columns, name, default='NULL'):
    return name if name in columns else default


def _summarize_mc_events(conn, columns, memory):
    key_cols = [_col(columns, c) for c in ('label', 'err_type', 'mc', 'top_layer', 'middle_layer', 'lower_layer')]
    count_col = 'SUM(COALESCE(err_count, 1))' if 'err_count' in columns else 'COUNT(*)'
    ts = _col(columns, 'timestamp')
    query = ('SELECT %s, COUNT(*), %s, MIN(%s), MAX(%s) FROM mc_event GROUP BY %s'
             % (', '.join(key_cols), count_col, ts, ts, ', '.join(key_cols)))
    groups = {}
    total_rows = 0
    for label, err_type, mc, top, middle, lower, rows, errors, first, last in conn.execute(query):
        key = (label, mc, top, middle, lower)
        group = groups.setdefault(key, dict(label=label, mc=mc, layers=_layers(top, middle, lower),
                                            corrected=0, uncorrected=0, other=0, events=0,
                                            first=None, last=None, addresses=0, memory_blocks=[]))
        kind = (err_type or '').lower()
        bucket = 'corrected' if kind.startswith('corrected') else (
            'uncorrected' if kind.startswith(('uncorrected', 'fatal')) else 'other')
        group[bucket] += int(errors or 0)
        group['events'] += rows
        total_rows += rows
        group['first'] = first if group['first'] is None or (first and first < group['first']) else group['first']
        group['last'] = last if group['last'] is None or (last and last > group['last']) else group['last']
    if 'address' in columns:
        key_sql = ', '.join(_col(columns, c) for c in ('label', 'mc', 'top_layer', 'middle_layer', 'lower_layer'))
        for label, mc, top, middle, lower, address in conn.execute(
                'SELECT DISTINCT %s, address FROM mc_event WHERE address IS NOT NULL AND address > 0' % key_sql):
            group = groups.get((label, mc, top, middle, lower))
            if group is None:
                continue
            group['addresses'] += 1
            block = memory.block_of_address(int(address)) if memory is not None else None
            if block is not None and block not in group['memory_blocks']:
                group['memory_blocks'].append(block)
    ordered = sorted(groups.values(), key=lambda g: (-(g['uncorrected']), -(g['corrected']), str(g['label'])))
    for group in ordered:
        group['memory_blocks'].sort()
    return dict(events=total_rows, groups=ordered)


def _layers(*values):
    return [None if v is None or v in _NO_LAYER else int(v) for v in values]


# --------------------------------------------------------------------------
# putting it together

def _dimm_matches_group(mc, dimm, group):
    """A rasdaemon group belongs to a DIMM when the controller and the layer positions agree, else by label."""
    if group.get('mc') == mc['id'] and dimm['location_layers']:
        positions = [p[1] for p in dimm['location_layers']]
        reported = [(i, v) for i, v in enumerate(group['layers']) if v is not None]
        if reported and all(i < len(positions) and positions[i] == v for i, v in reported):
            return True
    label = (dimm.get('label') or '').strip()
    return bool(label) and label == (group.get('label') or '').strip()


def analyze(host, edac, rasdaemon, ce_threshold=None):
    """Attach mappings to DIMMs and controllers and list what looks failing.

    A DIMM (or rank) is failing when its uncorrected count is above zero, or when
    ce_threshold is set and its corrected count reaches it.  Each count is the larger
    of EDAC's (since boot or the last counter reset) and rasdaemon's (its whole history).
    """
    failing = []
    groups = rasdaemon.get('groups', []) if rasdaemon.get('available') else []
    matched_groups = set()
    for mc in edac.get('controllers', []):
        level, nodes, reason = controller_nodes(mc, host)
        mc['mapping'] = dict(level=level, nodes=nodes, memory_blocks=_blocks_of_nodes(host, nodes), reason=reason)
        for dimm in mc['dimms']:
            events = [i for i, g in enumerate(groups) if _dimm_matches_group(mc, dimm, g)]
            matched_groups.update(events)
            error_blocks = sorted(set(b for i in events for b in groups[i]['memory_blocks']))
            dimm['rasdaemon'] = dict(
                corrected=sum(groups[i]['corrected'] for i in events),
                uncorrected=sum(groups[i]['uncorrected'] for i in events),
                last=max([groups[i]['last'] for i in events if groups[i]['last']] or [None]),
            ) if events else None
            if error_blocks:
                dimm['mapping'] = dict(
                    level='memory_block', memory_blocks=error_blocks,
                    nodes=sorted(set(host.memory.blocks[b].node for b in error_blocks
                                     if host.memory.blocks[b].node is not None)),
                    reason='rasdaemon recorded errors of this DIMM at physical addresses in these blocks; '
                           'other blocks of the DIMM are not known')
            else:
                dimm['mapping'] = dict(mc['mapping'])
                if level == 'node':
                    dimm['mapping']['reason'] = ('node-level only: %s; EDAC does not show which of its blocks '
                                                 'this DIMM holds' % reason)
            ce = dimm.get('ce_count')
            ue = dimm.get('ue_count')
            if dimm['rasdaemon']:
                # EDAC counts since boot (or the last reset_counters); rasdaemon keeps history: take the larger.
                ce = max(ce or 0, dimm['rasdaemon']['corrected'])
                ue = max(ue or 0, dimm['rasdaemon']['uncorrected'])
            why = _failing_reason(ce, ue, ce_threshold)
            dimm['failing'] = why is not None
            if why:
                failing.append(dict(source='edac', controller=mc['id'], kind=dimm['kind'], id=dimm['id'],
                                    label=dimm['label'], location=dimm['location'], ce_count=ce, ue_count=ue,
                                    reason=why, mapping=dimm['mapping']))
        noinfo_why = _failing_reason(mc.get('ce_noinfo_count'), mc.get('ue_noinfo_count'), ce_threshold)
        if noinfo_why:
            failing.append(dict(source='edac', controller=mc['id'], kind='controller', id=mc['id'], label=mc['name'],
                                location=None, ce_count=mc.get('ce_noinfo_count'), ue_count=mc.get('ue_noinfo_count'),
                                reason=noinfo_why + ' that the controller could not attribute to a DIMM',
                                mapping=mc['mapping']))
    for index, group in enumerate(groups):
        if index in matched_groups:
            continue
        why = _failing_reason(group['corrected'], group['uncorrected'], ce_threshold)
        if not why:
            continue
        if group['memory_blocks']:
            mapping = dict(level='memory_block', memory_blocks=group['memory_blocks'],
                           nodes=sorted(set(host.memory.blocks[b].node for b in group['memory_blocks']
                                            if host.memory.blocks[b].node is not None)),
                           reason='rasdaemon recorded errors at physical addresses in these blocks')
        else:
            mapping = dict(level='none', memory_blocks=[], nodes=[],
                           reason='rasdaemon recorded no physical address and no EDAC DIMM matches label %r'
                                  % group['label'])
        failing.append(dict(source='rasdaemon', controller=group['mc'], kind='label', id=None, label=group['label'],
                            location=None, ce_count=group['corrected'], ue_count=group['uncorrected'],
                            reason=why, mapping=mapping))
    return failing


def _failing_reason(ce, ue, ce_threshold):
    if ue:
        return '%d uncorrected errors' % ue
    if ce_threshold is not None and ce is not None and ce >= ce_threshold:
        return '%d corrected errors (threshold %d)' % (ce, ce_threshold)
    return None
