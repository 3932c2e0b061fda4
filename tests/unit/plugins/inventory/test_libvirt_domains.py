"""The libvirt_domains inventory plugin on fake hypervisors: hosts, groups, headroom, caching, constructed options."""
from __future__ import annotations

import libvirt
import pytest
import yaml
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader

from ansible_collections.kvm.hotplug.plugins.inventory import libvirt_domains
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import parse_domain_xml
from ansible_collections.kvm.hotplug.tests.unit.plugins.libvirt_fakes import FakeConnection, FakeDomain
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_utils.domain_xml import domain_xml

HV1 = 'qemu+tcp://127.0.1.1/system'
HV2 = 'qemu+tcp://127.0.1.2/system'
GIB = 1024 * 1024
VIRTIO_MEM = ("<memory model='virtio-mem'><target><size unit='KiB'>%d</size><node>0</node>"
              "<block unit='KiB'>2048</block><requested unit='KiB'>%d</requested></target></memory>")
DIMM = "<memory model='dimm'><target><size unit='KiB'>%d</size><node>0</node></target></memory>"


def domain(name, enabled=(0, 1), maximum=8, state=libvirt.VIR_DOMAIN_RUNNING, persistent=True, **xml):
    text = domain_xml(name=name, maximum=maximum, enabled=enabled, uuid='00000000-0000-0000-0000-%012d' % len(name),
                      **xml)
    return FakeDomain(name, live_xml=text, config_xml=text, state=state, persistent=persistent)


@pytest.fixture
def fleet(hypervisor):
    """hv1: web (running, 2 of 8 vCPUs, room for memory), full (running, 4 of 4 vCPUs, no maxMemory);
    hv2: db (shut off, 1 of 2 vCPUs, its one DIMM slot used)."""
    hv1 = hypervisor.add_host(FakeConnection([
        domain('web'),
        domain('full', maximum=4, enabled=(0, 1, 2, 3), cells=((0, '0-3', 524288),), max_memory_kib=None),
    ], uri=HV1))
    hv2 = hypervisor.add_host(FakeConnection([
        domain('db', maximum=2, enabled=(0,), state=libvirt.VIR_DOMAIN_SHUTOFF, cells=((0, '0-1', 524288),),
               slots=1, memory_kib=524288 + 262144, devices=DIMM % 262144),
    ], uri=HV2))
    return hv1, hv2


def write_source(tmp_path, name='kvm.libvirt_domains.yml', **options):
    options.setdefault('hypervisors', [dict(name='hv1', uri=HV1), dict(name='hv2', uri=HV2)])
    path = tmp_path / name
    path.write_text(yaml.safe_dump(dict(plugin='kvm.hotplug.libvirt_domains', **options)))
    return str(path)


def new_plugin():
    """The plugin as ansible loads it (with its documented options)."""
    return inventory_loader.get('kvm.hotplug.libvirt_domains')


def parse(path, mocker, cache=False):
    plugin = new_plugin()
    plugin.display = mocker.Mock()
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), path, cache=cache)
    if plugin.get_option('cache'):
        plugin.update_cache_if_changed()   # what ansible's InventoryManager does after a parse
    return inventory, plugin


def members(inventory, group):
    return sorted(host.name for host in inventory.groups[group].get_hosts()) if group in inventory.groups else []


def hostvar(inventory, host, name):
    return inventory.get_host(host).get_vars()[name]


def test_verify_file(tmp_path):
    plugin = new_plugin()
    for name, accepted in (('kvm.libvirt_domains.yml', True), ('libvirt_domains.yaml', True),
                           ('libvirt_domains.json', False), ('inventory.yml', False)):
        path = tmp_path / name
        path.write_text('plugin: kvm.hotplug.libvirt_domains\n')
        assert plugin.verify_file(str(path)) is accepted, name


