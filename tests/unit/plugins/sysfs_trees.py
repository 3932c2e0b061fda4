"""Sysfs trees laid out as the kernel lays them out, built in tmp_path, and a fake kernel for writes.

The layout follows what a real kernel shows (checked against the lab-hostres
guest, Debian 6.1 cloud kernel, and this machine's 6.x kernel):

- devices/system/cpu/{online,offline,possible,present,isolated}; cpuN/online only for hotpluggable
  CPUs (cpu0 usually has none); cpuN/nodeM link; cpuN/topology/ only while the CPU is online
- devices/system/memory/block_size_bytes (hex, no 0x), auto_online_blocks; memoryN/{state,online,
  removable,valid_zones,phys_index (%08x),phys_device} and a nodeM link
- devices/system/node/nodeN/{cpulist (online CPUs only),meminfo}, memoryM and cpuM links
- devices/system/edac/mc/mcN/{mc_name,size_mb,ce_count,...}, dimmN/ or rankN/, csrowN/
"""
from __future__ import annotations

import errno
import os

from ansible_collections.kvm.hotplug.plugins.module_utils._host import sysfs as _host_sysfs
from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist

BLOCK_SIZE = 0x8000000  # 128 MiB


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)


def _link(path, target):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.lexists(path):
        os.symlink(target, path)


class Cpu(object):
    def __init__(self, id, node=0, online=True, hotpluggable=True, core=None, package=0):
        self.id, self.node, self.online, self.hotpluggable = id, node, online, hotpluggable
        self.core = id if core is None else core
        self.package = package


class Block(object):
    def __init__(self, id, node=0, state='online', zones='Normal', removable=1, phys_index=None):
        self.id, self.node, self.state, self.zones, self.removable = id, node, state, zones, removable
        self.phys_index = id if phys_index is None else phys_index


