from __future__ import annotations

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.snapshot import JobInfo
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._vcpu.plan import VcpuRequest, plan_vcpus
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_utils.domain_xml import domain_xml, snapshot


def plan(request=None, state='running', persistent=True, job=None, host=None, guest=None, **xml):
    xml_text = domain_xml(**xml)
    return plan_vcpus(request or VcpuRequest(), snapshot(xml_text, state=state, persistent=persistent, job=job),
                      host_online_cpus=host, guest_view=guest)


def refused(match, **kwargs):
    with pytest.raises(HotplugError, match=match):
        plan(**kwargs)


# --- choosing vCPUs for a count ---------------------------------------------------------------------

@pytest.mark.parametrize('count, enabled, numa_node, enable, disable', [
    (4, (0, 1), None, (2, 3), ()),                # lowest free ids first
    (4, (0, 1), 1, (4, 5), ()),                   # from cell 1
    (2, (0, 1, 2, 3), None, (), (3, 2)),          # highest removable first
    (3, (0, 1, 4, 5), 1, (), (5,)),               # remove from cell 1 only
    (2, (0, 1), None, (), ()),                    # nothing to do
    (8, (0, 1), None, (2, 3, 4, 5, 6, 7), ()),    # up to the maximum
    (1, (0, 1, 2), None, (), (2, 1)),             # down to vCPU 0 alone
])
def test_count_selection(count, enabled, numa_node, enable, disable):
    result = plan(VcpuRequest(count=count, numa_node=numa_node), enabled=enabled)
    assert result.live.enable == enable
    assert result.live.disable == disable
    assert result.config.after == result.live.after  # the config follows the running domain
    assert result.changed == bool(enable or disable)


def test_count_removal_skips_pinned_vcpus():
    result = plan(VcpuRequest(count=2), enabled=(0, 1, 2, 3), pins={3: '1'})
    assert result.live.disable == (2, 1)
    assert 3 in result.live.after


def test_count_removal_refuses_when_only_pinned_vcpus_could_go():
    refused(r'cannot remove 1 vCPU\(s\) .*only 0 can go .*vCPUs 2-3 are pinned by <cputune>',
            request=VcpuRequest(count=2), enabled=(0, 2, 3), fixed=(0,), pins={2: '0', 3: '1'})


def test_explicit_vcpus_may_remove_a_pinned_vcpu():
    result = plan(VcpuRequest(vcpus=(3,), state='disabled'), enabled=(0, 1, 2, 3), pins={3: '1'})
    assert result.live.disable == (3,)


def test_count_removal_respects_hotpluggable():
    refused(r'only 0 can go .*vCPUs 1 are not hotpluggable',
            request=VcpuRequest(count=1), enabled=(0, 1), fixed=(0, 1))


@pytest.mark.parametrize('count, match', [
    (9, r'count 9 is above the maximum of 8 vCPUs of the live domain .*raise it with maximum'),
    (0, r'count must be at least 1'),
    (-2, r'count must be at least 1'),
])
def test_count_limits(count, match):
    refused(match, request=VcpuRequest(count=count))


def test_numa_node_must_exist():
    refused(r'numa_node 3: domain dom has no guest NUMA cell 3 \(cells: 0, 1\)', request=VcpuRequest(count=3, numa_node=3))


def test_numa_node_needs_cells():
    refused(r'numa_node 0: domain dom has no guest NUMA cells', request=VcpuRequest(count=3, numa_node=0), cells=())


def test_numa_node_without_free_vcpus():
    refused(r'guest NUMA cell 0 of domain dom has 0 free vCPUs \(none\), 1 needed',
            request=VcpuRequest(count=5, numa_node=0), enabled=(0, 1, 2, 3))


def test_numa_node_with_too_few_free_vcpus():
    refused(r'guest NUMA cell 1 of domain dom has 2 free vCPUs \(6-7\), 3 needed',
            request=VcpuRequest(count=7, numa_node=1), enabled=(0, 1, 4, 5))


