"""Simulated host sysfs trees for the unit tests: layouts served by the lab's simsysfs FUSE filesystem.

tests/lab/fleet/simsysfs.py answers reads and writes as the kernel does (a write replaces the value,
`online_movable` reads back `online`, cpu0 has no online file, EBUSY and EINVAL where the kernel gives
them), so nothing here patches SysfsTree: the modules write through the real system calls.  The
`simsysfs` fixture (conftest.py) mounts one; these helpers describe what it serves:

- devices/system/cpu/{online,offline,possible,present,isolated}; cpuN/online only for hotpluggable
  CPUs (cpu0 usually has none); cpuN/nodeM link; cpuN/topology/ only while the CPU is online
- devices/system/memory/block_size_bytes (hex, no 0x), auto_online_blocks; memoryN/{state,online,
  removable,valid_zones,phys_index (%08x),phys_device} and a nodeM link
- devices/system/node/nodeN/{cpulist (online CPUs only),meminfo}, memoryM and cpuM links
- devices/system/edac/mc/mcN/{mc_name,size_mb,ce_count,...}, dimmN/ or rankN/, csrowN/
- devices/system/edac/cpu/cpuN/{ce_count,ue_count}

(The layout follows what a real kernel shows, checked against the lab-hostres guest, Debian 6.1 cloud
kernel, and this machine's 6.x kernel.)
"""
from __future__ import annotations

import errno
import json
import os

BLOCK_SIZE = 0x8000000  # 128 MiB


class Cpu(object):
    def __init__(self, id, node=0, online=True, hotpluggable=True, core=None, package=0):
        self.id, self.node, self.online, self.hotpluggable = id, node, online, hotpluggable
        self.core = id if core is None else core
        self.package = package


class Block(object):
    def __init__(self, id, node=0, state='online', zones='Normal', removable=1, phys_index=None):
        self.id, self.node, self.state, self.zones, self.removable = id, node, state, zones, removable
        self.phys_index = id if phys_index is None else phys_index


def layout(cpus, blocks, block_size=BLOCK_SIZE, isolated='', auto_online='offline'):
    """The simsysfs layout (see tests/lab/fleet/simsysfs.py) of these CPUs and memory blocks."""
    return dict(
        cpus=[dict(id=c.id, node=c.node, core=c.core, package=c.package, online=c.online,
                   hotpluggable=c.hotpluggable) for c in cpus],
        isolated=isolated, block_size=block_size, auto_online_blocks=auto_online,
        blocks=[dict(id=b.id, node=b.node, state=b.state, zones=b.zones, removable=b.removable,
                     phys_index=b.phys_index, phys_device=0) for b in blocks],
        edac=[])


def build_tree(simsysfs, cpus, blocks, **options):
    """Mount a simulated host with these CPUs and blocks; returns its root (a str path)."""
    return simsysfs.mount(layout(cpus, blocks, **options)).root


def two_node_host(simsysfs, cpu0_hotpluggable=False, isolated=''):
    """A hypervisor-like tree: 4 CPUs in 2 nodes, boot memory plus movable blocks on each node.

    node 0: CPUs 0-1, blocks 0 (spans zones: "none"), 1-3 (DMA32), 32-33 (Movable)
    node 1: CPUs 2-3, blocks 4-5 (DMA32), 34-35 (Movable)
    """
    cpus = [Cpu(0, node=0, hotpluggable=cpu0_hotpluggable), Cpu(1, node=0), Cpu(2, node=1, package=1),
            Cpu(3, node=1, package=1)]
    blocks = ([Block(0, 0, zones='none')] + [Block(i, 0, zones='DMA32') for i in (1, 2, 3)]
              + [Block(i, 1, zones='DMA32') for i in (4, 5)]
              + [Block(i, 0, zones='Movable') for i in (32, 33)] + [Block(i, 1, zones='Movable') for i in (34, 35)])
    return build_tree(simsysfs, cpus, blocks, isolated=isolated)


