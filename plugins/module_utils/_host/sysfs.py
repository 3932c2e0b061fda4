# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host's CPUs, memory blocks and NUMA nodes as the kernel shows them in sysfs, and the writes that change them.

Everything goes through a SysfsTree rooted at `sysfs_root` (normally /sys), so
tests and dry runs can point it at a copied or generated tree.  Paths are built
from integers only (cpu%d, memory%d, node%d): a user string never becomes part
of a path.

Layout read (Documentation/ABI/testing/sysfs-devices-system-cpu, .../sysfs-devices-memory):

- devices/system/cpu/{online,offline,possible,present,isolated}, cpuN/online (absent when the
  kernel does not allow the CPU to go offline, typically cpu0), cpuN/nodeM link,
  cpuN/topology/{core_id,physical_package_id,die_id,thread_siblings_list} (only while online)
- devices/system/memory/block_size_bytes (hex), auto_online_blocks, memoryN/{state,online,
  removable,valid_zones,phys_index,phys_device}, memoryN/nodeM link
- devices/system/node/nodeN/{cpulist,meminfo}, nodeN/memoryM links

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist, parse_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError

DEFAULT_SYSFS_ROOT = '/sys'
CPU_DIR = ('devices', 'system', 'cpu')
MEMORY_DIR = ('devices', 'system', 'memory')
NODE_DIR = ('devices', 'system', 'node')

_NUMBERED = re.compile(r'^([a-z_]+?)([0-9]+)$')
# Zones a memory block can belong to; "none" means it spans zones or nodes and cannot be offlined.
KERNEL_ZONES = ('DMA', 'DMA32', 'Normal')
MOVABLE_ZONE = 'Movable'


@dataclass(frozen=True)
class Cpu:
    id: int
    online: bool
    hotpluggable: bool          # the kernel offers cpuN/online
    node: int | None
    core_id: int | None         # topology is only present while the CPU is online
    package_id: int | None
    die_id: int | None
    thread_siblings: tuple | None

    def to_dict(self):
        return dict(id=self.id, online=self.online, hotpluggable=self.hotpluggable, node=self.node,
                    core_id=self.core_id, package_id=self.package_id, die_id=self.die_id,
                    thread_siblings=None if self.thread_siblings is None else format_cpulist(self.thread_siblings))


