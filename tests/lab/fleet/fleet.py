"""The fleet lab: lab hypervisors hv1..hvN on this one machine, reached as real ones are (libvirt TCP, SSH).

`labctl fleet ...` (tests/lab/labctl) runs this; see the "Fleet lab" section of tests/lab/README.md.

Host hvN (the fixed contract other code uses):
  address       127.0.1.N (a loopback address: all of 127/8 is local on Linux, nothing to configure)
  libvirt       qemu+tcp://127.0.1.N/system (auth none: a lab on loopback only)
  ssh           root@127.0.1.N port 22, key only, the key pair under FLEET_DIR/ssh/
  migration     migration_address = migration_host = 127.0.1.N in its qemu.conf
  sysfs         FLEET_DIR/hvN/sys, a simsysfs FUSE mount (host variable kvm_hotplug_sysfs_root)

Processes of hvN, all started here and ended by their process ids:
  simsysfs      the FUSE server of hvN's sysfs (root mount namespace, mounted before the namespace exists,
                so the namespace's copy of the mount table has it)
  anchor        `unshare --mount --uts --propagation private` running FLEET_DIR/hvN/boot.sh, which mounts
                tmpfs over the libvirt directories, writes the configs in, starts the daemons and then
                stays as the namespace's first process (`exec sleep`)
  virtlogd, libvirtd, sshd   inside that namespace (pid files under its /run/libvirt and FLEET_DIR/hvN)
"""

import argparse
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SIMSYSFS = os.path.join(HERE, "simsysfs.py")
FLEET_DIR = os.environ.get("LAB_FLEET_DIR", "/var/lib/kvm-hotplug-lab/fleet")
SSH_DIR = os.path.join(FLEET_DIR, "ssh")
CLIENT_KEY = os.path.join(SSH_DIR, "id_ed25519")
KNOWN_HOSTS = os.path.join(SSH_DIR, "known_hosts")
AUTHORIZED_KEYS = os.path.join(SSH_DIR, "authorized_keys")
UUID_NS = uuid.UUID("5f0c3e0e-6b1d-4c55-9a53-0c8f2d7a1b01")
DEFAULT_HOSTS = 3
TMPFS_DIRS = ("/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt", "/etc/libvirt")

# lab is labctl itself (its Guest, canonical_xml, lookup, destroy, agent_ping, ...), set by add_parser.
lab = None


def address(n):
    return "127.0.1.%d" % n


def uri(n):
    return "qemu+tcp://%s/system" % address(n)


def host_dir(n):
    return os.path.join(FLEET_DIR, "hv%d" % n)


def sysfs_root(n):
    return os.path.join(host_dir(n), "sys")


def host_number(name):
    if name.startswith("hv") and name[2:].isdigit() and int(name[2:]) > 0:
        return int(name[2:])
    sys.exit("labctl fleet: %r is not a lab hypervisor name (hv1, hv2, ...)" % name)


# --------------------------------------------------------------------------
# what each host is: its simulated hardware, and the guests placed on it

def host_layout(n):
    """The simulated sysfs of hvN: hv1 has 2 nodes of 4 CPUs, the others 1 node; 128 MiB blocks; EDAC DIMMs and
    CPUs."""
    nodes = 2 if n == 1 else 1
    per_node = 4 if n == 1 else 2 + n     # hv1: 8 CPUs, hv2: 4, hv3: 5, hv4: 6 ...
    cpus, blocks = [], []
    for node in range(nodes):
        for i in range(per_node):
            cid = node * per_node + i
            cpus.append(dict(id=cid, node=node, core=i, package=node, online=True, hotpluggable=cid != 0))
        # per node: 4 boot blocks (the first of node 0 spans zones), then 2 movable ones at 4 GiB
        for i in range(4):
            bid = node * 4 + i
            zones = "none" if bid == 0 else ("DMA32" if node == 0 else "Normal")
            blocks.append(dict(id=bid, node=node, state="online", zones=zones))
        for i in range(2):
            bid = 32 + node * 2 + i
            blocks.append(dict(id=bid, node=node, state="online", zones="Movable"))
    edac = [dict(id=node, name="Simulated Socket#%d IMC" % node, size_mb=768, node=node,
                 dimms=[dict(label="hv%d_CPU%d_DIMM_A%d" % (n, node, slot + 1),
                             location="channel %d slot 0" % slot, size=384) for slot in range(2)])
            for node in range(nodes)]
    # a cpu EDAC device too, as CPU cache ECC drivers register one (the serviceability tests raise its counters)
    edac_cpus = [dict(id=c['id'], ce=0, ue=0) for c in cpus]
    return dict(cpus=cpus, isolated="", block_size=0x8000000, auto_online_blocks="offline", blocks=blocks,
                edac=edac, edac_cpus=edac_cpus)