def test_hosts_groups_and_variables(fleet, tmp_path, mocker):
    inventory, plugin = parse(write_source(tmp_path), mocker)
    assert sorted(inventory.hosts) == ['db', 'full', 'web']
    assert members(inventory, 'hypervisor_hv1') == ['full', 'web']
    assert members(inventory, 'hypervisor_hv2') == ['db']
    assert members(inventory, 'state_running') == ['full', 'web']
    assert members(inventory, 'state_shutoff') == ['db']
    assert members(inventory, 'vcpu_headroom') == ['db', 'web']
    # full has no maxMemory; db's only DIMM slot is taken, but a first virtio-mem device needs no DIMM slot
    assert members(inventory, 'memory_headroom') == ['db', 'web']
    assert hostvar(inventory, 'web', 'kvm_hotplug_hypervisor') == 'hv1'
    assert hostvar(inventory, 'db', 'kvm_hotplug_uri') == HV2
    web = hostvar(inventory, 'web', 'kvm_hotplug_domain')
    assert web['vcpus'] == dict(current=2, maximum=8, free=6)
    assert web['memory'] == dict(current_kib=524288, balloon_kib=524288, maximum_kib=4 * GIB, free_kib=4 * GIB - 524288,
                                 slots=8, used_slots=0, free_slots=8, virtio_mem_free_kib=0, hotpluggable=True,
                                 growable_kib=4 * GIB - 524288)
    assert (web['name'], web['state'], web['active'], web['persistent'], web['definition'], web['hypervisor']) == (
        'web', 'running', True, True, 'live', 'hv1')
    db = hostvar(inventory, 'db', 'kvm_hotplug_domain')
    assert (db['state'], db['active'], db['definition'], db['vcpus']['free']) == ('shutoff', False, 'config', 1)
    assert (db['memory']['free_slots'], db['memory']['free_kib'], db['memory']['growable_kib']) == (
        0, 4 * GIB - 786432, 4 * GIB - 786432)
    full = hostvar(inventory, 'full', 'kvm_hotplug_domain')
    assert full['vcpus']['free'] == 0
    assert (full['memory']['maximum_kib'], full['memory']['hotpluggable'], full['memory']['growable_kib']) == (
        None, False, 0)
    plugin.display.warning.assert_not_called()


@pytest.mark.parametrize('xml, expected', [
    # no guest NUMA cells: memory hotplug is impossible whatever maxMemory says
    (dict(cells=()), dict(free_kib=4 * GIB - 524288, hotpluggable=False, growable_kib=0)),
    # a virtio-mem device of 1 GiB with 256 MiB plugged: libvirt counts it whole in <memory>
    (dict(memory_kib=524288 + GIB, devices=VIRTIO_MEM % (GIB, 262144)),
     dict(free_kib=3 * GIB - 524288, virtio_mem_free_kib=GIB - 262144, growable_kib=3 * GIB - 524288)),
    # the same with maxMemory taken: only the virtio-mem device can grow
    (dict(memory_kib=524288 + GIB, max_memory_kib=524288 + GIB, devices=VIRTIO_MEM % (GIB, 262144)),
     dict(free_kib=0, virtio_mem_free_kib=GIB - 262144, growable_kib=GIB - 262144)),
    # every slot used: no DIMM, but a first virtio-mem device takes no DIMM slot
    (dict(slots=1, memory_kib=524288 + 262144, devices=DIMM % 262144),
     dict(free_slots=0, used_slots=1, free_kib=4 * GIB - 786432, growable_kib=4 * GIB - 786432)),
    # maxMemory reached
    (dict(max_memory_kib=524288), dict(free_kib=0, growable_kib=0, hotpluggable=True)),
])
def test_memory_headroom(xml, expected):
    view = libvirt_domains.memory_headroom(parse_domain_xml(domain_xml(**xml)))
    assert dict((k, view[k]) for k in expected) == expected


def test_vcpu_headroom():
    assert libvirt_domains.vcpu_headroom(parse_domain_xml(domain_xml(maximum=4, enabled=(0, 1, 2)))) == dict(
        current=3, maximum=4, free=1)


def test_unreachable_hypervisor_warns_and_goes_on(fleet, tmp_path, mocker):
    path = write_source(tmp_path, hypervisors=[dict(name='hv1', uri=HV1), dict(name='hv9', uri='qemu+ssh://nowhere/system')])
    inventory, plugin = parse(path, mocker)
    assert sorted(inventory.hosts) == ['full', 'web']
    message = plugin.display.warning.call_args_list[0][0][0]
    assert 'hypervisor hv9 (qemu+ssh://nowhere/system) was not read' in message
    assert 'cannot connect to libvirt at qemu+ssh://nowhere/system' in message