@dataclass(frozen=True)
class MemoryBlock:
    id: int
    state: str                  # online, offline, going-offline (the kernel's words)
    removable: bool | None      # None: no removable file
    valid_zones: tuple          # () when unreadable
    node: int | None
    phys_index: int
    phys_device: int | None
    block_size: int

    @property
    def online(self):
        return self.state == 'online'

    @property
    def start(self):
        return self.phys_index * self.block_size

    @property
    def end(self):
        return self.start + self.block_size - 1

    @property
    def offlinable_zone(self):
        """False when the kernel says the block spans zones or nodes (valid_zones "none")."""
        return not (self.online and tuple(z.lower() for z in self.valid_zones) == ('none',))

    def to_dict(self):
        return dict(id=self.id, state=self.state, online=self.online, removable=self.removable,
                    valid_zones=list(self.valid_zones), node=self.node, phys_index=self.phys_index,
                    phys_device=self.phys_device, start='0x%x' % self.start, end='0x%x' % self.end,
                    size_mib=self.block_size // (1024 * 1024))


@dataclass(frozen=True)
class MemoryLayout:
    available: bool
    block_size: int | None
    auto_online_blocks: str | None
    blocks: dict                # id -> MemoryBlock

    def block_of_address(self, address):
        """Id of the memory block holding a physical address, or None when no block covers it."""
        if not self.block_size or address is None or address < 0:
            return None
        block_id = address // self.block_size
        block = self.blocks.get(block_id)
        if block is not None and block.start <= address <= block.end:
            return block_id
        for block in self.blocks.values():  # phys_index normally equals the id; do not rely on it
            if block.start <= address <= block.end:
                return block.id
        return None


@dataclass(frozen=True)
class Node:
    id: int
    cpus: tuple                 # every CPU the kernel links to the node, online or not
    online_cpus: tuple
    memory_blocks: tuple
    mem_total_kib: int | None
    mem_free_kib: int | None

    def to_dict(self, memory):
        online_blocks = [b for b in self.memory_blocks if b in memory.blocks and memory.blocks[b].online]
        return dict(id=self.id, cpus=list(self.cpus), cpulist=format_cpulist(self.cpus),
                    online_cpus=list(self.online_cpus), memory_blocks=list(self.memory_blocks),
                    online_memory_blocks=online_blocks,
                    mem_total_mib=None if self.mem_total_kib is None else self.mem_total_kib // 1024,
                    mem_free_mib=None if self.mem_free_kib is None else self.mem_free_kib // 1024)


@dataclass(frozen=True)
class HostSnapshot:
    cpus: dict                  # id -> Cpu
    memory: MemoryLayout
    nodes: dict                 # id -> Node
    isolated: tuple             # CPUs isolated from the scheduler (isolcpus=)
    possible: tuple
    present: tuple

    @property
    def online_cpus(self):
        return tuple(sorted(c.id for c in self.cpus.values() if c.online))

    def node_of_cpu(self, cpu_id):
        cpu = self.cpus.get(cpu_id)
        return None if cpu is None else cpu.node


def numbered_entries(directory, kind):
    """Sorted N of the entries named kindN (cpu, memory, node, mc, dimm, csrow, ...) in a directory; [] when unreadable."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    ids = []
    for name in names:
        match = _NUMBERED.match(name)
        if match and match.group(1) == kind:
            ids.append(int(match.group(2)))
    return sorted(ids)


def linked_node(directory):
    """The N of a nodeN entry in a directory (a cpuN, memoryN or EDAC controller directory), or None."""
    nodes = numbered_entries(directory, 'node')
    return nodes[0] if nodes else None


class SysfsTree(object):
    """A sysfs tree (the real /sys or a copy) with the few reads and writes this collection needs."""

    def __init__(self, root=DEFAULT_SYSFS_ROOT):
        self.root = root or DEFAULT_SYSFS_ROOT

    # ---- paths, from integers only
    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def cpu_path(self, cpu_id, attribute=None):
        parts = CPU_DIR + ('cpu%d' % int(cpu_id),)
        return self.path(*(parts + ((attribute,) if attribute else ())))

    def memory_path(self, block_id, attribute=None):
        parts = MEMORY_DIR + ('memory%d' % int(block_id),)
        return self.path(*(parts + ((attribute,) if attribute else ())))

    def node_path(self, node_id, attribute=None):
        parts = NODE_DIR + ('node%d' % int(node_id),)
        return self.path(*(parts + ((attribute,) if attribute else ())))

    # ---- reading
    @staticmethod
    def read(path):
        """The stripped text of a sysfs attribute, or None when it does not exist or cannot be read."""
        try:
            with open(path, 'r') as handle:
                return handle.read().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def read_int(self, path, base=10):
        text = self.read(path)
        if text is None or text == '':
            return None
        try:
            return int(text, base)
        except ValueError:
            return None

    def read_list(self, path):
        text = self.read(path)
        try:
            return parse_cpulist(text, allow_exclusion=False) if text else ()
        except ValueError:
            return ()

    def numbered(self, kind, *parts):
        """Sorted ids of the kindN entries (cpu, memory, node) in the directory parts."""
        return numbered_entries(self.path(*parts), kind)

    @staticmethod
    def linked_node(directory):
        """The N of a nodeN entry inside a cpuN or memoryN directory, or None."""
        return linked_node(directory)

    # ---- writing: one write(2) per attribute, so the kernel's error reaches the caller as OSError
    @staticmethod
    def write(path, value):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode('ascii'))
        finally:
            os.close(fd)

    def set_cpu_online(self, cpu_id, online):
        self.write(self.cpu_path(cpu_id, 'online'), '1' if online else '0')

    def set_memory_state(self, block_id, state):
        if state not in ('online', 'online_movable', 'online_kernel', 'offline'):
            raise ValueError('invalid memory block state %r' % state)
        self.write(self.memory_path(block_id, 'state'), state)


def read_cpus(tree):
    ids = tree.numbered('cpu', *CPU_DIR)
    kernel_online = set(tree.read_list(tree.path(*(CPU_DIR + ('online',)))))
    has_online_list = os.path.exists(tree.path(*(CPU_DIR + ('online',))))
    node_cpus = {}
    for node_id in tree.numbered('node', *NODE_DIR):
        for cpu_id in tree.read_list(tree.node_path(node_id, 'cpulist')):
            node_cpus.setdefault(cpu_id, node_id)
    cpus = {}
    for cpu_id in ids:
        own = tree.read_int(tree.cpu_path(cpu_id, 'online'))
        hotpluggable = os.path.exists(tree.cpu_path(cpu_id, 'online'))
        if own is not None:
            online = own == 1
        elif has_online_list:
            online = cpu_id in kernel_online
        else:
            online = True
        node = tree.linked_node(tree.cpu_path(cpu_id))
        if node is None:
            node = node_cpus.get(cpu_id)
        siblings = tree.read(tree.cpu_path(cpu_id, os.path.join('topology', 'thread_siblings_list')))
        try:
            siblings = parse_cpulist(siblings, allow_exclusion=False) if siblings else None
        except ValueError:
            siblings = None
        cpus[cpu_id] = Cpu(
            id=cpu_id, online=online, hotpluggable=hotpluggable, node=node,
            core_id=tree.read_int(tree.cpu_path(cpu_id, os.path.join('topology', 'core_id'))),
            package_id=tree.read_int(tree.cpu_path(cpu_id, os.path.join('topology', 'physical_package_id'))),
            die_id=tree.read_int(tree.cpu_path(cpu_id, os.path.join('topology', 'die_id'))),
            thread_siblings=siblings,
        )
    return cpus


def read_memory(tree):
    base = tree.path(*MEMORY_DIR)
    block_size = tree.read_int(os.path.join(base, 'block_size_bytes'), 16)
    if not os.path.isdir(base) or block_size is None:
        return MemoryLayout(available=False, block_size=None, auto_online_blocks=None, blocks={})
    blocks = {}
    for block_id in tree.numbered('memory', *MEMORY_DIR):
        state = tree.read(tree.memory_path(block_id, 'state'))
        if state is None:
            online = tree.read_int(tree.memory_path(block_id, 'online'))
            state = 'unknown' if online is None else ('online' if online else 'offline')
        removable = tree.read_int(tree.memory_path(block_id, 'removable'))
        zones = tree.read(tree.memory_path(block_id, 'valid_zones'))
        phys_index = tree.read_int(tree.memory_path(block_id, 'phys_index'), 16)
        blocks[block_id] = MemoryBlock(
            id=block_id, state=state, removable=None if removable is None else removable == 1,
            valid_zones=tuple(zones.split()) if zones else (),
            node=tree.linked_node(tree.memory_path(block_id)),
            phys_index=block_id if phys_index is None else phys_index,
            phys_device=tree.read_int(tree.memory_path(block_id, 'phys_device')),
            block_size=block_size,
        )
    return MemoryLayout(available=True, block_size=block_size,
                        auto_online_blocks=tree.read(os.path.join(base, 'auto_online_blocks')), blocks=blocks)


def _meminfo_kib(text, key):
    if not text:
        return None
    match = re.search(r'\b%s:\s+(\d+)\s*kB' % re.escape(key), text)
    return int(match.group(1)) if match else None


def read_nodes(tree, cpus, memory):
    nodes = {}
    for node_id in tree.numbered('node', *NODE_DIR):
        node_cpus = set(c.id for c in cpus.values() if c.node == node_id)
        node_cpus.update(tree.read_list(tree.node_path(node_id, 'cpulist')))
        blocks = set(tree.numbered('memory', *(NODE_DIR + ('node%d' % node_id,))))
        blocks.update(b.id for b in memory.blocks.values() if b.node == node_id)
        meminfo = tree.read(tree.node_path(node_id, 'meminfo'))
        nodes[node_id] = Node(
            id=node_id, cpus=tuple(sorted(node_cpus)),
            online_cpus=tuple(sorted(c for c in node_cpus if c in cpus and cpus[c].online)),
            memory_blocks=tuple(sorted(blocks)),
            mem_total_kib=_meminfo_kib(meminfo, 'MemTotal'), mem_free_kib=_meminfo_kib(meminfo, 'MemFree'),
        )
    return nodes


def read_host(tree):
    """Everything about the host's CPUs, memory blocks and nodes, read in one go."""
    if not os.path.isdir(tree.path(*CPU_DIR)):
        raise HotplugError('%s is not a sysfs tree: %s does not exist' % (tree.root, tree.path(*CPU_DIR)),
                           sysfs_root=tree.root)
    cpus = read_cpus(tree)
    memory = read_memory(tree)
    return HostSnapshot(
        cpus=cpus, memory=memory, nodes=read_nodes(tree, cpus, memory),
        isolated=tree.read_list(tree.path(*(CPU_DIR + ('isolated',)))),
        possible=tree.read_list(tree.path(*(CPU_DIR + ('possible',)))),
        present=tree.read_list(tree.path(*(CPU_DIR + ('present',)))),
    )


def cpu_summary(host):
    online = host.online_cpus
    return dict(
        online=format_cpulist(online), offline=format_cpulist(c for c in host.cpus if c not in online),
        possible=format_cpulist(host.possible), present=format_cpulist(host.present),
        isolated=format_cpulist(host.isolated), count=len(host.cpus), online_count=len(online),
    )


def memory_summary(memory):
    if not memory.available:
        return dict(available=False)
    blocks = memory.blocks.values()
    online = [b for b in blocks if b.online]
    return dict(
        available=True, block_size_bytes=memory.block_size, block_size_mib=memory.block_size // (1024 * 1024),
        auto_online_blocks=memory.auto_online_blocks, count=len(memory.blocks), online_count=len(online),
        online_mib=len(online) * memory.block_size // (1024 * 1024),
        offline=[b.id for b in sorted(blocks, key=lambda b: b.id) if b.state == 'offline'],
        movable=[b.id for b in sorted(blocks, key=lambda b: b.id) if b.online and MOVABLE_ZONE in b.valid_zones],
    )