class FleetGuest(object):
    def __init__(self, name, home, purpose, **shape):
        self.name = name
        self.home = home            # host number
        self.guest = lab.Guest(name, purpose, cmdline="lab.uptime_every=5", emulator="patched", **shape)


def fleet_guests():
    # tiny guests: one NUMA cell of 256 MiB, 1 of 4 vCPUs, room for DIMMs (maxMemory 2 GiB, 4 slots)
    small = dict(lab.SMALL)
    return [
        FleetGuest("fleet-a", 1, "fleet lab guest, home hv1", **small),
        FleetGuest("fleet-b", 1, "fleet lab guest, home hv1", **small),
        FleetGuest("fleet-c", 2, "fleet lab guest, home hv2", **small),
    ]


def extra_guests():
    # On demand only: `labctl fleet reset NAME` starts it at home, `labctl fleet remove NAME` takes it away, and
    # `fleet up` and `fleet home` leave it alone, so the scenarios that count hv1's guests never see it.  Its shape
    # is the acceptance labs': q35 with two guest NUMA cells (2 of 8 vCPUs, 2 x 256 MiB, maxMemory 4 GiB, 8 slots).
    return [FleetGuest("fleet-q35", 1, "q35 with two NUMA cells, home hv1, on demand", **dict(lab.NUMA2, machine="q35"))]


def get_fleet_guest(name):
    for fg in fleet_guests() + extra_guests():
        if fg.name == name:
            return fg
    sys.exit("labctl fleet: unknown fleet guest %r (known: %s)"
             % (name, ", ".join(g.name for g in fleet_guests() + extra_guests())))


def serial_log(name):
    return os.path.join(FLEET_DIR, name + ".serial.log")


# --------------------------------------------------------------------------
# files of a host

LIBVIRTD_CONF = """# libvirtd of lab hypervisor hv{n} (written by tests/lab/fleet/fleet.py)
listen_tls = 0
listen_tcp = 1
listen_addr = "{addr}"
tcp_port = "16509"
# The lab listens on a loopback address only; a real fleet uses TLS or SASL here.
auth_tcp = "none"
auth_unix_rw = "none"
host_uuid = "{host_uuid}"
log_outputs = "3:file:{dir}/libvirtd.log"
"""

QEMU_CONF = """# QEMU driver of lab hypervisor hv{n}
stdio_handler = "file"
# incoming migrations listen here and the source is told this address, never the machine's hostname
migration_address = "{addr}"
migration_host = "{addr}"
# the hosts share the kernel, initramfs and serial log files: no per-daemon owner memory in xattrs
remember_owner = 0
# the hosts share /sys/fs/cgroup and number their domains from 1 each: a migrating guest would get the
# same machine cgroup (qemu-ID-NAME) on both sides, so the lab hypervisors use no cgroups for QEMU
# (pinning still works, through sched_setaffinity)
cgroup_controllers = [ ]
"""

VIRTLOGD_CONF = """# virtlogd of lab hypervisor hv{n}
log_outputs = "3:file:{dir}/virtlogd.log"
"""

