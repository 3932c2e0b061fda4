from __future__ import annotations

import os
import sqlite3

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._host.edac import analyze, read_edac, read_rasdaemon
from ansible_collections.kvm.hotplug.plugins.module_utils._host.sysfs import SysfsTree, read_host
from ansible_collections.kvm.hotplug.tests.unit.plugins.sysfs_trees import (
    BLOCK_SIZE, Block, Cpu, add_edac_controller, build_tree, two_node_host,
)

# The schema rasdaemon 0.6.8 (Debian bookworm) created in the lab-hostres guest, copied from `sqlite3 .schema`.
RASDAEMON_SCHEMA = '''
CREATE TABLE mc_event (id INTEGER PRIMARY KEY, timestamp TEXT, err_count INTEGER, err_type TEXT, err_msg TEXT,
  label TEXT, mc INTEGER, top_layer INTEGER, middle_layer INTEGER, lower_layer INTEGER, address INTEGER,
  grain INTEGER, syndrome INTEGER, driver_detail TEXT);
CREATE TABLE aer_event (id INTEGER PRIMARY KEY, timestamp TEXT, dev_name TEXT, err_type TEXT, err_msg TEXT);
CREATE TABLE extlog_event (id INTEGER PRIMARY KEY, timestamp TEXT, etype INTEGER, error_count INTEGER,
  severity INTEGER, address INTEGER, fru_id BLOB, fru_text TEXT, cper_data BLOB);
CREATE TABLE mce_record (id INTEGER PRIMARY KEY, timestamp TEXT, mcgcap INTEGER, mcgstatus INTEGER,
  status INTEGER, addr INTEGER, misc INTEGER, ip INTEGER, tsc INTEGER, walltime INTEGER, cpu INTEGER,
  cpuid INTEGER, apicid INTEGER, socketid INTEGER, cs INTEGER, bank INTEGER, cpuvendor INTEGER,
  bank_name TEXT, error_msg TEXT, mcgstatus_msg TEXT, mcistatus_msg TEXT, mcastatus_msg TEXT,
  user_action TEXT, mc_location TEXT);
'''


def make_db(path, events):
    conn = sqlite3.connect(str(path))
    conn.executescript(RASDAEMON_SCHEMA)
    for ev in events:
        conn.execute('INSERT INTO mc_event (timestamp, err_count, err_type, err_msg, label, mc, top_layer, '
                     'middle_layer, lower_layer, address, grain, syndrome, driver_detail) '
                     'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                     (ev.get('ts', '2024-05-01 10:00:00 +0000'), ev.get('count', 1), ev.get('type', 'Corrected'),
                      'memory read error', ev.get('label'), ev.get('mc', 0), ev.get('top', 0), ev.get('middle', 0),
                      ev.get('lower', -1), ev.get('address', 0), 64, 0, ''))
    conn.commit()
    conn.close()
    return str(path)


@pytest.fixture
def edac_host(simsysfs):
    """Two sockets, one node each; mc0/mc1 on socket 0 and 1 (skx_edac naming), DIMMs, and legacy csrows."""
    root = two_node_host(simsysfs)
    add_edac_controller(root, 0, 'Skylake Socket#0 IMC#0', ce=7, dimms=[
        dict(label='CPU0_DIMM_A1', location='channel 0 slot 0', ce=7),
        dict(label='CPU0_DIMM_B1', location='channel 1 slot 0'),
    ], csrows=[dict(ce=7, channels=[(7, 'CPU0_DIMM_A1'), (0, 'CPU0_DIMM_B1')])])
    add_edac_controller(root, 1, 'Skylake Socket#1 IMC#0', ue=1, ce=150, dimms=[
        dict(label='CPU1_DIMM_A1', location='channel 0 slot 0', ce=150, ue=1),
    ])
    add_edac_controller(root, 2, 'Some Vendor MC', ce_noinfo=3, ranks=[
        dict(label='rank label', location='csrow 0 channel 0', ce=0),
    ])
    return root