# --- explicit vCPU ids -----------------------------------------------------------------------------

@pytest.mark.parametrize('vcpus, state, match', [
    ((0,), 'disabled', r'vCPU 0 of domain dom cannot be hot-plugged or unplugged'),
    ((0,), 'enabled', r'vCPU 0'),
    ((8,), 'enabled', r'vCPUs 8 do not exist in the live domain of domain dom, which has vCPUs 0-7'),
    ((2, 12), 'enabled', r'vCPUs 12 do not exist'),
])
def test_explicit_ids_refused(vcpus, state, match):
    refused(match, request=VcpuRequest(vcpus=vcpus, state=state))


def test_non_hotpluggable_vcpu_refused_live():
    refused(r'vCPUs 1 of domain dom are not hotpluggable',
            request=VcpuRequest(vcpus=(1,), state='disabled'), enabled=(0, 1), fixed=(0, 1))


def test_non_hotpluggable_vcpu_allowed_in_config_only():
    result = plan(VcpuRequest(vcpus=(1,), state='disabled', live=False), enabled=(0, 1), fixed=(0, 1))
    assert result.live is None and result.config.disable == (1,)


def test_explicit_ids_already_in_state_change_nothing():
    result = plan(VcpuRequest(vcpus=(1,), state='enabled'), enabled=(0, 1))
    assert not result.changed


# --- domain state, migration, transient ------------------------------------------------------------

def test_migration_refused():
    refused(r'refusing to change vCPUs on domain dom: a migration out job is running',
            request=VcpuRequest(count=4), job=JobInfo(True, 'unbounded', 'migration_out'))


def test_shut_off_live_only_refused():
    refused(r'domain dom is shutoff: live changes need a running domain',
            request=VcpuRequest(count=4, config=False), state='shutoff')


def test_shut_off_changes_config_with_warning():
    result = plan(VcpuRequest(count=4), state='shutoff')
    assert result.live is None
    assert result.config.enable == (2, 3)
    assert any('live is ignored' in w for w in result.warnings)


def test_transient_domain_ignores_config():
    result = plan(VcpuRequest(count=4), persistent=False)
    assert result.config is None and result.live.enable == (2, 3)
    assert any('transient' in w for w in result.warnings)


def test_transient_config_only_refused():
    refused(r'transient: it has no persistent config', request=VcpuRequest(count=4, live=False), persistent=False)


def test_paused_domain_refuses_removal():
    refused(r'domain dom is paused: the guest cannot eject vCPUs 3', request=VcpuRequest(count=3),
            enabled=(0, 1, 2, 3), state='paused')


def test_paused_domain_adds_with_warning():
    result = plan(VcpuRequest(count=3), state='paused')
    assert result.live.enable == (2,)
    assert any('paused' in w for w in result.warnings)


def test_pmsuspended_refused():
    refused(r'pmsuspended', request=VcpuRequest(count=3), state='pmsuspended')


# --- pinning and host CPUs -------------------------------------------------------------------------

def test_added_vcpu_pinned_to_offline_host_cpus_refused():
    refused(r'vCPU 2 of domain dom is pinned to host CPUs 6-7, none of which is online',
            request=VcpuRequest(count=3), pins={2: '6-7'}, host=[0, 1])


def test_added_vcpu_pinned_to_online_host_cpu_allowed():
    assert plan(VcpuRequest(count=3), pins={2: '1'}, host=[0, 1]).live.enable == (2,)


# --- maximum ---------------------------------------------------------------------------------------

def test_maximum_must_fit_topology():
    refused(r'maximum 6 does not fit the CPU topology of domain dom: sockets=2 x dies=1 x cores=4 x threads=1 gives 8',
            request=VcpuRequest(maximum=6))


def test_maximum_must_cover_numa_cells():
    refused(r'maximum 6 is too small for the guest NUMA cells of domain dom, which place vCPUs up to 7',
            request=VcpuRequest(maximum=6), topology=None)