SSHD_CONFIG = """# sshd of lab hypervisor hv{n}: root with the fleet key only
ListenAddress {addr}:22
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {authorized_keys}
UsePAM no
StrictModes yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""

# What `service libvirtd restart` (and virtlogd) runs inside hvN: its own daemon, never the machine's.
# Bind-mounted over /etc/init.d/libvirtd and /etc/init.d/virtlogd in the namespace only.
INIT_SCRIPT = """#!/bin/sh
# {daemon} of lab hypervisor hv{n} (tests/lab/fleet): start | stop | restart | status
PIDFILE=/run/libvirt/{daemon}.pid
running() {{ [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }}
start() {{
    running && return 0
    /usr/sbin/{daemon} -d {args} --pid-file "$PIDFILE" -f /etc/libvirt/{daemon}.conf
    i=0; while ! running && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    running
}}
stop() {{
    running || return 0
    pid=$(cat "$PIDFILE"); kill "$pid"
    i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$PIDFILE"
}}
case "$1" in
    start) start ;;
    stop) stop ;;
    restart|force-reload|reload) stop; start ;;
    status) if running; then echo "{daemon} is running"; else echo "{daemon} is not running"; exit 3; fi ;;
    *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
"""

BOOT_SH = """#!/bin/sh
# Runs as the first process of hv{n}'s mount and UTS namespace (unshare --mount --uts --propagation private).
set -e
hostname hv{n}
for d in {tmpfs_dirs}; do
    mkdir -p "$d"
    mount -t tmpfs -o mode=0755 tmpfs-hv{n} "$d"
done
cp {dir}/etc/libvirtd.conf {dir}/etc/qemu.conf {dir}/etc/virtlogd.conf /etc/libvirt/
mkdir -p /etc/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt/qemu /var/log/libvirt/qemu /run/sshd
mount --bind {dir}/etc/init.d-libvirtd /etc/init.d/libvirtd
mount --bind {dir}/etc/init.d-virtlogd /etc/init.d/virtlogd
/etc/init.d/virtlogd start
/etc/init.d/libvirtd start
/usr/sbin/sshd -f {dir}/etc/sshd_config
echo ready > {dir}/boot.done
# stay as the namespace's anchor: `fleet down` ends it by its pid
exec sleep 2147483647
"""


def _write(path, text, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_keys(hosts):
    """The client key pair of this lab, one host key per hypervisor, authorized_keys and known_hosts."""
    os.makedirs(SSH_DIR, mode=0o700, exist_ok=True)
    os.chmod(FLEET_DIR, 0o755)
    if not os.path.exists(CLIENT_KEY):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kvm.hotplug fleet lab",
                        "-f", CLIENT_KEY], check=True)
    with open(CLIENT_KEY + ".pub") as f:
        _write(AUTHORIZED_KEYS, f.read(), 0o600)
    known = []
    for n in range(1, hosts + 1):
        d = host_dir(n)
        os.makedirs(d, exist_ok=True)
        key = os.path.join(d, "ssh_host_ed25519_key")
        if not os.path.exists(key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hv%d" % n, "-f", key], check=True)
        with open(key + ".pub") as f:
            kind, blob = f.read().split()[:2]
        known.append("%s %s %s\n" % (address(n), kind, blob))
    _write(KNOWN_HOSTS, "".join(known))


def write_host_files(n):
    d = host_dir(n)
    etc = os.path.join(d, "etc")
    os.makedirs(etc, exist_ok=True)
    fmt = dict(n=n, addr=address(n), dir=d, host_uuid=str(uuid.uuid5(UUID_NS, "hv%d" % n)),
               authorized_keys=AUTHORIZED_KEYS, tmpfs_dirs=" ".join(TMPFS_DIRS))
    _write(os.path.join(etc, "libvirtd.conf"), LIBVIRTD_CONF.format(**fmt))
    _write(os.path.join(etc, "qemu.conf"), QEMU_CONF.format(**fmt))
    _write(os.path.join(etc, "virtlogd.conf"), VIRTLOGD_CONF.format(**fmt))
    _write(os.path.join(etc, "sshd_config"), SSHD_CONFIG.format(**fmt), 0o600)
    _write(os.path.join(etc, "init.d-libvirtd"), INIT_SCRIPT.format(n=n, daemon="libvirtd", args="--listen"), 0o755)
    _write(os.path.join(etc, "init.d-virtlogd"), INIT_SCRIPT.format(n=n, daemon="virtlogd", args=""), 0o755)
    _write(os.path.join(d, "boot.sh"), BOOT_SH.format(**fmt), 0o755)
    _write(os.path.join(d, "sysfs-layout.json"), json.dumps(host_layout(n), indent=1) + "\n")


# --------------------------------------------------------------------------
# processes

def _pids_path(n):
    return os.path.join(host_dir(n), "pids.json")


def read_pids(n):
    try:
        with open(_pids_path(n)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def alive(pid):
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except OSError as e:
        return e.errno == errno.EPERM
    try:
        with open("/proc/%d/stat" % int(pid)) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _read_pidfile(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def daemon_pids(n):
    """{name: pid or None} of hvN's processes, read from its pid files (through the anchor's root for the
    pid files inside the namespace's /run/libvirt)."""
    pids = read_pids(n)
    anchor = pids.get("anchor") if alive(pids.get("anchor")) else None
    out = dict(simsysfs=pids.get("simsysfs") if alive(pids.get("simsysfs")) else None, anchor=anchor,
               virtlogd=None, libvirtd=None, sshd=None)
    if anchor:
        for name in ("virtlogd", "libvirtd"):
            pid = _read_pidfile("/proc/%d/root/run/libvirt/%s.pid" % (anchor, name))
            out[name] = pid if alive(pid) else None
    pid = _read_pidfile(os.path.join(host_dir(n), "sshd.pid"))
    out["sshd"] = pid if alive(pid) else None
    return out