def test_unreachable_hypervisor_fails_when_asked(fleet, tmp_path, mocker):
    path = write_source(tmp_path, fail_on_unreachable=True,
                        hypervisors=[dict(name='hv1', uri=HV1), dict(name='hv9', uri='qemu+ssh://nowhere/system')])
    with pytest.raises(AnsibleError, match=r'hypervisor hv9 \(qemu\+ssh://nowhere/system\) was not read'):
        parse(path, mocker)


def test_connections_are_read_only(fleet, tmp_path, mocker):
    parse(write_source(tmp_path), mocker)
    assert [c[0][0] for c in libvirt_domains.libvirt.openReadOnly.call_args_list] == [HV1, HV2]
    libvirt_domains.libvirt.open.assert_not_called()


def test_domain_on_two_hypervisors_prefers_the_running_one(hypervisor, tmp_path, mocker):
    hypervisor.add_host(FakeConnection([domain('app', state=libvirt.VIR_DOMAIN_SHUTOFF)], uri=HV1))
    hypervisor.add_host(FakeConnection([domain('app', enabled=(0, 1, 2))], uri=HV2))
    inventory, plugin = parse(write_source(tmp_path), mocker)
    assert list(inventory.hosts) == ['app']
    assert hostvar(inventory, 'app', 'kvm_hotplug_hypervisor') == 'hv2'
    assert hostvar(inventory, 'app', 'kvm_hotplug_domain')['vcpus']['current'] == 3
    assert hostvar(inventory, 'app', 'kvm_hotplug_duplicates') == [dict(hypervisor='hv1', uri=HV1, state='shutoff')]
    assert members(inventory, 'hypervisor_hv1') == []
    assert 'domain app is on hv1 (shutoff), hv2 (running); the inventory host is the one on hv2' in (
        plugin.display.warning.call_args[0][0])


def test_domain_on_two_hypervisors_equal_takes_the_first_listed(hypervisor, tmp_path, mocker):
    hypervisor.add_host(FakeConnection([domain('app', state=libvirt.VIR_DOMAIN_SHUTOFF)], uri=HV1))
    hypervisor.add_host(FakeConnection([domain('app', state=libvirt.VIR_DOMAIN_SHUTOFF)], uri=HV2))
    path = write_source(tmp_path, hypervisors=[dict(name='hv2', uri=HV2), dict(name='hv1', uri=HV1)])
    inventory, _plugin = parse(path, mocker)
    assert hostvar(inventory, 'app', 'kvm_hotplug_hypervisor') == 'hv2'


def test_compose_groups_and_keyed_groups(fleet, tmp_path, mocker):
    path = write_source(
        tmp_path,
        groups=dict(vcpu_room_2="kvm_hotplug_domain.state == 'running' and kvm_hotplug_domain.vcpus.free >= 2"),
        keyed_groups=[dict(key='kvm_hotplug_domain.vcpus.free | string', prefix='free_vcpus'),
                      dict(key='kvm_hotplug_domain.domain_type', prefix='type')],
        compose=dict(free_memory_mib='kvm_hotplug_domain.memory.free_kib // 1024'))
    inventory, _plugin = parse(path, mocker)
    assert members(inventory, 'vcpu_room_2') == ['web']
    assert members(inventory, 'free_vcpus_6') == ['web']
    assert members(inventory, 'free_vcpus_0') == ['full']
    assert members(inventory, 'free_vcpus_1') == ['db']
    assert members(inventory, 'type_qemu') == ['db', 'full', 'web']
    assert hostvar(inventory, 'web', 'free_memory_mib') == 4096 - 512


def test_cache_is_used_and_refreshed(fleet, tmp_path, mocker):
    hv1, _hv2 = fleet
    path = write_source(tmp_path, cache=True, cache_plugin='ansible.builtin.jsonfile',
                        cache_connection=str(tmp_path / 'cache'))
    inventory, _plugin = parse(path, mocker, cache=False)   # a refresh: read libvirt, write the cache
    assert sorted(inventory.hosts) == ['db', 'full', 'web']
    del hv1.domains['web']
    opened = libvirt_domains.libvirt.openReadOnly.call_count
    inventory, _plugin = parse(path, mocker, cache=True)    # from the cache: libvirt not asked
    assert sorted(inventory.hosts) == ['db', 'full', 'web']
    assert members(inventory, 'vcpu_headroom') == ['db', 'web']
    assert libvirt_domains.libvirt.openReadOnly.call_count == opened
    inventory, _plugin = parse(path, mocker, cache=False)   # refreshed again
    assert sorted(inventory.hosts) == ['db', 'full']


