from __future__ import annotations

import os

from ansible_collections.kvm.hotplug.plugins.module_utils._host import edac
from ansible_collections.kvm.hotplug.plugins.modules import host_resource_info
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_runner import run_main
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_utils.test_edac import make_db
from ansible_collections.kvm.hotplug.tests.unit.plugins.sysfs_trees import (
    BLOCK_SIZE, add_edac_controller, two_node_host,
)


def test_reads_a_whole_host(simsysfs, tmp_path, capsys):
    root = two_node_host(simsysfs)
    add_edac_controller(root, 0, 'Skylake Socket#0 IMC#0', dimms=[dict(label='A1', location='channel 0 slot 0')])
    add_edac_controller(root, 1, 'Skylake Socket#1 IMC#0',
                        dimms=[dict(label='B1', location='channel 0 slot 0', ce=250)])
    db = make_db(tmp_path / 'ras.db', [dict(label='B1', mc=1, top=0, middle=0, address=35 * BLOCK_SIZE + 64)])
    result, failed = run_main(host_resource_info.main, dict(sysfs_root=root, rasdaemon_db=db, ce_threshold=100),
                              capsys)
    assert not failed and result['changed'] is False
    assert result['cpu_summary']['online'] == '0-3' and result['cpus'][0]['hotpluggable'] is False
    assert [n['id'] for n in result['numa_nodes']] == [0, 1]
    assert result['numa_nodes'][1]['memory_blocks'] == [4, 5, 34, 35]
    assert result['memory']['block_size_mib'] == 128 and len(result['memory']['blocks']) == 10
    assert result['memory']['blocks'][0]['valid_zones'] == ['none']
    assert [mc['name'] for mc in result['edac']['controllers']] == ['Skylake Socket#0 IMC#0', 'Skylake Socket#1 IMC#0']
    assert result['rasdaemon']['events'] == 1
    assert len(result['failing']) == 1
    failing = result['failing'][0]
    assert failing['label'] == 'B1' and failing['ce_count'] == 250
    assert failing['mapping'] == dict(level='memory_block', memory_blocks=[35], nodes=[1],
                                      reason=failing['mapping']['reason'])


def test_no_rasdaemon_database(simsysfs, capsys):
    root = two_node_host(simsysfs)
    result, failed = run_main(host_resource_info.main, dict(sysfs_root=root, rasdaemon_db=''), capsys)
    assert not failed and result['rasdaemon']['available'] is False and result['edac']['available'] is False
    assert result['failing'] == []


def test_default_database_paths(simsysfs, tmp_path, capsys, mocker):
    second = tmp_path / 'ras-mc_ctx.db'
    make_db(second, [])
    mocker.patch.object(edac, 'RASDAEMON_DB_PATHS', (str(tmp_path / 'ras-mc_event.db'), str(second)))
    root = two_node_host(simsysfs)
    result, failed = run_main(host_resource_info.main, dict(sysfs_root=root), capsys)
    assert not failed and result['rasdaemon']['path'] == str(second) and result['rasdaemon']['available']


def test_bad_threshold_and_bad_root(simsysfs, tmp_path, capsys):
    root = two_node_host(simsysfs)
    result, failed = run_main(host_resource_info.main, dict(sysfs_root=root, ce_threshold=0), capsys)
    assert failed and 'ce_threshold' in result['msg']
    result, failed = run_main(host_resource_info.main, dict(sysfs_root=str(tmp_path / 'nothing')), capsys)
    assert failed and 'is not a sysfs tree' in result['msg']
    assert not os.path.exists(str(tmp_path / 'nothing'))