def port_open(addr, port, timeout=0.5):
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def host_healthy(n):
    p = daemon_pids(n)
    return (all(p.values()) and os.path.ismount(sysfs_root(n)) and port_open(address(n), 16509)
            and port_open(address(n), 22))


def mounted(path):
    """True if path is a mount point, also when its FUSE server has died.

    os.path.ismount says False then: stat of a dead FUSE mount fails (ENOTCONN), and
    os.makedirs on it fails with EEXIST. /proc/self/mounts still lists it.
    """
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def unmount(path):
    """Unmount path if mounted: a clean unmount first, a lazy one if something holds it."""
    if mounted(path):
        subprocess.run(["umount", path], check=False, stderr=subprocess.DEVNULL)
    if mounted(path):
        subprocess.run(["umount", "-l", path], check=False)


def start_simsysfs(n):
    mnt = sysfs_root(n)
    unmount(mnt)                    # a server that died leaves its mount behind
    os.makedirs(mnt, exist_ok=True)
    log = open(os.path.join(host_dir(n), "simsysfs.log"), "ab")
    proc = subprocess.Popen([sys.executable, SIMSYSFS, "serve", mnt, os.path.join(host_dir(n), "sysfs-layout.json")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                            env=dict(os.environ, FUSE_LIBRARY_NAME="fuse3"))
    deadline = time.time() + 20
    while not os.path.ismount(mnt):
        if proc.poll() is not None or time.time() > deadline:
            sys.exit("labctl fleet: simsysfs of hv%d did not mount %s (see %s/simsysfs.log)" % (n, mnt, host_dir(n)))
        time.sleep(0.05)
    return proc.pid


def start_namespace(n):
    d = host_dir(n)
    try:
        os.unlink(os.path.join(d, "boot.done"))
    except OSError:
        pass
    log = open(os.path.join(d, "boot.log"), "ab")
    proc = subprocess.Popen(["unshare", "--mount", "--uts", "--propagation", "private", "/bin/sh",
                             os.path.join(d, "boot.sh")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd="/")
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(d, "boot.done")):
        if proc.poll() is not None or time.time() > deadline:
            sys.exit("labctl fleet: hv%d did not boot (see %s/boot.log)" % (n, d))
        time.sleep(0.05)
    return proc.pid


def namespace_of(pid):
    try:
        return os.readlink("/proc/%d/ns/mnt" % pid)
    except OSError:
        return None


def processes_in(ns):
    """Pids of every process whose mount namespace is ns (QEMU, ssh sessions, the daemons, the anchor)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and namespace_of(int(name)) == ns:
            out.append(int(name))
    return out


def end(pids, grace=10.0):
    """SIGTERM each pid, wait up to grace seconds, then SIGKILL what is left."""
    pids = [p for p in pids if p and alive(p)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + grace
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def stop_host(n, conn_timeout=5):
    """Destroy hvN's guests through its libvirtd, end its processes by pid, unmount its sysfs."""
    pids = read_pids(n)
    p = daemon_pids(n)
    if p["libvirtd"] and port_open(address(n), 16509):
        conn = open_host(n, conn_timeout, fatal=False)
        if conn is not None:
            for dom in conn.listAllDomains():
                if dom.isActive():
                    lab.destroy(dom)
            conn.close()
    ns = namespace_of(p["anchor"]) if p["anchor"] else pids.get("namespace")
    # the daemons first (libvirtd would restart nothing, but it logs less when it is not left alone)
    end([p["sshd"], p["libvirtd"], p["virtlogd"]])
    if ns and ns != namespace_of(os.getpid()):
        end(processes_in(ns))
    end([p["anchor"]])
    unmount(sysfs_root(n))
    end([p["simsysfs"]])
    unmount(sysfs_root(n))
    try:
        os.unlink(_pids_path(n))
    except OSError:
        pass


def start_host(n):
    write_host_files(n)
    simsysfs = start_simsysfs(n)
    anchor = start_namespace(n)
    _write(_pids_path(n), json.dumps(dict(simsysfs=simsysfs, anchor=anchor, namespace=namespace_of(anchor))) + "\n")
    open_host(n, 60).close()


def open_host(n, timeout=30, fatal=True):
    import libvirt
    libvirt.registerErrorHandler(lambda *_: None, None)
    deadline = time.time() + timeout
    while True:
        try:
            conn = libvirt.open(uri(n))
            conn.getVersion()
            return conn
        except libvirt.libvirtError as e:
            if time.time() > deadline:
                if fatal:
                    sys.exit("labctl fleet: %s does not answer: %s" % (uri(n), e))
                return None
            time.sleep(0.2)


def known_hosts():
    """Host numbers that have a state directory (were brought up at some time)."""
    try:
        names = os.listdir(FLEET_DIR)
    except OSError:
        return []
    return sorted(int(x[2:]) for x in names if x.startswith("hv") and x[2:].isdigit())


# --------------------------------------------------------------------------
# guests

def guest_xml(fg, ihash):
    return lab.canonical_xml(fg.guest, ihash, state_dir=FLEET_DIR, serial_append=True)


def where(conns, name):
    """[(host number, domain)] of every host that has the guest defined or running."""
    found = []
    for n, conn in sorted(conns.items()):
        dom = lab.lookup(conn, name)
        if dom is not None:
            found.append((n, dom))
    return found


def start_guest_at_home(conns, fg, ihash):
    """Destroy and undefine fg everywhere, define it on its home host from its canonical XML, start it."""
    for _, dom in where(conns, fg.name):
        lab.destroy(dom)
        try:
            dom.undefine()
        except Exception:  # transient (a migrated guest without --persistent): gone with destroy
            pass
    xml, _ = guest_xml(fg, ihash)
    with open(serial_log(fg.name), "w"):
        pass  # one boot per log file; libvirt appends (append='on') across migrations
    dom = conns[fg.home].defineXML(xml)
    dom.create()
    return time.time()


def last_line(name, prefix):
    line = None
    try:
        with open(serial_log(name), "rb") as f:
            for raw in f:
                text = raw.decode("utf-8", "replace").strip()
                if text.startswith(prefix):
                    line = text
    except OSError:
        return None
    return line


def guest_ready(conns, name):
    for _, dom in where(conns, name):
        if dom.isActive() and last_line(name, "KVMHP state ") and lab.agent_ping(dom):
            return True
    return False


def wait_guests(conns, names, timeout):
    start = time.time()
    pending = set(names)
    while pending and time.time() - start < timeout:
        for name in sorted(pending):
            if guest_ready(conns, name):
                pending.discard(name)
        if pending:
            time.sleep(0.25)
    return pending


def ensure_initramfs():
    with lab.lock("fleet-initramfs"):
        return lab.mkinitramfs.ensure(FLEET_DIR)


# --------------------------------------------------------------------------
# commands

def cmd_up(a):
    t0 = time.time()
    if not 1 <= a.hosts <= 254:
        sys.exit("labctl fleet: --hosts must be 1..254")
    notes = {}
    with lab.lock("fleet"):
        ensure_keys(max([a.hosts] + known_hosts()))
        for n in range(1, a.hosts + 1):
            if host_healthy(n):
                notes[n] = "unchanged"
                continue
            had = read_pids(n)
            stop_host(n)
            start_host(n)
            notes[n] = "restarted (it was partly down)" if had else "started"
        info = ensure_initramfs()
        conns = {n: open_host(n) for n in range(1, a.hosts + 1)}
        started = []
        for fg in fleet_guests():
            if fg.home > a.hosts:
                continue
            _, want = guest_xml(fg, info["hash"])
            running = [(n, d) for n, d in where(conns, fg.name) if d.isActive()]
            if len(running) == 1 and _hash_of_live(running[0][1]) == want and os.path.exists(serial_log(fg.name)):
                continue        # running (at home or where a test migrated it), canonical
            start_guest_at_home(conns, fg, info["hash"])
            started.append(fg.name)
        names = [fg.name for fg in fleet_guests() if fg.home <= a.hosts]
        not_ready = wait_guests(conns, names, a.timeout)
    for n in range(1, a.hosts + 1):
        print("hv%d  %-15s %s" % (n, address(n), notes[n]))
    for name in names:
        print("%-8s %s%s" % (name, "started" if name in started else "unchanged",
                             ", NOT READY (see %s)" % serial_log(name) if name in not_ready else ""))
    print("fleet up in %.1f s" % (time.time() - t0))
    return 1 if not_ready else 0


def _hash_of_live(dom):
    import libvirt
    from lxml import etree
    try:
        node = etree.fromstring(dom.XMLDesc(0)).find("metadata/{%s}guest" % lab.META_NS)
    except libvirt.libvirtError:
        return None
    return None if node is None else node.get("hash")


def cmd_down(a):
    t0 = time.time()
    with lab.lock("fleet"):
        hosts = known_hosts()
        for n in hosts:
            if read_pids(n) or mounted(sysfs_root(n)):
                stop_host(n)
                print("hv%d down" % n)
    print("fleet down in %.1f s" % (time.time() - t0))
    return 0


def cmd_status(a):
    rows = []
    for n in known_hosts():
        p = daemon_pids(n)
        daemon = "libvirtd %d" % p["libvirtd"] if p["libvirtd"] else "libvirtd DOWN"
        ssh = "ssh up" if p["sshd"] and port_open(address(n), 22) else "ssh DOWN"
        guests, free = "-", "-"
        if p["libvirtd"] and port_open(address(n), 16509):
            conn = open_host(n, 5, fatal=False)
            if conn is not None:
                doms = conn.listAllDomains()
                guests = ", ".join("%s (%s)" % (d.name(), "running" if d.isActive() else "shut off")
                                   for d in sorted(doms, key=lambda d: d.name())) or "none"
                free = "%d MiB" % (conn.getFreeMemory() // (1024 * 1024))
                conn.close()
        sysfs = "-"
        if os.path.ismount(sysfs_root(n)):
            online = lab_read(os.path.join(sysfs_root(n), "devices", "system", "cpu", "online"))
            sysfs = "cpus %s" % online
        rows.append(("hv%d" % n, daemon, ssh, address(n), free, sysfs, guests))
    if not rows:
        print("no fleet lab hosts (labctl fleet up)")
        return 0
    head = ("host", "daemon", "ssh", "address", "free memory", "sysfs", "guests")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head) - 1)]
    for r in [head] + rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(len(head) - 1)) + "  " + r[-1])
    return 0