def test_read_edac_several_controllers(edac_host):
    edac = read_edac(SysfsTree(edac_host))
    assert edac['available'] is True
    mc0, mc1, mc2 = edac['controllers']
    assert mc0['name'] == 'Skylake Socket#0 IMC#0' and mc0['ce_count'] == 7 and mc0['ue_count'] == 0
    assert [d['label'] for d in mc0['dimms']] == ['CPU0_DIMM_A1', 'CPU0_DIMM_B1']
    assert mc0['dimms'][1]['location_layers'] == [['channel', 1], ['slot', 0]]
    assert mc0['csrows'][0]['channels'] == [dict(id=0, ce_count=7, label='CPU0_DIMM_A1'),
                                            dict(id=1, ce_count=0, label='CPU0_DIMM_B1')]
    assert mc1['dimms'][0]['ue_count'] == 1
    assert mc2['dimms'][0]['kind'] == 'rank' and mc2['ce_noinfo_count'] == 3


def test_no_edac(simsysfs):
    root = two_node_host(simsysfs)
    edac = read_edac(SysfsTree(root))
    assert edac['available'] is False and 'no EDAC memory controllers' in edac['reason']


def test_mapping_by_socket_and_failing_list(edac_host):
    tree = SysfsTree(edac_host)
    host = read_host(tree)
    edac = read_edac(tree)
    failing = analyze(host, edac, dict(available=False), ce_threshold=100)
    mc0, mc1, mc2 = edac['controllers']
    assert mc0['mapping']['level'] == 'node' and mc0['mapping']['nodes'] == [0]
    assert mc1['mapping']['nodes'] == [1] and mc1['mapping']['memory_blocks'] == [4, 5, 34, 35]
    assert 'socket 1' in mc1['mapping']['reason']
    # a controller whose name says nothing, on a two-node host: no mapping, and the reason says so
    assert mc2['mapping']['level'] == 'none' and 'does not say which NUMA node' in mc2['mapping']['reason']
    by_label = {f['label']: f for f in failing}
    assert set(by_label) == {'CPU1_DIMM_A1'}  # 7 corrected errors are under the threshold, 3 noinfo too
    entry = by_label['CPU1_DIMM_A1']
    assert entry['reason'] == '1 uncorrected errors' and entry['mapping']['level'] == 'node'
    assert entry['mapping']['reason'].startswith('node-level only')
    assert mc1['dimms'][0]['failing'] is True and mc0['dimms'][0]['failing'] is False


def test_threshold_counts_corrected_errors(edac_host):
    tree = SysfsTree(edac_host)
    failing = analyze(read_host(tree), read_edac(tree), dict(available=False), ce_threshold=3)
    labels = sorted(f['label'] for f in failing)
    assert labels == ['CPU0_DIMM_A1', 'CPU1_DIMM_A1', 'Some Vendor MC']
    noinfo = [f for f in failing if f['kind'] == 'controller'][0]
    assert 'could not attribute to a DIMM' in noinfo['reason']


def test_single_node_host_maps_every_controller_to_it(simsysfs):
    root = build_tree(simsysfs, [Cpu(0, hotpluggable=False), Cpu(1)], [Block(0), Block(1)])
    add_edac_controller(root, 0, 'ie31200', dimms=[dict(label='DIMM_A1', location='channel 0 slot 0', ue=2)])
    tree = SysfsTree(root)
    failing = analyze(read_host(tree), read_edac(tree), dict(available=False))
    assert failing[0]['mapping']['nodes'] == [0] and failing[0]['mapping']['memory_blocks'] == [0, 1]
    assert 'single NUMA node' in failing[0]['mapping']['reason']


def test_controller_with_a_node_link(simsysfs):
    root = two_node_host(simsysfs)
    mc = add_edac_controller(root, 0, 'F19h', dimms=[dict(label='P1 CHANNEL A', location='csrow 0 channel 0')],
                             node=1)
    assert os.readlink(os.path.join(mc, 'node1')) == '../../../node/node1'
    tree = SysfsTree(root)
    edac = read_edac(tree)
    analyze(read_host(tree), edac, dict(available=False))
    assert edac['controllers'][0]['mapping']['nodes'] == [1]