def test_cache_not_written_when_a_hypervisor_was_missed(fleet, tmp_path, mocker):
    options = dict(cache=True, cache_plugin='ansible.builtin.jsonfile', cache_connection=str(tmp_path / 'cache'))
    partial = write_source(tmp_path, hypervisors=[dict(name='hv1', uri=HV1), dict(name='hv9', uri='qemu:///nowhere')],
                           **options)
    _inventory, plugin = parse(partial, mocker, cache=False)
    assert any('not writing the inventory cache' in c[0][0] for c in plugin.display.warning.call_args_list)
    opened = libvirt_domains.libvirt.openReadOnly.call_count
    inventory, _plugin = parse(partial, mocker, cache=True)   # nothing cached: libvirt read again
    assert libvirt_domains.libvirt.openReadOnly.call_count == opened + 2
    assert sorted(inventory.hosts) == ['full', 'web']


def test_domain_that_vanishes_is_skipped(fleet, tmp_path, mocker):
    hv1, _hv2 = fleet
    mocker.patch.object(hv1.domains['web'], 'state', side_effect=libvirt_domains.libvirt.libvirtError('gone'))
    inventory, plugin = parse(write_source(tmp_path), mocker)
    assert sorted(inventory.hosts) == ['db', 'full']
    assert 'hypervisor hv1 (%s): a domain was skipped: reading the state of domain web' % HV1 in (
        plugin.display.warning.call_args[0][0])


@pytest.mark.parametrize('hypervisors, message', [
    ([], 'hypervisors lists no KVM host'),
    ([dict(uri=HV1)], r'hypervisors\[0\] must be a dictionary with a name'),
    (['hv1'], r'hypervisors\[0\] must be a dictionary with a name'),
    ([dict(name='hv1', url=HV1)], r'hypervisors\[0\] \(hv1\): unknown key url'),
    ([dict(name='hv1'), dict(name='hv1', uri=HV2)], 'hypervisors names a host twice: hv1, hv1'),
])
def test_bad_hypervisors_option(hypervisors, message, fleet, tmp_path, mocker):
    with pytest.raises(AnsibleParserError, match=message):
        parse(write_source(tmp_path, hypervisors=hypervisors), mocker)


def test_uri_defaults_to_qemu_system(hypervisor, tmp_path, mocker):
    hypervisor.add_host(FakeConnection([domain('local')], uri='qemu:///system'))
    hypervisor.add_host(FakeConnection([], uri=HV2))
    inventory, _plugin = parse(write_source(tmp_path, hypervisors=[dict(name='localhost')]), mocker)
    assert hostvar(inventory, 'local', 'kvm_hotplug_uri') == 'qemu:///system'
    assert members(inventory, 'hypervisor_localhost') == ['local']


def test_missing_libvirt_binding(tmp_path, mocker):
    mocker.patch.object(libvirt_domains, 'libvirt', None)
    with pytest.raises(AnsibleError, match='libvirt-python'):
        parse(write_source(tmp_path), mocker)


def test_the_documented_example_groups(fleet, tmp_path, mocker):
    """The second EXAMPLES document (the "2 more vCPUs" groups), on hv1 as its only hypervisor."""
    example = list(yaml.safe_load_all(libvirt_domains.EXAMPLES))[1]
    example.update(hypervisors=[dict(name='hv1', uri=HV1)], cache_connection=str(tmp_path / 'cache'))
    path = tmp_path / 'example.libvirt_domains.yml'
    path.write_text(yaml.safe_dump(example))
    inventory, _plugin = parse(str(path), mocker)
    assert members(inventory, 'vcpu_room_2') == ['web']
    assert members(inventory, 'memory_room_1g') == ['web']
    assert members(inventory, 'free_vcpus_6') == ['web']
    assert members(inventory, 'type_qemu') == ['full', 'web']
    assert hostvar(inventory, 'full', 'free_memory_mib') == 0