def lab_read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "?"


def cmd_reset(a):
    t0 = time.time()
    fg = get_fleet_guest(a.name)
    with lab.lock("fleet-guest-" + fg.name):
        ihash = ensure_initramfs()["hash"]
        conns = {}
        for n in known_hosts():
            if port_open(address(n), 16509):
                conn = open_host(n, 5, fatal=False)
                if conn is not None:
                    conns[n] = conn
        if fg.home not in conns:
            sys.exit("labctl fleet: hv%d (home of %s) is not up; run labctl fleet up" % (fg.home, fg.name))
        start_guest_at_home(conns, fg, ihash)
        not_ready = wait_guests(conns, [fg.name], a.timeout)
    if not_ready:
        print("%s NOT READY after %.0f s on hv%d, see %s" % (fg.name, a.timeout, fg.home, serial_log(fg.name)))
        return 1
    print("%s reset on hv%d in %.1f s" % (fg.name, fg.home, time.time() - t0))
    return 0


def cmd_remove(a):
    """Destroy and undefine a fleet guest on every host that has it (for the on-demand guests)."""
    fg = get_fleet_guest(a.name)
    with lab.lock("fleet-guest-" + fg.name):
        conns = {n: open_host(n, 5) for n in known_hosts() if port_open(address(n), 16509)}
        found = where(conns, fg.name)
        for _, dom in found:
            lab.destroy(dom)
            try:
                dom.undefine()
            except Exception:  # transient (a migrated guest without --persistent): gone with destroy
                pass
    print("%s removed from %s" % (fg.name, ", ".join("hv%d" % n for n, _ in found) or "nowhere"))
    return 0


