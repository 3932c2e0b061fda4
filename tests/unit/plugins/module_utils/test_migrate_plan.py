"""domain_migrate's pre-checks on XML captured from the lab (tests/unit/plugins/module_utils/fixtures/migrate/).

The fixtures are real: `virsh capabilities` of the fleet lab's hv1 and hv2, `virsh domcapabilities` of hv2 for the
lab guests' emulator and machine, and the live and persistent XML of a lab guest after a vCPU hot-add (3 of 8) and
two 128 MiB DIMM hot-adds.  Limits one machine cannot produce (a lower vCPU maximum, an incompatible CPU, too
little free memory, fewer address bits) are made by editing copies of them here, each edit asserted to apply.
"""
from __future__ import annotations

import os

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import parse_domain_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.snapshot import DomainSnapshot, JobInfo
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.definition_check import parse_domain_capabilities
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.facts import (
    DestinationFacts, HostFacts, MigrationRequest, Peer, SourceFacts, needed_memory_kib, parse_host_capabilities,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.plan import ALREADY_THERE, MIGRATE, plan_migration

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'migrate')
DEST_URI = 'qemu+tcp://127.0.1.2/system'
# libvirt's own answer for an incompatible model, captured with compareHypervisorCPU(..., FAIL_INCOMPATIBLE) on hv2
INCOMPATIBLE = ('the CPU is incompatible with host CPU: Host CPU does not provide required features: vme, pcid, '
                'x2apic, tsc-deadline, hle, invpcid, rtm, avx512f')


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def edited(name, old, new):
    text = fixture(name)
    assert old in text, 'the edit %r does not apply to %s' % (old, name)
    return text.replace(old, new)


LIVE = fixture('hotplugged-live.xml')
CONFIG = fixture('hotplugged-inactive.xml')
DOMCAPS = 'hv2-domcapabilities-pc-i440fx-7.2-qemu.xml'


def snap(live=LIVE, config=CONFIG, state='running', persistent=True, job=None):
    live_model = parse_domain_xml(live) if state in ('running', 'paused') else None
    config_model = parse_domain_xml(config) if persistent else None
    model = live_model or config_model
    return DomainSnapshot(name=model.name, uuid=model.uuid, id=1 if live_model else None, state=state, state_reason=1,
                          persistent=persistent, autostart=False, job=job or JobInfo(False, 'none', None),
                          live=live_model, config=config_model)


def host(caps_name, **changes):
    uuid, bits = parse_host_capabilities(changes.pop('caps_text', None) or fixture(caps_name))
    values = dict(uri='qemu+tcp://x/system', host_uuid=uuid, hypervisor='QEMU', version=7002022, lib_version=9000000,
                  free_memory_kib=3675 * 1024, online_cpus=(0, 1, 2, 3), phys_addr_bits=bits)
    values.update(changes)
    return HostFacts(**values)


def facts(snapshot=None, qemu_vcpus=(0, 1, 2), source_host=None, dest_host=None, by_name=None, by_uuid=None,
          domcaps_text=None, domcaps_error=None, cpu_compare='superset', cpu_detail=None, definition=CONFIG):
    snapshot = snapshot if snapshot is not None else snap()
    source = SourceFacts(host=source_host or host('hv1-capabilities.xml'), snapshot=snapshot,
                         qemu_vcpus=qemu_vcpus if snapshot and snapshot.live else None, definition_xml=definition)
    domcaps = None if domcaps_error else parse_domain_capabilities(domcaps_text or fixture(DOMCAPS))
    dest = DestinationFacts(host=dest_host or host('hv2-capabilities.xml'), by_name=by_name, by_uuid=by_uuid,
                            domcaps=domcaps, domcaps_error=domcaps_error, cpu_compare=cpu_compare,
                            cpu_detail=cpu_detail)
    return source, dest


def plan(request=None, **kwargs):
    source, dest = facts(**kwargs)
    return plan_migration(request or MigrationRequest(name='mig-a', dest_uri=DEST_URI), source, dest)


def refused(check, words, request=None, **kwargs):
    result = plan(request=request, **kwargs)
    assert result.action is None
    assert result.checks[check]['ok'] is False, result.checks
    assert '\n' not in result.refusal
    assert result.refusal.startswith('refusing to migrate domain mig-a to %s: ' % DEST_URI)
    assert result.refusal.endswith('; nothing was moved')
    for word in words:
        assert word in result.refusal, result.refusal
    return result


def peer(name='mig-a', uuid=None, state='running', persistent=True):
    uuid = uuid or parse_domain_xml(LIVE).uuid
    return Peer(name=name, uuid=uuid, state=state, active=state in ('running', 'paused'), persistent=persistent)


# --- the captured lab passes every check -------------------------------------------------------------------

