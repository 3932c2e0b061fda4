"""simsysfs: a FUSE filesystem that answers like the kernel's sysfs for CPUs, memory blocks, NUMA nodes and EDAC.

    python3 simsysfs.py serve MOUNTPOINT LAYOUT.json    mount and serve in the foreground (until unmounted)
    python3 simsysfs.py layout-from-host [SYSFS]        print a layout (JSON) describing this machine's /sys
    python3 simsysfs.py control MOUNTPOINT COMMAND...   write one control command (see below), print the state
    python3 simsysfs.py mount MOUNTPOINT LAYOUT.json    serve in the background: returns once mounted, prints the pid
    python3 simsysfs.py umount MOUNTPOINT               unmount (the server then exits)

(with a Python that has mfusepy: the project's .venv)

The tree under MOUNTPOINT is the part of /sys the kvm.hotplug host modules read
(plugins/module_utils/_host_sysfs.py, _edac.py):

    devices/system/cpu/{online,offline,possible,present,isolated,kernel_max}
    devices/system/cpu/cpuN/{online (not for cpu0 or a CPU the layout marks not hotpluggable),uevent,nodeM ->}
    devices/system/cpu/cpuN/topology/{core_id,physical_package_id,die_id,thread_siblings_list,core_cpus_list}
        (only while the CPU is online, as on x86)
    devices/system/cpu/cpuN/cache/index{0,1,2}/{level,type,shared_cpu_list} (only while online)
    devices/system/memory/{block_size_bytes,auto_online_blocks}
    devices/system/memory/memoryN/{state,online,removable,valid_zones,phys_index,phys_device,nodeM ->}
    devices/system/node/{online,possible,has_cpu,has_memory}, nodeN/{cpulist,meminfo,distance,cpuM ->,memoryM ->}
    devices/system/edac/mc/mcN/{mc_name,size_mb,ce_count,ue_count,ce_noinfo_count,ue_noinfo_count,
        seconds_since_reset,reset_counters,max_location}, dimmN/ or rankN/ {dimm_label,dimm_location,size,
        dimm_ce_count,dimm_ue_count,dimm_mem_type,dimm_dev_type,dimm_edac_mode}, csrowN/ {...,chK_ce_count,chK_dimm_label}
    devices/system/edac/cpu/cpuN/{ce_count,ue_count} (an edac_device controller named cpu, as CPU cache ECC
        drivers register; only when the layout has edac_cpus)

Writes behave as the kernel's (drivers/base/cpu.c, drivers/base/memory.c):
- every write(2) is one store of the whole value; there are no file contents to leave bytes behind,
  so `online` written over `offline` reads `online`; O_TRUNC is accepted and ignored, as in sysfs;
- cpuN/online takes a boolean (1/0/y/n/on/off); the cpu online/offline lists, node cpulists and the
  topology directory follow; offlining the last online CPU answers EBUSY;
- memoryN/state takes online, online_kernel, online_movable or offline (anything else: EINVAL) and reads
  back `online` or `offline`; onlining an online block or offlining an offline one answers EINVAL, as
  device_online()/device_offline() do; a block whose valid_zones is `none` refuses offlining (EINVAL);
  online_movable picks the Movable zone, online_kernel the first kernel zone, online the default
  (first) zone; an offline block lists the zones it could join; memoryN/online takes 0/1 the same way;
- EDAC counters are read-only; writing anything to mcN/reset_counters zeroes the controller's counters;
- there is no way to create, remove or rename anything.

Control interface: the file MOUNTPOINT/simsysfs/control (outside devices/, so the modules never see it).
Reading it gives the state as JSON: the CPUs, blocks and EDAC counters now, the faults, the layout, and
the log of writes ([path, value written, result]: ok, an errno name, or pending while it hangs).  Writing one command per write(2):

    edac mcN/<counter path> VALUE|+N      set or raise a counter, e.g. `edac mc0/dimm1/dimm_ce_count +5`
    edac cpuN/ce_count|ue_count VALUE|+N  the same for a CPU of the cpu EDAC device, e.g. `edac cpu1/ce_count +60`
    busy memoryN [COUNT]                  the next COUNT (default: every) offline of the block answer EBUSY
    fail cpuN|memoryN online|offline|any ERRNO [COUNT]
                                          those writes answer ERRNO (a name such as EIO, or a number)
    hang cpuN|memoryN SECONDS [COUNT]     those writes block SECONDS (at most 600) before they are applied
    isolated CPULIST                      what cpu/isolated shows (isolcpus=), e.g. `isolated 0` or `isolated`
    hotpluggable cpuN 0|1                 whether cpuN has an online file
    zones memoryN ZONE...                 set a block's valid_zones as the kernel would show them now
    clear                                 drop every fault (busy, fail, hang)
    reset                                 back to the current layout (every CPU and block as it says), log emptied
    load LAYOUT                           replace the whole simulated host with LAYOUT (one line of JSON;
                                          a test's set-up, e.g. adding an EDAC controller), log emptied

A command that cannot be parsed answers EINVAL.  `simsysfs.py control` and `labctl fleet sysfs HOST ...`
write these commands; tests can also write them with `echo CMD > MOUNTPOINT/simsysfs/control`.

Layout (JSON): {"cpus": [{"id", "node", "core", "package", "online", "hotpluggable"}],
"isolated": "", "block_size": bytes, "auto_online_blocks": "offline",
"blocks": [{"id", "node", "state", "zones", "removable", "phys_index", "phys_device"}],
"edac": [{"id", "name", "size_mb", "ce", "ue", "ce_noinfo", "ue_noinfo", "node",
          "dimms": [{"label", "location", "size", "ce", "ue"}], "ranks": [...],
          "csrows": [{"ce", "ue", "size", "channels": [[ce, label], ...]}]}],
"edac_cpus": [{"id", "ce", "ue"}]}
Missing keys take the defaults of Model.from_layout.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import re
import signal
import stat
import sys
import threading
import time

FILE_MODE_RO = stat.S_IFREG | 0o444
FILE_MODE_RW = stat.S_IFREG | 0o644
FILE_MODE_WO = stat.S_IFREG | 0o200
DIR_MODE = stat.S_IFDIR | 0o755
LINK_MODE = stat.S_IFLNK | 0o777
MAX_HANG = 600

BOOL_TRUE = ('1', 'y', 'Y', 'yes', 'on')
BOOL_FALSE = ('0', 'n', 'N', 'no', 'off')
MEMORY_STATES = ('online', 'online_kernel', 'online_movable', 'offline')
KERNEL_ZONES = ('DMA', 'DMA32', 'Normal')


class KernelError(Exception):
    """What a sysfs store() returns: an errno."""

    def __init__(self, code):
        Exception.__init__(self, errno.errorcode.get(code, str(code)))
        self.code = code


# --------------------------------------------------------------------------
# cpu lists ("0-3,8")

def format_list(ids):
    ids = sorted(set(ids))
    out = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else '%d-%d' % (ids[i], ids[j]))
        i = j + 1
    return ','.join(out)


def parse_list(text):
    ids = []
    for part in (text or '').replace(' ', '').split(','):
        if not part:
            continue
        if '-' in part:
            lo, hi = part.split('-', 1)
            ids.extend(range(int(lo), int(hi) + 1))
        else:
            ids.append(int(part))
    return sorted(set(ids))


# --------------------------------------------------------------------------
# the model: what the kernel knows

class Model(object):
    """The host's CPUs, memory blocks, nodes and EDAC counters, and the kernel's rules for changing them."""

    def __init__(self, layout):
        self.layout = copy.deepcopy(layout)
        self.lock = threading.RLock()
        self.faults = []        # dicts: kind (busy/fail/hang), target, op, errno, seconds, count (None: always)
        self.writes = []        # [relative path, value] of every store the kernel accepted or refused
        self.started = time.time()
        self.load(layout)

    # ---- the layout
    def load(self, layout):
        layout = copy.deepcopy(layout)
        self.cpus = {}
        for c in layout.get('cpus', []):
            cid = int(c['id'])
            self.cpus[cid] = dict(id=cid, node=int(c.get('node', 0)), core=int(c.get('core', cid)),
                                  package=int(c.get('package', 0)), online=bool(c.get('online', True)),
                                  hotpluggable=bool(c.get('hotpluggable', cid != 0)))
        self.isolated = parse_list(layout.get('isolated', ''))
        self.block_size = int(layout.get('block_size', 0x8000000))
        self.auto_online = layout.get('auto_online_blocks', 'offline')
        self.blocks = {}
        for b in layout.get('blocks', []):
            bid = int(b['id'])
            state = b.get('state', 'online')
            zones = b.get('zones', 'Normal').split()
            self.blocks[bid] = dict(id=bid, node=int(b.get('node', 0)), state=state, zones=zones,
                                    removable=b.get('removable', 1),
                                    phys_index=int(b.get('phys_index', bid)), phys_device=int(b.get('phys_device', 0)))
        self.edac = {}
        for mc in layout.get('edac', []):
            mid = int(mc['id'])
            entry = dict(id=mid, name=mc.get('name', 'simsysfs mc%d' % mid), size_mb=int(mc.get('size_mb', 16384)),
                         node=mc.get('node'), reset_at=time.time(),
                         counters=dict(ce_count=int(mc.get('ce', 0)), ue_count=int(mc.get('ue', 0)),
                                       ce_noinfo_count=int(mc.get('ce_noinfo', 0)),
                                       ue_noinfo_count=int(mc.get('ue_noinfo', 0))),
                         dimms={})
            for kind in ('dimm', 'rank'):
                for index, d in enumerate(mc.get(kind + 's', [])):
                    entry['dimms']['%s%d' % (kind, index)] = dict(
                        label=d.get('label', ''), location=d.get('location', ''), size=int(d.get('size', 8192)),
                        mem_type=d.get('mem_type', 'Registered-DDR4'), dev_type=d.get('dev_type', 'x4'),
                        edac_mode=d.get('edac_mode', 'S4ECD4ED'),
                        counters=dict(dimm_ce_count=int(d.get('ce', 0)), dimm_ue_count=int(d.get('ue', 0))))
            for index, r in enumerate(mc.get('csrows', [])):
                counters = dict(ce_count=int(r.get('ce', 0)), ue_count=int(r.get('ue', 0)))
                labels = {}
                for ch, (ce, label) in enumerate(r.get('channels', [])):
                    counters['ch%d_ce_count' % ch] = int(ce)
                    labels['ch%d_dimm_label' % ch] = label
                entry['dimms']['csrow%d' % index] = dict(
                    size_mb=int(r.get('size', 8192)), mem_type=r.get('mem_type', 'Registered-DDR4'),
                    edac_mode=r.get('edac_mode', 'S4ECD4ED'), dev_type=r.get('dev_type', 'x4'),
                    counters=counters, labels=labels)
            self.edac[mid] = entry
        self.edac_cpus = {int(c['id']): dict(ce_count=int(c.get('ce', 0)), ue_count=int(c.get('ue', 0)))
                          for c in layout.get('edac_cpus', [])}

    # ---- derived views
    def online_cpus(self):
        return [c for c in sorted(self.cpus) if self.cpus[c]['online']]

    def nodes(self):
        return sorted(set([c['node'] for c in self.cpus.values()] + [b['node'] for b in self.blocks.values()]))

    def node_cpus(self, node, online_only):
        return [c['id'] for c in self.cpus.values() if c['node'] == node and (c['online'] or not online_only)]

    def node_blocks(self, node):
        return sorted(b['id'] for b in self.blocks.values() if b['node'] == node)

    def meminfo(self, node):
        total = sum(self.block_size // 1024 for b in self.blocks.values() if b['node'] == node and b['state'] == 'online')
        lines = [('MemTotal', total), ('MemFree', total // 2), ('MemUsed', total - total // 2)]
        return ''.join('Node %d %-15s %8d kB\n' % (node, key + ':', value) for key, value in lines)

    def siblings(self, cpu):
        c = self.cpus[cpu]
        return [o['id'] for o in self.cpus.values()
                if o['online'] and o['package'] == c['package'] and o['core'] == c['core']]

    def zones_text(self, block):
        return ' '.join(self.blocks[block]['zones'])

    # ---- faults
    def hang_for(self, target, op, interrupted=lambda: False):
        """Block a write that a `hang` fault matches; a signal to the writer ends it with EINTR (as a page
        migration in offline_pages() ends on signal_pending())."""
        with self.lock:
            fault = None
            for f in self.faults:
                if f['kind'] == 'hang' and f['target'] == target and f['count'] != 0:
                    if f['count'] is not None:
                        f['count'] -= 1
                    fault = f
                    break
        if fault is not None:
            until = time.monotonic() + fault['seconds']
            while time.monotonic() < until:
                if interrupted():
                    raise KernelError(errno.EINTR)
                time.sleep(0.01)

    def error_for(self, target, op):
        for fault in self.faults:
            if fault['kind'] == 'hang' or fault['target'] != target or fault['op'] not in (op, 'any'):
                continue
            if fault['count'] is not None:
                if fault['count'] <= 0:
                    continue
                fault['count'] -= 1
            return fault['errno']
        return None

    # ---- stores (what the kernel does on a write)
    def store(self, rel, value, interrupted=lambda: False):
        """Apply a write to the attribute at rel (a tuple of path parts); raises KernelError."""
        text = value.decode('ascii', 'replace')
        word = text.strip()
        target, op = self._target(rel, word)
        with self.lock:
            self.writes.append(['/'.join(rel), text, 'pending'])
            entry = self.writes[-1]
        try:
            if target is not None:
                self.hang_for(target, op, interrupted)
        except KernelError as exc:
            entry[2] = errno.errorcode.get(exc.code, str(exc.code))
            raise
        with self.lock:
            try:
                if target is not None:
                    code = self.error_for(target, op)
                    if code is not None:
                        raise KernelError(code)
                self._apply(rel, word)
            except KernelError as exc:
                entry[2] = errno.errorcode.get(exc.code, str(exc.code))
                raise
            entry[2] = 'ok'

    @staticmethod
    def _target(rel, word):
        if len(rel) >= 5 and rel[:3] == ('devices', 'system', 'cpu') and rel[4] == 'online':
            return rel[3], 'online' if word in BOOL_TRUE else 'offline'
        if len(rel) >= 5 and rel[:3] == ('devices', 'system', 'memory') and rel[4] in ('state', 'online'):
            on = word in ('online', 'online_kernel', 'online_movable') + BOOL_TRUE
            return rel[3], 'online' if on else 'offline'
        return None, None

    def _apply(self, rel, word):
        if rel[:3] == ('devices', 'system', 'cpu') and len(rel) == 5 and rel[4] == 'online':
            return self._cpu_online(int(rel[3][3:]), word)
        if rel[:3] == ('devices', 'system', 'memory') and len(rel) == 5:
            block = int(rel[3][6:])
            if rel[4] == 'state':
                return self._memory_state(block, word)
            if rel[4] == 'online':
                if word in BOOL_TRUE:
                    return self._memory_state(block, 'online')
                if word in BOOL_FALSE:
                    return self._memory_state(block, 'offline')
                raise KernelError(errno.EINVAL)
        if rel[:4] == ('devices', 'system', 'edac', 'mc') and len(rel) == 6 and rel[5] == 'reset_counters':
            mc = self.edac[int(rel[4][2:])]
            for counters in [mc['counters']] + [d['counters'] for d in mc['dimms'].values()]:
                for key in counters:
                    counters[key] = 0
            mc['reset_at'] = time.time()
            return None
        raise KernelError(errno.EACCES)

    def _cpu_online(self, cpu, word):
        c = self.cpus[cpu]
        if not c['hotpluggable']:
            raise KernelError(errno.EACCES)
        if word in BOOL_TRUE:
            c['online'] = True
        elif word in BOOL_FALSE:
            if c['online'] and self.online_cpus() == [cpu]:
                raise KernelError(errno.EBUSY)   # the last CPU never goes offline
            c['online'] = False
        else:
            raise KernelError(errno.EINVAL)

    def _memory_state(self, block, word):
        b = self.blocks[block]
        if word not in MEMORY_STATES:
            raise KernelError(errno.EINVAL)
        if b['state'] == 'going-offline':
            raise KernelError(errno.EBUSY)            # another offline of the block is under way
        if word == 'offline':
            if b['state'] != 'online':
                raise KernelError(errno.EINVAL)       # device_offline() of an offline device returns 1
            if b['zones'] == ['none']:
                raise KernelError(errno.EINVAL)       # spans zones or nodes: offline_pages() refuses
            zone = b['zones'][0]
            b['state'] = 'offline'
            # an offline block lists the zones it could join, the default first
            b['zones'] = ['Movable', 'Normal'] if zone == 'Movable' else [zone, 'Movable']
            return
        if b['state'] == 'online':
            raise KernelError(errno.EINVAL)           # device_online() of an online device returns 1
        kernel = [z for z in b['zones'] if z != 'Movable']
        if word == 'online_movable':
            if 'Movable' not in b['zones']:
                raise KernelError(errno.EINVAL)
            zone = 'Movable'
        elif word == 'online_kernel':
            if not kernel:
                raise KernelError(errno.EINVAL)
            zone = kernel[0]
        else:
            zone = b['zones'][0]
        b['state'] = 'online'
        b['zones'] = [zone]

    # ---- control commands
    def control(self, line):
        words = line.split()
        if not words:
            raise KernelError(errno.EINVAL)
        if words[0] == 'load':
            try:
                layout = json.loads(line.split(None, 1)[1])
                with self.lock:
                    self.load(layout)       # parse first: a bad layout leaves the current one
                    self.layout = layout
                    self.faults, self.writes = [], []
            except (IndexError, KeyError, ValueError, TypeError, AttributeError):
                raise KernelError(errno.EINVAL)
            return
        with self.lock:
            try:
                self._control(words[0], words[1:])
            except (KeyError, ValueError, IndexError):
                raise KernelError(errno.EINVAL)

    def _device(self, name):
        match = re.match(r'^(cpu|memory)(\d+)$', name)
        if not match:
            raise ValueError(name)
        table = self.cpus if match.group(1) == 'cpu' else self.blocks
        if int(match.group(2)) not in table:
            raise KeyError(name)
        return name

    @staticmethod
    def _errno(word):
        if word.isdigit():
            return int(word)
        code = getattr(errno, word.upper(), None)
        if not isinstance(code, int):
            raise ValueError(word)
        return code

    @staticmethod
    def _count(args, index):
        return int(args[index]) if len(args) > index else None

    def _control(self, cmd, args):
        if cmd == 'edac' and args[0].startswith('cpu'):
            parts = args[0].strip('/').split('/')
            counters = self.edac_cpus[int(re.match(r'^cpu(\d+)$', parts[0]).group(1))]
            if len(parts) != 2 or parts[1] not in counters:
                raise KeyError(args[0])
            value = args[1]
            counters[parts[1]] = counters[parts[1]] + int(value[1:]) if value.startswith('+') else int(value)
        elif cmd == 'edac':
            parts = args[0].strip('/').split('/')
            mc = self.edac[int(re.match(r'^mc(\d+)$', parts[0]).group(1))]
            counters = mc['counters'] if len(parts) == 2 else mc['dimms'][parts[1]]['counters']
            name = parts[-1]
            if name not in counters or len(parts) > 3:
                raise KeyError(name)
            value = args[1]
            counters[name] = counters[name] + int(value[1:]) if value.startswith('+') else int(value)
        elif cmd == 'busy':
            self.faults.append(dict(kind='busy', target=self._device(args[0]), op='offline', errno=errno.EBUSY,
                                    count=self._count(args, 1)))
        elif cmd == 'fail':
            op = args[1]
            if op not in ('online', 'offline', 'any'):
                raise ValueError(op)
            self.faults.append(dict(kind='fail', target=self._device(args[0]), op=op, errno=self._errno(args[2]),
                                    count=self._count(args, 3)))
        elif cmd == 'hang':
            seconds = float(args[1])
            if not 0 <= seconds <= MAX_HANG:
                raise ValueError(args[1])
            self.faults.append(dict(kind='hang', target=self._device(args[0]), op='any', seconds=seconds,
                                    count=self._count(args, 2)))
        elif cmd == 'isolated':
            self.isolated = parse_list(args[0] if args else '')
        elif cmd == 'hotpluggable':
            self.cpus[int(self._device(args[0])[3:])]['hotpluggable'] = args[1] in BOOL_TRUE
        elif cmd == 'zones':
            self.blocks[int(self._device(args[0])[6:])]['zones'] = list(args[1:])
            if not args[1:]:
                raise ValueError('zones')
        elif cmd == 'clear':
            self.faults = []
        elif cmd == 'reset':
            self.faults = []
            self.writes = []
            self.load(self.layout)
        else:
            raise ValueError(cmd)

    def state_json(self):
        with self.lock:
            return json.dumps(dict(
                cpus=[dict(self.cpus[c]) for c in sorted(self.cpus)],
                isolated=format_list(self.isolated),
                blocks=[dict(self.blocks[b], zones=' '.join(self.blocks[b]['zones'])) for b in sorted(self.blocks)],
                edac={'mc%d' % m: dict(counters=self.edac[m]['counters'],
                                       **{k: d['counters'] for k, d in sorted(self.edac[m]['dimms'].items())})
                      for m in sorted(self.edac)},
                edac_cpus={'cpu%d' % c: self.edac_cpus[c] for c in sorted(self.edac_cpus)},
                faults=self.faults, writes=self.writes, layout=self.layout), indent=1, sort_keys=True) + '\n'


# --------------------------------------------------------------------------
# the tree: directories are computed from the model at each lookup

class Attr(object):
    def __init__(self, read, write=None, mode=None):
        self.read = read            # () -> str
        self.write = write          # (bytes) -> None, raising KernelError; None: read-only
        self.mode = mode or (FILE_MODE_RW if write else FILE_MODE_RO)


class Link(object):
    def __init__(self, target):
        self.target = target


class Dir(object):
    def __init__(self, children):
        self.children = children    # () -> {name: Attr | Link | Dir}


def const(text):
    return Attr(lambda: text)


class Tree(object):
    def __init__(self, model, interrupted=lambda: False):
        self.m = model
        self.interrupted = interrupted      # () -> True when the writer of the current request got a signal

    def root(self):
        return Dir(lambda: dict(devices=Dir(lambda: dict(system=self.system())),
                                simsysfs=Dir(lambda: dict(control=Attr(self.m.state_json, self.control_write)))))

    def control_write(self, data):
        for line in data.decode('ascii', 'replace').splitlines():
            if line.strip():
                self.m.control(line)

    def store(self, *rel):
        return lambda data: self.m.store(rel, data, self.interrupted)

    def system(self):
        m = self.m
        out = dict(cpu=Dir(self.cpu_dir), memory=Dir(self.memory_dir), node=Dir(self.node_dir))
        if m.edac or m.edac_cpus:
            out['edac'] = Dir(self.edac_root)
        return Dir(lambda: out)

    # ---- cpu
    def cpu_dir(self):
        m = self.m
        ids = sorted(m.cpus)
        out = {
            'online': Attr(lambda: format_list(m.online_cpus()) + '\n'),
            'offline': Attr(lambda: format_list(set(ids) - set(m.online_cpus())) + '\n'),
            'possible': const(format_list(ids) + '\n'),
            'present': const(format_list(ids) + '\n'),
            'isolated': Attr(lambda: format_list(m.isolated) + '\n'),
            'kernel_max': const('%d\n' % (max(ids + [0]) + 1 if ids else 0)),
        }
        for cpu in ids:
            out['cpu%d' % cpu] = Dir(lambda cpu=cpu: self.one_cpu(cpu))
        return out

    def one_cpu(self, cpu):
        m = self.m
        c = m.cpus[cpu]
        out = {'uevent': const(''), 'node%d' % c['node']: Link('../../node/node%d' % c['node'])}
        if c['hotpluggable']:
            out['online'] = Attr(lambda: '%d\n' % (1 if c['online'] else 0), self.store('devices', 'system', 'cpu',
                                                                                        'cpu%d' % cpu, 'online'))
        if c['online']:
            siblings = format_list(m.siblings(cpu)) + '\n'
            out['topology'] = Dir(lambda: {
                'core_id': const('%d\n' % c['core']), 'physical_package_id': const('%d\n' % c['package']),
                'die_id': const('0\n'), 'thread_siblings_list': const(siblings), 'core_cpus_list': const(siblings),
                'core_siblings_list': const(format_list(o['id'] for o in m.cpus.values()
                                                        if o['online'] and o['package'] == c['package']) + '\n')})
            package = format_list(o['id'] for o in m.cpus.values() if o['online'] and o['package'] == c['package'])
            caches = ((1, 'Data', siblings), (1, 'Instruction', siblings), (2, 'Unified', siblings),
                      (3, 'Unified', package + '\n'))
            out['cache'] = Dir(lambda: {'index%d' % i: Dir(lambda lv=lv, kind=kind, shared=shared: {
                'level': const('%d\n' % lv), 'type': const(kind + '\n'), 'shared_cpu_list': const(shared)})
                for i, (lv, kind, shared) in enumerate(caches)})
        return out

    # ---- memory
    def memory_dir(self):
        m = self.m
        out = {'block_size_bytes': const('%x\n' % m.block_size), 'auto_online_blocks': const(m.auto_online + '\n')}
        for block in sorted(m.blocks):
            out['memory%d' % block] = Dir(lambda block=block: self.one_block(block))
        return out

    def one_block(self, block):
        m = self.m
        b = m.blocks[block]
        rel = ('devices', 'system', 'memory', 'memory%d' % block)
        out = {
            'state': Attr(lambda: b['state'] + '\n', self.store(*(rel + ('state',)))),
            'online': Attr(lambda: '%d\n' % (1 if b['state'] == 'online' else 0), self.store(*(rel + ('online',)))),
            'valid_zones': Attr(lambda: m.zones_text(block) + '\n'),
            'phys_index': const('%08x\n' % b['phys_index']),
            'phys_device': const('%d\n' % b['phys_device']),
            'uevent': const(''),
            'node%d' % b['node']: Link('../../node/node%d' % b['node']),
        }
        if b['removable'] is not None:
            out['removable'] = const('%d\n' % int(b['removable']))
        return out

    # ---- node
    def node_dir(self):
        m = self.m
        nodes = m.nodes()
        out = {'online': const(format_list(nodes) + '\n'), 'possible': const(format_list(nodes) + '\n'),
               'has_cpu': Attr(lambda: format_list(n for n in nodes if m.node_cpus(n, True)) + '\n'),
               'has_memory': Attr(lambda: format_list(n for n in nodes if any(
                   m.blocks[b]['state'] == 'online' for b in m.node_blocks(n))) + '\n')}
        for node in nodes:
            out['node%d' % node] = Dir(lambda node=node: self.one_node(node, nodes))
        return out

    def one_node(self, node, nodes):
        m = self.m
        out = {'cpulist': Attr(lambda: format_list(m.node_cpus(node, True)) + '\n'),
               'meminfo': Attr(lambda: m.meminfo(node)),
               'distance': const(' '.join('10' if n == node else '20' for n in nodes) + '\n')}
        for cpu in m.node_cpus(node, False):
            out['cpu%d' % cpu] = Link('../../cpu/cpu%d' % cpu)
        for block in m.node_blocks(node):
            out['memory%d' % block] = Link('../../memory/memory%d' % block)
        return out

    # ---- edac
    def edac_root(self):
        out = {}
        if self.m.edac:
            out['mc'] = Dir(self.edac_dir)
        if self.m.edac_cpus:
            out['cpu'] = Dir(lambda: {'cpu%d' % c: Dir(lambda c=c: self.one_edac_cpu(c)) for c in sorted(self.m.edac_cpus)})
        return out

    def one_edac_cpu(self, cpu_id):
        counters = self.m.edac_cpus[cpu_id]
        return {key: self.counter(counters, key) for key in ('ce_count', 'ue_count')}

    def edac_dir(self):
        return {'mc%d' % mid: Dir(lambda mid=mid: self.one_mc(mid)) for mid in sorted(self.m.edac)}

    @staticmethod
    def counter(counters, key):
        return Attr(lambda: '%d\n' % counters[key])

    def one_mc(self, mid):
        mc = self.m.edac[mid]
        out = {'mc_name': const(mc['name'] + '\n'), 'size_mb': const('%d\n' % mc['size_mb']),
               'seconds_since_reset': Attr(lambda: '%d\n' % int(time.time() - mc['reset_at'])),
               'max_location': const('channel 3 slot 1\n'),
               'reset_counters': Attr(lambda: '', self.store('devices', 'system', 'edac', 'mc', 'mc%d' % mid,
                                                             'reset_counters'), FILE_MODE_WO)}
        for key in mc['counters']:
            out[key] = self.counter(mc['counters'], key)
        if mc.get('node') is not None:
            out['node%d' % int(mc['node'])] = Link('../../../node/node%d' % int(mc['node']))
        for name, d in mc['dimms'].items():
            files = {key: self.counter(d['counters'], key) for key in d['counters']}
            if name.startswith('csrow'):
                files.update({k: const(v + '\n') for k, v in d['labels'].items()})
                files.update(size_mb=const('%d\n' % d['size_mb']), mem_type=const(d['mem_type'] + '\n'),
                             edac_mode=const(d['edac_mode'] + '\n'), dev_type=const(d['dev_type'] + '\n'))
            else:
                files.update(dimm_label=const(d['label'] + '\n'), dimm_location=const(d['location'] + '\n'),
                             size=const('%d\n' % d['size']), dimm_mem_type=const(d['mem_type'] + '\n'),
                             dimm_dev_type=const(d['dev_type'] + '\n'), dimm_edac_mode=const(d['edac_mode'] + '\n'))
            out[name] = Dir(lambda files=files: files)
        return out

    # ---- lookup
    def lookup(self, path):
        node = self.root()
        for part in [p for p in path.split('/') if p]:
            if not isinstance(node, Dir):
                return None
            with self.m.lock:
                node = node.children().get(part)
            if node is None:
                return None
        return node


# --------------------------------------------------------------------------
# FUSE glue (mfusepy)

def make_operations(model):
    import mfusepy

    # libfuse's fuse_interrupted(): the request this thread serves was interrupted (needs the intr option)
    libfuse = mfusepy._libfuse  # pylint: disable=protected-access
    tree = Tree(model, lambda: bool(libfuse.fuse_interrupted()))
    uid, gid = os.getuid(), os.getgid()

    def fuse_error(code):
        return mfusepy.FuseOSError(code)

    class SimSysfs(mfusepy.Operations):
        use_ns = True

        def _node(self, path):
            node = tree.lookup(path)
            if node is None:
                raise fuse_error(errno.ENOENT)
            return node

        def getattr(self, path, fh=None):
            node = self._node(path)
            now = int(model.started * 1e9)
            base = dict(st_uid=uid, st_gid=gid, st_atime=now, st_mtime=now, st_ctime=now)
            if isinstance(node, Dir):
                return dict(base, st_mode=DIR_MODE, st_nlink=2, st_size=0)
            if isinstance(node, Link):
                return dict(base, st_mode=LINK_MODE, st_nlink=1, st_size=len(node.target))
            return dict(base, st_mode=node.mode, st_nlink=1, st_size=4096)  # sysfs says 4096 for every attribute

        def readdir(self, path, fh):
            node = self._node(path)
            if not isinstance(node, Dir):
                raise fuse_error(errno.ENOTDIR)
            with model.lock:
                names = sorted(node.children())
            return ['.', '..'] + names

        def readlink(self, path):
            node = self._node(path)
            if not isinstance(node, Link):
                raise fuse_error(errno.EINVAL)
            return node.target

        def open(self, path, flags):
            node = self._node(path)
            if isinstance(node, Dir):
                raise fuse_error(errno.EISDIR)
            if (flags & os.O_ACCMODE) != os.O_RDONLY and getattr(node, 'write', None) is None:
                raise fuse_error(errno.EACCES)
            if (flags & os.O_ACCMODE) != os.O_WRONLY and node.mode == FILE_MODE_WO:
                raise fuse_error(errno.EACCES)
            return 0

        def read(self, path, size, offset, fh):
            node = self._node(path)
            with model.lock:
                data = node.read().encode('ascii')
            return data[offset:offset + size]

        def write(self, path, data, offset, fh):
            node = self._node(path)
            if getattr(node, 'write', None) is None:
                raise fuse_error(errno.EACCES)
            try:
                node.write(data)
            except KernelError as exc:
                raise fuse_error(exc.code)
            return len(data)

        def truncate(self, path, length, fh=None):
            node = self._node(path)   # O_TRUNC on a sysfs attribute changes nothing
            if getattr(node, 'write', None) is None:
                raise fuse_error(errno.EACCES)
            return 0

        def statfs(self, path):
            return dict(f_bsize=4096, f_frsize=4096, f_namemax=255)

    return SimSysfs()


def serve(mountpoint, layout):
    import mfusepy

    model = Model(layout)
    # libfuse tells a thread that its request was interrupted with SIGUSR1 (intr_signal); mfusepy sets the
    # intr option after libfuse would have installed its handler, so ignore-by-handler it here: the signal
    # only has to cut the thread's sleep short, and the hang loop then asks fuse_interrupted().
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: None)
    mfusepy.FUSE(make_operations(model), mountpoint, foreground=True, allow_other=True, fsname='simsysfs',
                 direct_io=True, attr_timeout=0, entry_timeout=0, negative_timeout=0, intr=True)


# --------------------------------------------------------------------------
# a layout of this machine

def _read(path, default=''):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return default


def layout_from_host(sysfs='/sys'):
    """The CPUs, memory blocks and nodes of a real sysfs tree, as a layout (no EDAC unless it has one)."""
    system = os.path.join(sysfs, 'devices', 'system')
    online = set(parse_list(_read(os.path.join(system, 'cpu', 'online'))))

    def numbered(directory, prefix):
        try:
            names = os.listdir(directory)
        except OSError:
            return []
        return sorted(int(n[len(prefix):]) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit())

    def node_of(directory):
        for name in os.listdir(directory):
            if name.startswith('node') and name[4:].isdigit():
                return int(name[4:])
        return 0

    cpus = []
    for cid in numbered(os.path.join(system, 'cpu'), 'cpu'):
        d = os.path.join(system, 'cpu', 'cpu%d' % cid)
        cpus.append(dict(id=cid, node=node_of(d), online=cid in online,
                         hotpluggable=os.path.exists(os.path.join(d, 'online')),
                         core=int(_read(os.path.join(d, 'topology', 'core_id'), cid) or cid),
                         package=int(_read(os.path.join(d, 'topology', 'physical_package_id'), 0) or 0)))
    blocks = []
    for bid in numbered(os.path.join(system, 'memory'), 'memory'):
        d = os.path.join(system, 'memory', 'memory%d' % bid)
        blocks.append(dict(id=bid, node=node_of(d), state=_read(os.path.join(d, 'state'), 'online'),
                           zones=_read(os.path.join(d, 'valid_zones'), 'Normal') or 'Normal',
                           removable=int(_read(os.path.join(d, 'removable'), '1') or 1),
                           phys_index=int(_read(os.path.join(d, 'phys_index'), '%x' % bid), 16),
                           phys_device=int(_read(os.path.join(d, 'phys_device'), '0') or 0)))
    return dict(cpus=cpus, isolated=_read(os.path.join(system, 'cpu', 'isolated')),
                block_size=int(_read(os.path.join(system, 'memory', 'block_size_bytes'), '8000000'), 16),
                auto_online_blocks=_read(os.path.join(system, 'memory', 'auto_online_blocks'), 'offline'),
                blocks=blocks, edac=[])


def control(mountpoint, command):
    """Write one control command; returns the state JSON read afterwards."""
    path = os.path.join(mountpoint, 'simsysfs', 'control')
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, command.encode('ascii'))
    finally:
        os.close(fd)
    with open(path) as handle:
        return handle.read()


def mount_background(mountpoint, layout_path, timeout=20):
    """Start `serve` in its own session, return its pid once MOUNTPOINT is mounted."""
    import subprocess
    log = open(mountpoint.rstrip('/') + '.simsysfs.log', 'ab')
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), 'serve', mountpoint, layout_path],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mountpoint):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise OSError(errno.EIO, 'simsysfs did not mount %s (see %s)' % (mountpoint, log.name))
        time.sleep(0.02)
    return proc.pid


def main(argv):
    if len(argv) >= 3 and argv[0] == 'serve':
        with open(argv[2]) as handle:
            layout = json.load(handle)
        serve(argv[1], layout)
        return 0
    if argv and argv[0] == 'layout-from-host':
        json.dump(layout_from_host(argv[1] if len(argv) > 1 else '/sys'), sys.stdout, indent=1)
        sys.stdout.write('\n')
        return 0
    if len(argv) == 3 and argv[0] == 'mount':
        os.makedirs(argv[1], exist_ok=True)
        print(mount_background(argv[1], argv[2]))
        return 0
    if len(argv) == 2 and argv[0] == 'umount':
        import subprocess
        return subprocess.call(['umount', argv[1]] if os.geteuid() == 0 else ['fusermount3', '-u', argv[1]])
    if len(argv) >= 3 and argv[0] == 'control':
        try:
            sys.stdout.write(control(argv[1], ' '.join(argv[2:])))
        except OSError as exc:
            sys.stderr.write('simsysfs control: %s\n' % exc)
            return 1
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