def cmd_home(a):
    """Every fleet guest not running canonical on its home host is reset there; the others are left alone."""
    t0 = time.time()
    ihash = ensure_initramfs()["hash"]
    conns = {n: open_host(n, 5) for n in known_hosts() if port_open(address(n), 16509)}
    moved = []
    for fg in fleet_guests():
        if fg.home not in conns:
            continue
        found = where(conns, fg.name)
        if [n for n, d in found] == [fg.home] and found[0][1].isActive() and \
                _hash_of_live(found[0][1]) == guest_xml(fg, ihash)[1]:
            continue
        with lab.lock("fleet-guest-" + fg.name):
            start_guest_at_home(conns, fg, ihash)
        moved.append(fg.name)
    not_ready = wait_guests(conns, moved, a.timeout)
    for name in moved:
        print("%s reset at home%s" % (name, ", NOT READY" if name in not_ready else ""))
    print("fleet home in %.1f s (%d reset)" % (time.time() - t0, len(moved)))
    return 1 if not_ready else 0


def cmd_sysfs(a):
    n = host_number(a.host)
    mnt = sysfs_root(n)
    if not os.path.ismount(mnt):
        sys.exit("labctl fleet: hv%d's sysfs is not mounted at %s; run labctl fleet up" % (n, mnt))
    sys.path.insert(0, HERE)
    import simsysfs
    try:
        if a.command:
            state = simsysfs.control(mnt, " ".join(a.command))
        else:
            with open(os.path.join(mnt, "simsysfs", "control")) as f:
                state = f.read()
    except OSError as e:
        sys.stderr.write("labctl fleet sysfs hv%d: %s: %s\n" % (n, " ".join(a.command), e))
        return 1
    if not a.command or a.verbose:
        sys.stdout.write(state)
    return 0