def test_the_lab_pair_passes_every_check():
    result = plan()
    assert result.action == MIGRATE and result.refusal is None
    failed = [name for name, check in result.checks.items() if check['ok'] is False]
    assert failed == []
    assert result.checks['bootable']['value'] == dict(vcpu_max=dict(domain=8, destination=255), problems=[])
    assert result.checks['free_memory']['value']['needed_mib'] == 768
    assert result.checks['max_memory']['value']['phys_addr_bits'] == 48


def test_captured_capabilities_parse():
    caps = parse_domain_capabilities(fixture(DOMCAPS))
    assert (caps.vcpu_max, caps.machine, caps.virt_type) == (255, 'pc-i440fx-7.2', 'qemu')
    uuid_1, _bits = parse_host_capabilities(fixture('hv1-capabilities.xml'))
    uuid_2, bits = parse_host_capabilities(fixture('hv2-capabilities.xml'))
    assert uuid_1 != uuid_2 and bits == 48


def test_needed_memory_is_boot_memory_plus_hot_added_dimms():
    boot, plugged = needed_memory_kib(parse_domain_xml(LIVE))
    assert (boot, plugged) == (512 * 1024, 256 * 1024)


# --- refusals one machine cannot produce -------------------------------------------------------------------

def test_lower_destination_vcpu_maximum():
    # the domain runs 3 of 8 vCPUs: it is the maximum that must fit, or vCPUs 4-7 could never be hot-added there
    result = refused('bootable', ['would not start on the destination', '8 vCPUs are above the limit of 4 vCPUs',
                                  'pc-i440fx-7.2'],
                     domcaps_text=edited(DOMCAPS, "<vcpu max='255'/>", "<vcpu max='4'/>"))
    assert result.checks['bootable']['value']['vcpu_max'] == dict(domain=8, destination=4)


def test_vcpu_maximum_equal_to_the_destination_limit_is_fine():
    result = plan(domcaps_text=edited(DOMCAPS, "<vcpu max='255'/>", "<vcpu max='8'/>"))
    assert result.action == MIGRATE


def test_incompatible_cpu_model():
    refused('cpu', ['CPU of domain mig-a is incompatible', 'avx512f'], cpu_compare='incompatible',
            cpu_detail=INCOMPATIBLE)


def test_cpu_not_compared_is_reported_not_refused():
    result = plan(cpu_compare='not_compared', cpu_detail='host-passthrough: libvirt cannot compare it')
    assert result.action == MIGRATE and result.checks['cpu']['ok'] is None


def test_too_little_free_memory():
    refused('free_memory', ['needs 768 MiB', '512 MiB boot memory + 256 MiB hot-added', 'has 700 MiB free'],
            dest_host=host('hv2-capabilities.xml', free_memory_kib=700 * 1024))


def test_fewer_guest_address_bits_than_max_memory_needs():
    caps = edited('hv2-capabilities.xml', "<maxphysaddr mode='emulate' bits='48'/>",
                  "<maxphysaddr mode='emulate' bits='32'/>")
    refused('max_memory', ['maxMemory of 4096 MiB', '32-bit'], dest_host=host(None, caps_text=caps))


def test_too_many_memory_slots():
    live = LIVE.replace("<maxMemory slots='8'", "<maxMemory slots='300'")
    config = CONFIG.replace("<maxMemory slots='8'", "<maxMemory slots='300'")
    assert live != LIVE
    refused('max_memory', ['300 memory slots', 'QEMU allows 256'], snapshot=snap(live, config))


def test_destination_without_the_emulator_or_machine():
    refused('machine', ['no emulator', 'pc-i440fx-7.2'],
            domcaps_error="invalid argument: the machine 'pc-i440fx-7.2' is not supported by emulator "
                          "'/usr/bin/qemu-system-x86_64'")


def test_older_destination_hypervisor():
    refused('hypervisor', ['QEMU 7.1.0 is older than the source\'s 7.2.22'],
            dest_host=host('hv2-capabilities.xml', version=7001000))


def test_other_hypervisor_type():
    refused('hypervisor', ['runs Xen'], dest_host=host('hv2-capabilities.xml', hypervisor='Xen'))


def test_destination_is_the_source_host():
    refused('destination_host', ['same host as the source'], dest_host=host('hv1-capabilities.xml'))


def test_pinned_to_cpus_the_destination_lacks():
    pins = "<cputune><vcpupin vcpu='0' cpuset='6'/><emulatorpin cpuset='0-1'/></cputune>"
    live = LIVE.replace('<resource>', pins + '<resource>', 1)
    assert live != LIVE
    refused('pinning', ['pinned to host CPUs 6'], snapshot=snap(live, CONFIG))


def test_definition_the_destination_could_not_start():
    broken = CONFIG.replace("cores='4'", "cores='3'")
    assert broken != CONFIG
    refused('bootable', ['would not start on the destination', 'gives 6 vCPUs, not the maximum of 8'],
            definition=broken)