def control(root, command):
    """Send one command to the simulated host's control file (tests/lab/fleet/simsysfs.py)."""
    fd = os.open(os.path.join(root, 'simsysfs', 'control'), os.O_WRONLY)
    try:
        os.write(fd, command.encode('ascii'))
    finally:
        os.close(fd)


def sim_state(root):
    with open(os.path.join(root, 'simsysfs', 'control')) as handle:
        return json.load(handle)


def add_edac_controller(root, mc_id, name, dimms=(), ranks=(), csrows=(), size_mb=16384, ce=0, ue=0,
                        ce_noinfo=0, ue_noinfo=0, node=None):
    """Add controller mcN to a mounted simulated host (its layout is loaded again); returns the mcN path.

    dimms/ranks: dicts with label, location, size, ce, ue; csrows: dicts with ce, ue, size, channels [(ce, label)];
    node: a NUMA node the kernel links the controller to (an mcN/nodeM entry).
    """
    current = sim_state(root)['layout']
    current.setdefault('edac', []).append(dict(
        id=mc_id, name=name, size_mb=size_mb, ce=ce, ue=ue, ce_noinfo=ce_noinfo, ue_noinfo=ue_noinfo, node=node,
        dimms=list(dimms), ranks=list(ranks),
        csrows=[dict(r, channels=[list(c) for c in r.get('channels', ())]) for r in csrows]))
    control(root, 'load ' + json.dumps(current))
    return os.path.join(root, 'devices', 'system', 'edac', 'mc', 'mc%d' % mc_id)


def add_edac_cpus(root, cpus):
    """Give a mounted simulated host the cpu EDAC device (devices/system/edac/cpu/cpuN/{ce_count,ue_count}).

    cpus: dicts with id, ce, ue.
    """
    current = sim_state(root)['layout']
    current['edac_cpus'] = [dict(c) for c in cpus]
    control(root, 'load ' + json.dumps(current))
    return os.path.join(root, 'devices', 'system', 'edac', 'cpu')


class Kernel(object):
    """The faults a test asks of the simulated kernel, and what it has seen written.

    busy: block ids whose offline answers EBUSY (for `busy_times` writes, or always when None);
    final: {block id: errno} answered at once to an offline; cpu_errors: {cpu id: errno};
    online_errors: {block: errno}; hang: {block id: seconds} a write to the block blocks (a signal to
    the writer ends it with EINTR, as the kernel's page migration does).
    """

    def __init__(self, root, busy=(), busy_times=None, final=None, cpu_errors=None, online_errors=None, hang=None):
        self.root = str(root)
        for block in sorted(busy):
            control(self.root, 'busy memory%d%s' % (block, '' if busy_times is None else ' %d' % busy_times))
        for block, code in sorted((final or {}).items()):
            control(self.root, 'fail memory%d offline %d' % (block, code))
        for cpu, code in sorted((cpu_errors or {}).items()):
            control(self.root, 'fail cpu%d any %d' % (cpu, code))
        for block, code in sorted((online_errors or {}).items()):
            control(self.root, 'fail memory%d online %d' % (block, code))
        for block, seconds in sorted((hang or {}).items()):
            control(self.root, 'hang memory%d %s' % (block, seconds))

    @property
    def writes(self):
        """(path relative to the root, value) of every write the kernel got, taken or refused."""
        return [(path, value) for path, value, _result in sim_state(self.root)['writes']]

    @property
    def busy_count(self):
        """{block id: how many of its writes the kernel answered EBUSY}."""
        counts = {}
        for path, _value, result in sim_state(self.root)['writes']:
            if result == errno.errorcode[errno.EBUSY] and '/memory/memory' in path:
                block = int(path.split('/')[3][len('memory'):])
                counts[block] = counts.get(block, 0) + 1
        return counts

    def _read(self, *parts):
        with open(os.path.join(self.root, 'devices', 'system', *parts)) as handle:
            return handle.read().strip()

    def state(self, block_id):
        return self._read('memory', 'memory%d' % block_id, 'state')

    def zones(self, block_id):
        return self._read('memory', 'memory%d' % block_id, 'valid_zones')

    def cpu_online(self, cpu_id):
        return self._read('cpu', 'cpu%d' % cpu_id, 'online') == '1'