def test_maximum_would_drop_pinning():
    refused(r'maximum 3 would drop the <cputune> pinning of vCPUs 3', request=VcpuRequest(maximum=3),
            topology=None, cells=(), maximum=4, pins={3: '1'})


def test_maximum_below_enabled_count():
    refused(r'count 3 is above the maximum of 2 vCPUs of the persistent config of domain dom',
            request=VcpuRequest(maximum=2, count=3, live=False), topology=None, cells=(), maximum=4)


def test_maximum_change_is_config_only_with_a_note():
    result = plan(VcpuRequest(maximum=6), topology=None, cells=(), maximum=4)
    assert result.maximum_after == 6 and result.live is None
    assert 'takes effect at the next boot' in result.notes[0]
    assert result.changed


def test_maximum_unchanged_is_no_change():
    assert not plan(VcpuRequest(maximum=8)).changed


def test_maximum_needs_config():
    refused(r'maximum changes the persistent config', request=VcpuRequest(maximum=6, config=False),
            topology=None, cells=())


def test_config_count_may_use_the_new_maximum():
    result = plan(VcpuRequest(maximum=6, count=5, live=False), topology=None, cells=(), maximum=4)
    assert result.config.after == (0, 1, 2, 3, 4)


# --- guest agent -----------------------------------------------------------------------------------

GUEST = dict(available=True, present=[0, 1, 2, 3], online=[0, 1, 2, 3], offlinable=[1, 2, 3], online_count=4)


def test_guest_offline_highest_offlinable():
    result = plan(VcpuRequest(count=2, guest_agent=True), enabled=(0, 1, 2, 3), guest=GUEST)
    assert result.guest.offline == (3, 2) and result.live is None and result.config is None


def test_guest_online_present_cpus():
    guest = dict(GUEST, online=[0, 1], online_count=2)
    assert plan(VcpuRequest(count=4, guest_agent=True), guest=guest).guest.online == (2, 3)


def test_guest_count_above_present_refused():
    refused(r'has 4 CPUs present; the guest agent can only online CPUs the guest already has',
            request=VcpuRequest(count=5, guest_agent=True), guest=GUEST)


def test_guest_cannot_offline_cpu0():
    refused(r'cannot offline CPUs 0', request=VcpuRequest(vcpus=(0,), state='disabled', guest_agent=True), guest=GUEST)


def test_guest_agent_unavailable_refused():
    refused(r'guest agent of domain dom cannot be asked: not connected',
            request=VcpuRequest(count=2, guest_agent=True), guest=dict(available=False, reason='not connected'))


def test_guest_agent_needs_running_domain():
    refused(r'guest_agent needs a running domain', request=VcpuRequest(count=2, guest_agent=True), state='shutoff')


# --- a new maximum: whole sockets, new vCPUs in the cell numa_node names ------------------------------

def test_maximum_in_whole_sockets_puts_new_vcpus_in_the_named_cell():
    result = plan(VcpuRequest(maximum=12, numa_node=1))
    assert result.maximum_after == 12 and result.topology_after.sockets == 3
    assert [c.cpus for c in result.cells_after] == [(0, 1, 2, 3), tuple(range(4, 12))]


def test_maximum_without_numa_node_leaves_new_vcpus_in_no_cell_for_the_definition_check():
    result = plan(VcpuRequest(maximum=12))
    assert [c.cpus for c in result.cells_after] == [(0, 1, 2, 3), (4, 5, 6, 7)]


def test_maximum_numa_node_must_exist():
    refused(r'numa_node 2: domain dom has no guest NUMA cell 2 \(cells: 0, 1\)',
            request=VcpuRequest(maximum=12, numa_node=2))


def test_config_count_with_a_new_maximum_uses_the_new_vcpus_of_the_cell():
    result = plan(VcpuRequest(maximum=12, numa_node=1, count=12, live=False), enabled=tuple(range(8)))
    assert result.config.after == tuple(range(12))