def build_tree(root, cpus, blocks, block_size=BLOCK_SIZE, isolated='', auto_online='offline', memtotal_kib=None):
    """Write a kernel-like tree under root (a str path) and return root."""
    system = os.path.join(root, 'devices', 'system')
    ids = [c.id for c in cpus]
    online = [c.id for c in cpus if c.online]
    _write(os.path.join(system, 'cpu', 'online'), format_cpulist(online) + '\n')
    _write(os.path.join(system, 'cpu', 'offline'), format_cpulist(set(ids) - set(online)) + '\n')
    _write(os.path.join(system, 'cpu', 'possible'), format_cpulist(ids) + '\n')
    _write(os.path.join(system, 'cpu', 'present'), format_cpulist(ids) + '\n')
    _write(os.path.join(system, 'cpu', 'isolated'), isolated + '\n')
    nodes = sorted(set([c.node for c in cpus] + [b.node for b in blocks]))
    for cpu in cpus:
        cdir = os.path.join(system, 'cpu', 'cpu%d' % cpu.id)
        os.makedirs(os.path.join(cdir, 'power'), exist_ok=True)
        _write(os.path.join(cdir, 'uevent'), '')
        if cpu.hotpluggable:
            _write(os.path.join(cdir, 'online'), '%d\n' % (1 if cpu.online else 0))
        _link(os.path.join(cdir, 'node%d' % cpu.node), '../../node/node%d' % cpu.node)
        if cpu.online:
            siblings = '%d\n' % cpu.id
            for name, value in (('core_id', '%d\n' % cpu.core), ('physical_package_id', '%d\n' % cpu.package),
                                ('die_id', '0\n'), ('thread_siblings_list', siblings)):
                _write(os.path.join(cdir, 'topology', name), value)
    mdir = os.path.join(system, 'memory')
    _write(os.path.join(mdir, 'block_size_bytes'), '%x\n' % block_size)
    _write(os.path.join(mdir, 'auto_online_blocks'), auto_online + '\n')
    for block in blocks:
        bdir = os.path.join(mdir, 'memory%d' % block.id)
        _write(os.path.join(bdir, 'state'), block.state + '\n')
        _write(os.path.join(bdir, 'online'), '%d\n' % (1 if block.state == 'online' else 0))
        if block.removable is not None:
            _write(os.path.join(bdir, 'removable'), '%d\n' % block.removable)
        _write(os.path.join(bdir, 'valid_zones'), block.zones + '\n')
        _write(os.path.join(bdir, 'phys_index'), '%08x\n' % block.phys_index)
        _write(os.path.join(bdir, 'phys_device'), '0\n')
        _link(os.path.join(bdir, 'node%d' % block.node), '../../node/node%d' % block.node)
    for node in nodes:
        ndir = os.path.join(system, 'node', 'node%d' % node)
        _write(os.path.join(ndir, 'cpulist'),
               format_cpulist(c.id for c in cpus if c.node == node and c.online) + '\n')
        node_blocks = [b for b in blocks if b.node == node]
        total = memtotal_kib if memtotal_kib is not None else \
            sum(block_size // 1024 for b in node_blocks if b.state == 'online')
        _write(os.path.join(ndir, 'meminfo'), 'Node %d MemTotal:       %8d kB\nNode %d MemFree:        %8d kB\n'
               % (node, total, node, total // 2))
        for block in node_blocks:
            _link(os.path.join(ndir, 'memory%d' % block.id), '../../memory/memory%d' % block.id)
        for cpu in cpus:
            if cpu.node == node:
                _link(os.path.join(ndir, 'cpu%d' % cpu.id), '../../cpu/cpu%d' % cpu.id)
    _write(os.path.join(system, 'node', 'online'), format_cpulist(nodes) + '\n')
    return root


def two_node_host(root, cpu0_hotpluggable=False, isolated=''):
    """A hypervisor-like tree: 4 CPUs in 2 nodes, boot memory plus movable blocks on each node.

    node 0: CPUs 0-1, blocks 0 (spans zones: "none"), 1-3 (DMA32), 32-33 (Movable)
    node 1: CPUs 2-3, blocks 4-5 (DMA32), 34-35 (Movable)
    """
    cpus = [Cpu(0, node=0, hotpluggable=cpu0_hotpluggable), Cpu(1, node=0), Cpu(2, node=1, package=1),
            Cpu(3, node=1, package=1)]
    blocks = ([Block(0, 0, zones='none')] + [Block(i, 0, zones='DMA32') for i in (1, 2, 3)]
              + [Block(i, 1, zones='DMA32') for i in (4, 5)]
              + [Block(i, 0, zones='Movable') for i in (32, 33)] + [Block(i, 1, zones='Movable') for i in (34, 35)])
    return build_tree(str(root), cpus, blocks, isolated=isolated)


def add_edac_controller(root, mc_id, name, dimms=(), ranks=(), csrows=(), size_mb=16384, ce=0, ue=0,
                        ce_noinfo=0, ue_noinfo=0, extra=None):
    """dimms/ranks: dicts with label, location, size, ce, ue; csrows: dicts with ce, ue, size, channels [(ce, label)]."""
    mc = os.path.join(str(root), 'devices', 'system', 'edac', 'mc', 'mc%d' % mc_id)
    for name_, value in (('mc_name', name), ('size_mb', size_mb), ('ce_count', ce), ('ue_count', ue),
                         ('ce_noinfo_count', ce_noinfo), ('ue_noinfo_count', ue_noinfo),
                         ('seconds_since_reset', 3600), ('max_location', 'channel 3 slot 1')):
        _write(os.path.join(mc, name_), '%s\n' % value)
    _write(os.path.join(mc, 'reset_counters'), '')
    for kind, items in (('dimm', dimms), ('rank', ranks)):
        for index, dimm in enumerate(items):
            d = os.path.join(mc, '%s%d' % (kind, index))
            for name_, value in (('dimm_label', dimm.get('label', '')), ('dimm_location', dimm.get('location', '')),
                                 ('size', dimm.get('size', 8192)), ('dimm_ce_count', dimm.get('ce', 0)),
                                 ('dimm_ue_count', dimm.get('ue', 0)), ('dimm_mem_type', 'Registered-DDR4'),
                                 ('dimm_dev_type', 'x4'), ('dimm_edac_mode', 'S4ECD4ED')):
                _write(os.path.join(d, name_), '%s\n' % value)
    for index, row in enumerate(csrows):
        r = os.path.join(mc, 'csrow%d' % index)
        for name_, value in (('ce_count', row.get('ce', 0)), ('ue_count', row.get('ue', 0)),
                             ('size_mb', row.get('size', 8192)), ('mem_type', 'Registered-DDR4'),
                             ('edac_mode', 'S4ECD4ED'), ('dev_type', 'x4')):
            _write(os.path.join(r, name_), '%s\n' % value)
        for ch, (ce, label) in enumerate(row.get('channels', ())):
            _write(os.path.join(r, 'ch%d_ce_count' % ch), '%d\n' % ce)
            _write(os.path.join(r, 'ch%d_dimm_label' % ch), '%s\n' % label)
    for name_, value in (extra or {}).items():
        _write(os.path.join(mc, name_), value)
    return mc


class FakeKernel(object):
    """Stands in for the kernel behind sysfs writes on a tree built above.

    busy: block ids whose offline answers EBUSY (for `busy_times` writes, or forever when None);
    final: {block id: errno} answered at once; cpu_errors: {cpu id: errno}; online_errors: {block: errno}.
    Successful writes update the files the way the kernel would (online, state, valid_zones).
    """

    def __init__(self, root, busy=(), busy_times=None, final=None, cpu_errors=None, online_errors=None,
                 block_write=None):
        self.root = str(root)
        self.busy = set(busy)
        self.busy_times = busy_times
        self.final = final or {}
        self.cpu_errors = cpu_errors or {}
        self.online_errors = online_errors or {}
        self.block_write = block_write  # callable(block_id) run before a write, e.g. to sleep
        self.writes = []
        self.busy_count = {}

    def install(self, mocker):
        mocker.patch.object(_host_sysfs.SysfsTree, 'write', side_effect=self.write)
        return self

    def write(self, path, value):
        rel = os.path.relpath(path, self.root)
        self.writes.append((rel, value))
        parts = rel.split(os.sep)
        if parts[:3] == ['devices', 'system', 'cpu'] and parts[-1] == 'online':
            cpu_id = int(parts[3][3:])
            if cpu_id in self.cpu_errors:
                raise OSError(self.cpu_errors[cpu_id], os.strerror(self.cpu_errors[cpu_id]))
            if not os.path.exists(path):
                raise OSError(errno.ENOENT, 'No such file or directory')
            _write(path, value + '\n')
            return
        if parts[:3] == ['devices', 'system', 'memory'] and parts[-1] == 'state':
            block_id = int(parts[3][6:])
            if self.block_write:
                self.block_write(block_id)
            if value == 'offline':
                if block_id in self.final:
                    raise OSError(self.final[block_id], os.strerror(self.final[block_id]))
                if block_id in self.busy:
                    count = self.busy_count.get(block_id, 0) + 1
                    self.busy_count[block_id] = count
                    if self.busy_times is None or count <= self.busy_times:
                        raise OSError(errno.EBUSY, 'Device or resource busy')
                zones_path = os.path.join(os.path.dirname(path), 'valid_zones')
                with open(zones_path) as handle:
                    zone = handle.read().split()[0]
                # an offline block lists the zones it could join, default first
                _write(zones_path, ('Movable Normal' if zone == 'Movable' else '%s Movable' % zone) + '\n')
                _write(path, 'offline\n')
                _write(os.path.join(os.path.dirname(path), 'online'), '0\n')
                return
            if block_id in self.online_errors:
                raise OSError(self.online_errors[block_id], os.strerror(self.online_errors[block_id]))
            zones_path = os.path.join(os.path.dirname(path), 'valid_zones')
            with open(zones_path) as handle:
                zones = handle.read().split()
            zone = {'online_movable': 'Movable', 'online_kernel': [z for z in zones if z != 'Movable'][0]
                    if [z for z in zones if z != 'Movable'] else 'Normal', 'online': zones[0]}[value]
            _write(zones_path, zone + '\n')
            _write(path, 'online\n')
            _write(os.path.join(os.path.dirname(path), 'online'), '1\n')
            return
        raise AssertionError('unexpected sysfs write to %s' % rel)

    def state(self, block_id):
        with open(os.path.join(self.root, 'devices', 'system', 'memory', 'memory%d' % block_id, 'state')) as handle:
            return handle.read().strip()

    def zones(self, block_id):
        with open(os.path.join(self.root, 'devices', 'system', 'memory', 'memory%d' % block_id,
                               'valid_zones')) as handle:
            return handle.read().strip()

    def cpu_online(self, cpu_id):
        path = os.path.join(self.root, 'devices', 'system', 'cpu', 'cpu%d' % cpu_id, 'online')
        with open(path) as handle:
            return handle.read().strip() == '1'