# --- refusals the lab can produce too ----------------------------------------------------------------------

def test_another_domain_of_that_name():
    refused('name_uuid', ['another domain named mig-a', '0000'],
            by_name=peer(uuid='00000000-0000-0000-0000-000000000001', state='shutoff'))


def test_another_domain_with_that_uuid():
    refused('name_uuid', ['domain other on the destination has the UUID'], by_uuid=peer(name='other'))


def test_same_domain_defined_shut_off_on_the_destination():
    same = peer(state='shutoff')
    refused('name_uuid', ['already defined on the destination, shutoff'], by_name=same, by_uuid=same)


def test_running_on_both_hosts_is_refused():
    same = peer(state='running')
    refused('name_uuid', ['running on the destination too'], by_name=same, by_uuid=same)


def test_shut_off_domain_with_live_true():
    refused('state', ['is shutoff', 'live migration needs a running domain'], snapshot=snap(state='shutoff'))


def test_running_domain_with_live_false():
    refused('state', ['is running', 'live: false only moves'],
            request=MigrationRequest(name='mig-a', dest_uri=DEST_URI, live=False))


def test_job_running():
    refused('job', ['a migration out job is running on domain mig-a'],
            snapshot=snap(job=JobInfo(True, 'unbounded', 'migration_out')))


def test_stale_libvirt_view():
    refused('views', ['stale', 'libvirt enables vCPUs 0-2, QEMU has 0-1'], qemu_vcpus=(0, 1))


def test_live_hot_adds_missing_from_the_persistent_definition():
    config = CONFIG.replace("current='3'", "current='2'")
    config = config.replace("<vcpu id='2' enabled='yes'", "<vcpu id='2' enabled='no'")
    first_dimm = config.index("<memory model='dimm'")
    config = config[:first_dimm] + config[config.index('</memory>', first_dimm) + len('</memory>'):]
    assert config.count("model='dimm'") == CONFIG.count("model='dimm'") - 1
    result = refused('persistent_definition', ['vCPUs 2', '1 memory device(s) (dimm 128 MiB node 0)',
                                               'lose them at the next boot'], snapshot=snap(LIVE, config))
    # with persistent: false nothing persistent is written on the destination, so it is no limit
    request = MigrationRequest(name='mig-a', dest_uri=DEST_URI, persistent=False)
    assert plan(request=request, snapshot=snap(LIVE, config)).action == MIGRATE
    assert result.checks['persistent_definition']['value']['live_vcpus'] == '0-2'


@pytest.mark.parametrize('request_args, words', [
    (dict(live=False, timeout=5, timeout_action='postcopy'), ['postcopy needs live: true']),
    (dict(live=False, persistent=False), ['needs persistent: true']),
])
def test_option_combinations(request_args, words):
    request = MigrationRequest(name='mig-a', dest_uri=DEST_URI, **request_args)
    refused('options', words, request=request, snapshot=snap(state='shutoff'))


def test_transient_domain_has_no_definition_to_move_offline():
    request = MigrationRequest(name='mig-a', dest_uri=DEST_URI, live=False)
    refused('persistent_source', ['transient'], request=request, snapshot=_transient_off())


def _transient_off():
    base = snap(state='shutoff')
    return DomainSnapshot(name=base.name, uuid=base.uuid, id=None, state='shutoff', state_reason=1, persistent=False,
                          autostart=False, job=base.job, live=None, config=parse_domain_xml(CONFIG))


# --- where the domain already is ---------------------------------------------------------------------------

def test_running_on_the_destination_and_gone_from_the_source_is_already_there():
    same = peer(state='running')
    source, dest = facts(by_name=same, by_uuid=same)
    source = SourceFacts(host=source.host, snapshot=None)
    result = plan_migration(MigrationRequest(name='mig-a', dest_uri=DEST_URI), source, dest)
    assert result.action == ALREADY_THERE and not result.changed and result.refusal is None


def test_running_on_the_destination_with_a_shut_off_definition_left_on_the_source_is_already_there():
    same = peer(state='running')
    result = plan(snapshot=snap(state='shutoff'), by_name=same, by_uuid=same)
    assert result.action == ALREADY_THERE
    assert any('still on the source' in note for note in result.notes)


def test_offline_move_already_done():
    same = peer(state='shutoff')
    source, dest = facts(by_name=same, by_uuid=same)
    source = SourceFacts(host=source.host, snapshot=None)
    result = plan_migration(MigrationRequest(name='mig-a', dest_uri=DEST_URI, live=False), source, dest)
    assert result.action == ALREADY_THERE


def test_nowhere_is_refused():
    source, dest = facts()
    source = SourceFacts(host=source.host, snapshot=None)
    result = plan_migration(MigrationRequest(name='mig-a', dest_uri=DEST_URI), source, dest)
    assert result.action is None and 'not defined on the source' in result.refusal
    assert 'nor on the destination' in result.refusal