def cmd_inventory(a):
    """Print the inventory this module's contract describes (tests/lab/fleet/inventory.yml is this output)."""
    sys.stdout.write(inventory_text(a.hosts))
    return 0


def inventory_text(hosts):
    lines = ["---",
             "# The fleet lab's inventory: lab hypervisors on this machine, reached as real ones are, over SSH.",
             "# Written by `labctl fleet inventory` (tests/lab/fleet/fleet.py); `make fleet-up` brings them up.",
             "# kvm_hotplug_sysfs_root is the lab's simulated host sysfs; a real inventory never sets it.",
             "all:", "  children:", "    kvm_hosts:", "      vars:",
             "        ansible_user: root",
             "        ansible_ssh_private_key_file: %s" % CLIENT_KEY,
             "        ansible_ssh_common_args: >-",
             "          -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes" % KNOWN_HOSTS,
             "        ansible_python_interpreter: /usr/bin/python3",
             "        kvm_hotplug_lab_serial_log_dir: %s" % FLEET_DIR,
             "      hosts:"]
    for n in range(1, hosts + 1):
        guests = [fg.name for fg in fleet_guests() if fg.home == n]
        lines += ["        hv%d:" % n,
                  "          ansible_host: %s" % address(n),
                  "          kvm_hotplug_migration_uri: %s" % uri(n),
                  "          kvm_hotplug_sysfs_root: %s" % sysfs_root(n),
                  "          kvm_hotplug_lab_guests: [%s]" % ", ".join(guests)]
    return "\n".join(lines) + "\n"