def test_rasdaemon_summary_maps_addresses_to_blocks(edac_host, tmp_path):
    db = make_db(tmp_path / 'ras-mc_event.db', [
        dict(label='CPU0_DIMM_A1', mc=0, top=0, middle=0, address=33 * BLOCK_SIZE + 0x1040, count=2,
             ts='2024-05-01 10:00:00 +0000'),
        dict(label='CPU0_DIMM_A1', mc=0, top=0, middle=0, address=33 * BLOCK_SIZE + 0x9000,
             ts='2024-05-03 10:00:00 +0000'),
        dict(label='CPU0_DIMM_A1', mc=0, top=0, middle=0, address=0),     # no address recorded
        dict(label='unknown DIMM', mc=3, top=2, address=0, type='Uncorrected'),
        dict(label='CPU0_DIMM_B1', mc=0, top=1, middle=0, address=999 * BLOCK_SIZE),  # beyond any block
    ])
    mtime = os.stat(db).st_mtime_ns
    tree = SysfsTree(edac_host)
    host = read_host(tree)
    ras = read_rasdaemon(db, host.memory)
    assert ras['available'] is True and ras['events'] == 5
    assert ras['tables'] == dict(aer_event=0, extlog_event=0, mc_event=5, mce_record=0)
    groups = {g['label']: g for g in ras['groups']}
    a1 = groups['CPU0_DIMM_A1']
    assert a1['corrected'] == 4 and a1['events'] == 3 and a1['memory_blocks'] == [33] and a1['addresses'] == 2
    assert a1['first'] == '2024-05-01 10:00:00 +0000' and a1['last'] == '2024-05-03 10:00:00 +0000'
    assert a1['layers'] == [0, 0, None]
    assert groups['CPU0_DIMM_B1']['memory_blocks'] == []
    assert ras['groups'][0]['label'] == 'unknown DIMM'  # uncorrected first

    edac = read_edac(tree)
    failing = analyze(host, edac, ras, ce_threshold=4)
    dimm_a1 = edac['controllers'][0]['dimms'][0]
    assert dimm_a1['mapping']['level'] == 'memory_block' and dimm_a1['mapping']['memory_blocks'] == [33]
    assert dimm_a1['rasdaemon']['corrected'] == 4
    by_label = {f['label']: f for f in failing}
    assert by_label['CPU0_DIMM_A1']['mapping']['memory_blocks'] == [33]   # 7 EDAC CEs >= 4
    unknown = by_label['unknown DIMM']
    assert unknown['source'] == 'rasdaemon' and unknown['mapping']['level'] == 'none'
    assert 'no EDAC DIMM matches' in unknown['mapping']['reason']
    assert os.stat(db).st_mtime_ns == mtime
    assert not os.path.exists(db + '-journal')


def test_events_match_dimms_by_layer_position_even_without_labels(simsysfs, tmp_path):
    root = two_node_host(simsysfs)
    add_edac_controller(root, 0, 'Skylake Socket#0 IMC#0', dimms=[
        dict(label='', location='channel 0 slot 0'), dict(label='', location='channel 1 slot 0')])
    db = make_db(tmp_path / 'db', [dict(label='', mc=0, top=1, middle=0, address=32 * BLOCK_SIZE, count=5)])
    tree = SysfsTree(root)
    host = read_host(tree)
    edac = read_edac(tree)
    analyze(host, edac, read_rasdaemon(db, host.memory), ce_threshold=5)
    first, second = edac['controllers'][0]['dimms']
    assert first['rasdaemon'] is None and second['rasdaemon']['corrected'] == 5
    assert second['mapping']['memory_blocks'] == [32] and second['failing'] is True


def test_rasdaemon_missing_or_broken(tmp_path):
    assert read_rasdaemon(str(tmp_path / 'nope.db'), None)['reason'].startswith('no rasdaemon database at')
    assert read_rasdaemon('', None)['available'] is False
    bad = tmp_path / 'bad.db'
    bad.write_text('this is not sqlite')
    result = read_rasdaemon(str(bad), None)
    assert result['available'] is False and 'cannot' in result['reason']
    empty = tmp_path / 'empty.db'
    sqlite3.connect(str(empty)).executescript('CREATE TABLE aer_event (id INTEGER PRIMARY KEY);')
    result = read_rasdaemon(str(empty), None)
    assert result['available'] is True and result['events'] == 0 and 'no mc_event table' in result['reason']
