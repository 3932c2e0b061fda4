"""Truth tables of the memory planner: DIMM selection, spreading over cells, alignment, slots, maxMemory, refusals."""
from __future__ import annotations

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import MemoryDevice, parse_domain_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.plan import (
    AddDimm, AddVirtioMem, MemoryRequest, RemoveDimm, ResizeVirtioMem, SetBalloon, plan_memory, select_dimms,
    spread_over_cells,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.predict import describe_action, predict
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.sizes import memory_size_kib, memory_view, node_memory_kib

MIB = 1024
GIB = 1024 * MIB
BLOCK = 128 * MIB


def dimm(size_mib, node=0, alias=None, slot=None):
    return MemoryDevice(model='dimm', alias=alias, size_kib=size_mib * MIB, node=node, slot=slot, base=None)


def vmem(size_mib, requested_mib, node=0, alias=None, block_kib=2048, current_mib=None):
    return MemoryDevice(model='virtio-mem', alias=alias, size_kib=size_mib * MIB, node=node, slot=None, base=None,
                        requested_kib=requested_mib * MIB, block_kib=block_kib,
                        current_kib=None if current_mib is None else current_mib * MIB)


def _device_xml(device):
    target = "<size unit='KiB'>%d</size><node>%d</node>" % (device.size_kib, device.node)
    if device.model == 'virtio-mem':
        target += "<block unit='KiB'>%d</block><requested unit='KiB'>%d</requested>" % (
            device.block_kib, device.requested_kib)
        if device.current_kib is not None:
            target += "<current unit='KiB'>%d</current>" % device.current_kib
    extra = ''
    if device.alias:
        extra += "<alias name='%s'/>" % device.alias
    if device.slot is not None:
        extra += "<address type='dimm' slot='%d'/>" % device.slot
    return "<memory model='%s'><target>%s</target>%s</memory>" % (device.model, target, extra)


def domain(cells=(256, 256), devices=(), max_mib=4096, slots=8, current_mib=None):
    """A definition like the lab's lab-mem (parsed from XML): cells of MiB, memory devices, maxMemory and slots."""
    total = sum(cells) * MIB + sum(d.size_kib for d in devices)
    numa = ''.join("<cell id='%d' cpus='%d' memory='%d' unit='MiB'/>" % (i, i, m) for i, m in enumerate(cells))
    text = (
        "<domain type='qemu'><name>lab-mem</name><uuid>u</uuid>"
        + ("<maxMemory slots='%d' unit='MiB'>%d</maxMemory>" % (slots, max_mib) if max_mib is not None else '')
        + "<memory unit='KiB'>%d</memory><currentMemory unit='KiB'>%d</currentMemory>"
        % (total, total if current_mib is None else current_mib * MIB)
        + "<vcpu current='2'>8</vcpu>"
        + ("<cpu><numa>%s</numa></cpu>" % numa if cells else '')
        + "<devices><memballoon model='virtio'/>%s</devices></domain>" % ''.join(_device_xml(d) for d in devices))
    return parse_domain_xml(text)


def plan(definition, block=BLOCK, where='live', **request):
    for key in ('size', 'dimm_size', 'current_memory'):
        if key in request:
            request[key + '_kib'] = request.pop(key) * MIB
    return plan_memory(definition, MemoryRequest(**request), block, where, 'lab-mem')


def refused(definition, **request):
    with pytest.raises(HotplugError) as info:
        plan(definition, **request)
    assert '\n' not in info.value.msg
    return info.value.msg


# --- what size means ---------------------------------------------------------------

def test_size_counts_boot_dimms_and_virtio_mem_requested_size():
    model = domain(devices=[dimm(256), vmem(1024, 384)])
    assert memory_size_kib(model) == (512 + 256 + 384) * MIB
    assert model.memory_kib == (512 + 256 + 1024) * MIB  # libvirt's <memory> counts virtio-mem whole
    view = memory_view(model)
    assert (view['size_mib'], view['boot_mib'], view['total_mib']) == (1152, 512, 1792)


def test_node_memory_counts_devices_on_their_cell():
    assert node_memory_kib(domain(devices=[dimm(256, 1), vmem(1024, 128, 0)])) == {0: 384 * MIB, 1: 512 * MIB}


# --- adding DIMMs -------------------------------------------------------------------

def test_whole_difference_as_one_dimm_on_the_cell_with_least_memory():
    result = plan(domain(cells=(512, 256)), size=1024)
    assert result.actions == (AddDimm(size_kib=256 * MIB, node=1),)
    assert (result.size_before_kib, result.size_after_kib) == (768 * MIB, 1024 * MIB)


@pytest.mark.parametrize('cells, devices, count, expected_nodes', [
    ((256, 256), [], 4, [0, 1, 0, 1]),                 # ties go to the lowest cell id
    ((256, 256), [dimm(256, 0)], 3, [1, 1, 0]),        # the cell with less memory first
    ((256, 256, 256), [dimm(128, 1)], 4, [0, 2, 0, 1]),
    ((1024, 256), [], 2, [1, 1]),
])
def test_spreading_over_cells_least_memory_first(cells, devices, count, expected_nodes):
    model = domain(cells=cells, devices=devices)
    result = plan(model, size=memory_size_kib(model) // MIB + count * 128, dimm_size=128)
    assert [a.node for a in result.actions] == expected_nodes
    assert all(a.size_kib == 128 * MIB for a in result.actions)


def test_numa_node_receives_everything():
    result = plan(domain(), size=1024, dimm_size=128, numa_node=1)
    assert [a.node for a in result.actions] == [1, 1, 1, 1]


def test_spread_over_cells_helper():
    assert spread_over_cells({0: 10, 1: 5}, 3, 4) == [1, 1, 0]
    assert spread_over_cells({0: 10, 1: 5}, 2, 4, node=0) == [0, 0]


def test_same_size_changes_nothing():
    model = domain(devices=[dimm(512, alias='dimm0')])
    result = plan(model, size=1024)
    assert not result.changed and result.actions == ()
    assert predict(model, result) is model


# --- refusals, all before anything is written ------------------------------------------

@pytest.mark.parametrize('model, request_, words', [
    (domain(), dict(size=8192), ['maxMemory of 4 GiB', 'at most 3584 MiB']),
    (domain(devices=[vmem(3584, 0)]), dict(size=1024), ['maxMemory', 'virtio-mem devices with their full size 3584 MiB']),
    (domain(slots=2, devices=[dimm(128), dimm(128)]), dict(size=1024), ['1 DIMM slot', 'only 0 of 2']),
    (domain(), dict(size=2048, dimm_size=128), ['12 DIMM slots', 'only 8 of 8']),
    (domain(), dict(size=1000), ['488 MiB', 'not a multiple of the guest memory block size (128 MiB)',
                                 'nearest possible: 896 MiB or 1 GiB']),
    (domain(), dict(size=1024, dimm_size=100), ['dimm_size 100 MiB', 'block size']),
    (domain(), dict(size=896, dimm_size=256), ['not a whole number of DIMMs of dimm_size 256 MiB']),
    (domain(), dict(size=256), ['below the boot memory', '512 MiB', 'NUMA cells 0: 256 MiB, 1: 256 MiB']),
    (domain(cells=()), dict(size=1024), ['no guest NUMA cells', 'dimm devices need at least one (both']),
    (domain(cells=(), max_mib=None), dict(size=1024), ['dimm devices need at least one and <maxMemory slots=...>']),
    (domain(max_mib=None), dict(size=1024), ['no <maxMemory>']),
    (domain(), dict(size=1024, numa_node=2), ['numa_node 2 does not exist', 'cells are: 0, 1']),
    (domain(), dict(current_memory=1024), ['current_memory 1 GiB is above the memory', '512 MiB']),
    (domain(), dict(size=1024, current_memory=2048), ['above the memory', '1 GiB after this change']),
    (domain(), dict(size=384), ['below the boot memory']),
    (domain(devices=[dimm(256)]), dict(size=512, numa_node=1), ['no DIMMs on NUMA cell 1']),
])
def test_refusals_name_the_limit(model, request_, words):
    msg = refused(model, **request_)
    for word in words:
        assert word in msg, msg
    assert 'lab-mem (live)' in msg


def test_numa_node_is_checked_even_without_a_size_change():
    assert 'numa_node 7 does not exist' in refused(domain(), size=512, numa_node=7)


def test_block_size_from_the_guest_is_used():
    # a guest with 1 GiB memory blocks cannot take 512 MiB
    msg = refused(domain(), block=1024 * MIB, size=1024)
    assert 'guest memory block size (1 GiB)' in msg and 'nearest possible: 512 MiB or 1536 MiB' in msg


# --- removing DIMMs --------------------------------------------------------------------

def _dimms(*sizes):
    return [dimm(s, alias='dimm%d' % i, slot=i) for i, s in enumerate(sizes)]


@pytest.mark.parametrize('sizes, remove, expected_aliases', [
    ((512,), 512, ['dimm0']),
    ((128, 128, 128), 128, ['dimm2']),                 # newest first
    ((128, 128, 128), 256, ['dimm2', 'dimm1']),
    ((256, 384, 128), 512, ['dimm2', 'dimm1']),        # 128 newest, then 384: greedy on the newest that still fits
    ((128, 256, 128), 256, ['dimm2', 'dimm0']),        # the newest two that add up, not the single older 256
    ((384, 128, 256), 384, ['dimm2', 'dimm1']),
    ((512, 256), 512, ['dimm0']),                      # only the older one matches exactly
    ((256, 512, 256), 1024, ['dimm2', 'dimm1', 'dimm0']),
])
def test_removal_picks_newest_dimms_that_sum_exactly(sizes, remove, expected_aliases):
    model = domain(devices=_dimms(*sizes))
    result = plan(model, size=memory_size_kib(model) // MIB - remove)
    assert [a.alias for a in result.actions] == expected_aliases
    assert all(isinstance(a, RemoveDimm) for a in result.actions)
    assert [a.index for a in result.actions] == sorted((a.index for a in result.actions), reverse=True)


@pytest.mark.parametrize('sizes, remove, possible', [
    ((256, 256), 128, '768 MiB, 512 MiB'),
    ((512,), 256, '512 MiB'),
    ((384, 256), 128, '896 MiB, 768 MiB, 512 MiB'),
])
def test_removal_without_exact_match_is_refused_with_possible_sizes(sizes, remove, possible):
    model = domain(devices=_dimms(*sizes))
    msg = refused(model, size=memory_size_kib(model) // MIB - remove)
    assert 'cannot remove exactly %d MiB' % remove in msg
    assert 'possible sizes: %s' % possible in msg


def test_many_possible_sizes_are_cut_to_the_nearest():
    model = domain(devices=_dimms(128, 256, 512, 1024, 2048 - 1024), max_mib=8192)
    msg = refused(model, size=memory_size_kib(model) // MIB - 2944 - 64, block=64 * MIB)
    assert msg.count('MiB,') + msg.count('GiB,') <= 8


def test_removal_on_one_cell_only():
    model = domain(devices=[dimm(256, 0, 'dimm0'), dimm(256, 1, 'dimm1')])
    assert [a.alias for a in plan(model, size=768, numa_node=0).actions] == ['dimm0']
    assert [a.alias for a in plan(model, size=768).actions] == ['dimm1']


def test_select_dimms_reports_all_reachable_amounts():
    pairs = [(i, dimm(s)) for i, s in enumerate((128, 256))]
    chosen, reachable = select_dimms(pairs, 384 * MIB)
    assert [k for k, _d in chosen] == [0, 1]
    assert sorted(reachable) == [0, 128 * MIB, 256 * MIB, 384 * MIB]
    assert select_dimms(pairs, 512 * MIB)[0] is None


def test_virtio_mem_is_never_detached_by_dimm_removal():
    model = domain(devices=[vmem(1024, 256, alias='virtiomem0')])
    assert 'has no DIMMs' in refused(model, size=512)


# --- virtio-mem ---------------------------------------------------------------------

def test_virtio_mem_grows_the_existing_device():
    model = domain(devices=[vmem(2048, 0, 1, 'virtiomem0')])
    result = plan(model, size=1024, model='virtio-mem')
    assert result.actions == (ResizeVirtioMem(index=0, alias='virtiomem0', node=1, from_kib=0, to_kib=512 * MIB),)


def test_virtio_mem_added_when_missing_takes_the_rest_of_max_memory():
    result = plan(domain(devices=[dimm(512)]), size=1536, model='virtio-mem')
    assert result.actions == (AddVirtioMem(node=1, size_kib=3072 * MIB, requested_kib=512 * MIB, block_kib=2048),)


def test_virtio_mem_spreads_blocks_over_devices_and_shrinks_from_the_fullest_cell():
    model = domain(devices=[vmem(1024, 0, 0, 'a'), vmem(1024, 128, 1, 'b')])
    grow = plan(model, size=512 + 128 + 384, model='virtio-mem')
    assert [(a.alias, a.to_kib // MIB) for a in grow.actions] == [('a', 256), ('b', 256)]
    shrink = plan(model, size=512, model='virtio-mem')
    assert [(a.alias, a.to_kib // MIB) for a in shrink.actions] == [('b', 0)]


@pytest.mark.parametrize('devices, request_, words', [
    ([vmem(256, 128)], dict(size=1024), ['can plug', 'at most 128 MiB more']),
    ([vmem(1024, 128)], dict(size=384), ['below the boot memory']),
    ([vmem(1024, 128, block_kib=256 * MIB)], dict(size=768), ['256 MiB (the guest memory block and the virtio-mem']),
    ([dimm(256)], dict(size=640), ['no virtio-mem device to shrink']),
    ([vmem(3584, 0, 0)], dict(size=640, numa_node=1), ['maxMemory', 'can have at most 0 MiB']),
])
def test_virtio_mem_refusals(devices, request_, words):
    msg = refused(domain(devices=devices), model='virtio-mem', **request_)
    for word in words:
        assert word in msg, msg


# --- balloon ---------------------------------------------------------------------------

def test_balloon_alone():
    result = plan(domain(), current_memory=384)
    assert result.actions == (SetBalloon(from_kib=512 * MIB, to_kib=384 * MIB),)
    assert plan(domain(current_mib=384), current_memory=384).actions == ()


def test_balloon_after_growth_may_use_the_new_memory():
    result = plan(domain(), size=1024, current_memory=768)
    # libvirt raises the target to 1 GiB with the DIMM; the balloon then takes it to 768 MiB
    assert isinstance(result.actions[0], AddDimm) and result.actions[-1] == SetBalloon(1024 * MIB, 768 * MIB)


def test_balloon_must_be_positive():
    assert 'above 0' in refused(domain(), current_memory=0)


# --- prediction and description ------------------------------------------------------

def test_prediction_for_check_mode():
    model = domain(devices=_dimms(256, 256))
    result = plan(model, size=768)
    after = predict(model, result)
    assert [d.alias for d in after.memory_devices] == ['dimm0']
    assert (memory_size_kib(after), after.memory_kib, after.current_memory_kib) == (768 * MIB,) * 3
    grown = predict(model, plan(model, size=2048, current_memory=1024))
    assert memory_size_kib(grown) == 2048 * MIB and grown.current_memory_kib == 1024 * MIB
    assert grown.memory_devices[-1].alias is None


def test_prediction_of_config_with_a_new_virtio_mem_device():
    model = domain()
    after = predict(model, plan(model, where='config', size=1024, model='virtio-mem'))
    assert memory_size_kib(after) == 1024 * MIB
    assert after.memory_kib == 4096 * MIB and after.current_memory_kib == 4096 * MIB  # as libvirt does


def test_describe_action():
    assert describe_action(AddDimm(512 * MIB, 1), 'live') == dict(where='live', action='attach', model='dimm',
                                                                  size_mib=512, node=1)
    assert describe_action(SetBalloon(512 * MIB, 384 * MIB), 'config')['current_mib'] == 384
    resize = describe_action(ResizeVirtioMem(0, 'virtiomem0', 0, 0, 256 * MIB), 'live')
    assert (resize['from_mib'], resize['requested_mib']) == (0, 256)


def test_balloon_already_where_libvirt_will_put_it_needs_no_action():
    # 1 GiB with the balloon at 1 GiB: adding 1 GiB moves libvirt's target to 2 GiB, so 1 GiB needs a balloon action
    model = domain(devices=[dimm(512)])
    assert plan(model, size=2048, current_memory=1024).actions[-1] == SetBalloon(2048 * MIB, 1024 * MIB)
    assert plan(model, size=2048, current_memory=2048).actions == (AddDimm(1024 * MIB, 1),)