def add_parser(sub, labctl_module):
    global lab
    lab = labctl_module
    p = sub.add_parser("fleet", help="the fleet lab: lab hypervisors hv1..hvN (tests/lab/fleet)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fs = p.add_subparsers(dest="fleet_cmd", metavar="FLEET_COMMAND")
    fs.required = True
    q = fs.add_parser("up", help="bring up hv1..hvN and their guests (idempotent)")
    q.add_argument("--hosts", type=int, default=DEFAULT_HOSTS)
    q.add_argument("--timeout", type=float, default=lab.DEFAULT_TIMEOUT)
    q.set_defaults(func=cmd_up)
    q = fs.add_parser("down", help="destroy the fleet guests and end every lab hypervisor process by its pid")
    q.set_defaults(func=cmd_down)
    q = fs.add_parser("status", help="table of the lab hypervisors")
    q.set_defaults(func=cmd_status)
    q = fs.add_parser("reset", help="a fleet guest back to its home host, canonical config, fresh boot")
    q.add_argument("name", metavar="GUEST")
    q.add_argument("--timeout", type=float, default=lab.DEFAULT_TIMEOUT)
    q.set_defaults(func=cmd_reset)
    q = fs.add_parser("remove", help="destroy and undefine a fleet guest on every host (the on-demand guests)")
    q.add_argument("name", metavar="GUEST")
    q.set_defaults(func=cmd_remove)
    q = fs.add_parser("home", help="reset the fleet guests that are not running canonical on their home host")
    q.add_argument("--timeout", type=float, default=lab.DEFAULT_TIMEOUT)
    q.set_defaults(func=cmd_home)
    q = fs.add_parser("sysfs", help="hvN's simulated sysfs: print its state, or send a control command")
    q.add_argument("host", metavar="HOST")
    q.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    q.add_argument("-v", "--verbose", action="store_true", help="print the state after a command too")
    q.set_defaults(func=cmd_sysfs)
    q = fs.add_parser("inventory", help="print the fleet inventory (tests/lab/fleet/inventory.yml)")
    q.add_argument("--hosts", type=int, default=DEFAULT_HOSTS)
    q.set_defaults(func=cmd_inventory)
