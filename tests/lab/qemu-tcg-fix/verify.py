#!/usr/bin/env python3
"""Check x86 TCG vCPU hot-unplug of a QEMU binary through libvirt.

Defines a throw-away copy of the lab's vCPU guest (default: lab-vcpu) under a
new name with <emulator> set to the QEMU under test, boots it, and runs:

  basic   setvcpus 2 -> 4 -> 2 --live: no 5 s libvirt timeout; libvirt, QEMU
          (query-cpus-fast), the guest agent and the guest's serial log
          agree; QEMU emitted DEVICE_DELETED for the vcpuN devices themselves
  toggle  N more 2 <-> 4 round trips, the same checks after every step
  dimm    vCPU unplug, then attach and detach a 128 MiB DIMM on node 0

Every step prints one line; the exit status is 0 only if all passed.  With
--expect-broken (for Debian's stock QEMU) it instead checks that the known
bugs show: the unplug times out in libvirt, and the DIMM attach after it
kills QEMU.  The guest is undefined at the end unless --keep.

Usage (libvirt-python, e.g. the project's .venv):
  verify.py --emulator /opt/kvm-hotplug-lab/qemu/bin/qemu-system-x86_64
  verify.py --emulator /usr/bin/qemu-system-x86_64 --name qfix-stock --expect-broken
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import libvirt
import libvirt_qemu

LAB_DIR = "/var/lib/kvm-hotplug-lab"
DIMM_XML = ("<memory model='dimm'><target><size unit='MiB'>128</size>"
            "<node>0</node></target></memory>")
LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE

failures = []


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check(ok, what):
    say(("PASS " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)
    return ok


class Guest:
    """A libvirt domain that survives libvirtd restarts.

    Other developers restart the shared libvirtd now and then; running
    guests are not touched, but the connection dies.  Calls are retried
    once on a new connection when the old one is dead.
    """

    def __init__(self, name):
        self.name = name
        self.reconnects = 0
        self.connect()

    def connect(self, timeout=90):
        deadline = time.time() + timeout
        while True:
            try:
                self.conn = libvirt.open("qemu:///system")
                self.dom = self.conn.lookupByName(self.name)
                return
            except libvirt.libvirtError:
                if time.time() > deadline:
                    raise
                time.sleep(1)

    def call(self, fn, *args):
        """fn(virDomain, *args), retried once after a reconnect."""
        try:
            return fn(self.dom, *args)
        except libvirt.libvirtError:
            if self.conn.isAlive() == 1:
                raise
        self.reconnects += 1
        say("libvirtd connection lost (libvirtd restarted?); reconnecting")
        self.connect()
        return fn(self.dom, *args)

    def __getattr__(self, attr):
        return lambda *args: self.call(lambda d, *a: getattr(d, attr)(*a), *args)


def serial_path(name):
    return os.path.join(LAB_DIR, f"{name}.serial.log")


def define(conn, source, name, emulator):
    src = conn.lookupByName(source)
    root = ET.fromstring(src.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    root.find("name").text = name
    for tag in ("uuid", "metadata", "title"):
        el = root.find(tag)
        if el is not None:
            root.remove(el)
    ET.SubElement(root, "title").text = f"qemu-tcg-fix check of {emulator}"
    root.find("devices/emulator").text = emulator
    for el in root.iter("source"):
        if el.get("path", "").endswith(".serial.log"):
            el.set("path", serial_path(name))
    return conn.defineXML(ET.tostring(root, encoding="unicode"))


def qmp(dom, cmd):
    out = dom.call(libvirt_qemu.qemuMonitorCommand, json.dumps({"execute": cmd}), 0)
    return json.loads(out)["return"]


def qemu_cpus(dom):
    return sorted(c["cpu-index"] for c in qmp(dom, "query-cpus-fast"))


def agent_vcpus(dom):
    """(present, online) vCPU ids as the guest agent reports them, or None."""
    try:
        info = dom.guestVcpus()
    except libvirt.libvirtError:
        return None
    if not info:               # None while the agent is not connected
        return None
    return expand(info["vcpus"]), expand(info["online"])


def agent_online(dom):
    v = agent_vcpus(dom)
    return v[1] if v else None


def expand(cpulist):
    out = set()
    for part in cpulist.split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return sorted(out)


def serial_lines(name):
    try:
        with open(serial_path(name), "rb") as f:
            return [raw.decode("utf-8", "replace").strip() for raw in f]
    except OSError:
        return []


def serial_state(name):
    """cpus_online of the last 'KVMHP state' line, as a list."""
    state = None
    for line in serial_lines(name):
        if line.startswith("KVMHP state "):
            state = line
    if state is None:
        return None
    m = re.search(r"cpus_online=(\S+)", state)
    return expand(m.group(1)) if m else None


def libvirt_count(dom):
    return dom.vcpusFlags(LIVE)


def views(dom, name):
    agent = agent_vcpus(dom)
    return {
        "libvirt": libvirt_count(dom),
        "qemu": len(qemu_cpus(dom)),
        "agent": agent[1] if agent else None,
        "agent_present": agent[0] if agent else None,
        "serial": serial_state(name),
    }


def wait_agree(dom, name, n, gone=(), since=0, timeout=60):
    """Wait until libvirt and QEMU count n vCPUs, and the guest agent and
    serial log show exactly vCPUs 0..n-1 present and online.

    gone: vCPUs just unplugged; also wait for the guest's /init to log
    'cpu-gone cpuN' for them (after serial line `since`).  /init polls
    sysfs: if a vCPU is unplugged and plugged again before it notices, it
    takes the new vCPU for the old one and never onlines it (the lab's
    guest, not QEMU), so the next hot-plug must wait for this.
    """
    want = list(range(n))
    deadline = time.time() + timeout
    while True:
        v = views(dom, name)
        logged = serial_lines(name)[since:]
        missing = [c for c in gone if f"KVMHP cpu-gone cpu{c}" not in logged]
        ok = (v["libvirt"] == n and v["qemu"] == n and v["agent"] == want
              and v["agent_present"] == want and v["serial"] == want
              and not missing)
        if ok or time.time() > deadline:
            if missing:
                v["serial_cpu_gone_missing"] = missing
            return ok, v
        time.sleep(0.5)


class EventLog:
    """virsh qemu-monitor-event --loop into a file."""

    def __init__(self, name):
        self.name = name
        self.path = f"/tmp/{name}.qmp-events.log"
        self.f = open(self.path, "w")
        self.start()

    def start(self):
        self.p = subprocess.Popen(
            ["virsh", "qemu-monitor-event", self.name, "--loop", "--timestamp"],
            stdout=self.f, stderr=subprocess.STDOUT)
        time.sleep(1)

    def text(self):
        if self.p.poll() is not None:      # virsh lost libvirtd: restart it
            self.f.write("# virsh qemu-monitor-event restarted\n")
            self.f.flush()
            self.start()
        with open(self.path) as f:
            return f.read()

    def deleted(self):
        """Device ids/paths from DEVICE_DELETED events, in order."""
        out = []
        for line in self.text().splitlines():
            if "DEVICE_DELETED" in line:
                m = re.search(r'"path":"([^"]+)"', line)
                out.append(m.group(1) if m else line)
        return out

    def stop(self):
        self.p.terminate()
        self.p.wait()
        self.f.close()


def setvcpus(dom, n):
    t = time.monotonic()
    try:
        dom.setVcpusFlags(n, LIVE)
        err = None
    except libvirt.libvirtError as e:
        err = str(e)
    return time.monotonic() - t, err


def boot(conn, name):
    open(serial_path(name), "w").close()
    conn.lookupByName(name).create()
    dom = Guest(name)
    t = time.monotonic()
    while agent_online(dom) is None:
        if time.monotonic() - t > 180:
            raise SystemExit(f"{name}: guest agent did not answer within 180 s")
        time.sleep(1)
    # QEMU refuses CPU unplug until the guest's ACPI _INI has switched CPU
    # hotplug to the modern interface; the agent comes later than that, but
    # wait for the guest's own first state line too.
    while serial_state(name) is None and time.monotonic() - t < 240:
        time.sleep(0.5)
    say(f"{name} booted, agent up after {time.monotonic() - t:.1f} s, "
        f"qemu pid {qemu_pid(name)}")
    return dom


def qemu_pid(name):
    try:
        with open(f"/run/libvirt/qemu/{name}.pid") as f:
            return int(f.read().strip())
    except OSError:
        return None


def alive(dom):
    try:
        return dom.isActive() == 1
    except libvirt.libvirtError:
        return False


def qemu_log_tail(name, n=5):
    try:
        with open(f"/var/log/libvirt/qemu/{name}.log", errors="replace") as f:
            return [l.rstrip() for l in f.readlines()[-n:]]
    except OSError:
        return []


def step(dom, name, n, events, label):
    before = len(events.deleted())
    prev = libvirt_count(dom)
    since = len(serial_lines(name))
    secs, err = setvcpus(dom, n)
    ok = err is None and secs < 5
    check(ok, f"{label}: setvcpus {n} --live returned in {secs:.2f} s"
          + (f" with error: {err}" if err else ""))
    agree, v = wait_agree(dom, name, n, gone=range(n, prev), since=since)
    check(agree, f"{label}: views agree on {n}: {v}")
    return before


def attach_dimm(dom):
    """Hot-add DIMM_XML (a memory-map change: what crashes a QEMU holding an unplugged TCG vCPU).

    Returns libvirt's error text or None, after 3 s for QEMU to die if it is going to.
    """
    try:
        dom.attachDeviceFlags(DIMM_XML, LIVE)
        err = None
    except libvirt.libvirtError as e:
        err = str(e)
    time.sleep(3)
    return err


def run_fixed(conn, dom, name, toggles, events):
    # basic
    step(dom, name, 4, events, "basic up")
    before = step(dom, name, 2, events, "basic down")
    time.sleep(1)
    new = events.deleted()[before:]
    vcpu_paths = sorted(p for p in new if re.fullmatch(r"/machine/peripheral/vcpu\d+", p))
    check(vcpu_paths == ["/machine/peripheral/vcpu2", "/machine/peripheral/vcpu3"],
          f"DEVICE_DELETED for the vCPU devices: {new}")
    out = subprocess.run(["virsh", "vcpucount", name, "--live", "--current"],
                         capture_output=True, text=True)
    check(out.stdout.strip() == "2", f"virsh vcpucount {name} --live --current: {out.stdout.strip()}")

    # toggle
    for i in range(1, toggles + 1):
        step(dom, name, 4, events, f"toggle {i} up")
        step(dom, name, 2, events, f"toggle {i} down")
        if not alive(dom):
            check(False, f"toggle {i}: QEMU died: {qemu_log_tail(name)}")
            return

    # dimm after unplug
    step(dom, name, 4, events, "dimm: up")
    step(dom, name, 2, events, "dimm: unplug")
    err = attach_dimm(dom)
    check(err is None and alive(dom),
          f"dimm attach after vCPU unplug: error={err} alive={alive(dom)}")
    if not alive(dom):
        say(f"qemu log: {qemu_log_tail(name)}")
        return
    root = ET.fromstring(dom.XMLDesc(0))
    dimms = root.findall("devices/memory[@model='dimm']")
    check(len(dimms) == 1, f"dimm in live XML: {len(dimms)}")
    if dimms:
        alias = dimms[0].find("alias")
        xml = ET.tostring(dimms[0], encoding="unicode")
        try:
            dom.detachDeviceFlags(xml, LIVE)
            err = None
        except libvirt.libvirtError as e:
            err = str(e)
        deadline = time.time() + 60
        while time.time() < deadline:
            root = ET.fromstring(dom.XMLDesc(0))
            if not root.findall("devices/memory[@model='dimm']"):
                break
            time.sleep(0.5)
        left = len(ET.fromstring(dom.XMLDesc(0)).findall("devices/memory[@model='dimm']"))
        check(err is None and left == 0 and alive(dom),
              f"dimm detach ({alias.get('name') if alias is not None else '?'}): "
              f"error={err} dimms_left={left} alive={alive(dom)}")
    # and vCPUs still work after all that
    step(dom, name, 4, events, "after dimm up")
    step(dom, name, 2, events, "after dimm down")


def run_broken(conn, dom, name, events):
    secs, err = setvcpus(dom, 4)
    check(err is None, f"stock: setvcpus 4 ok in {secs:.2f} s ({err})")
    agree, v = wait_agree(dom, name, 4)
    check(agree, f"stock: views agree on 4: {v}")
    before = len(events.deleted())
    secs, err = setvcpus(dom, 2)
    check(err is not None and "timed out" in err,
          f"stock: setvcpus 2 fails after {secs:.2f} s: {err}")
    time.sleep(2)
    new = events.deleted()[before:]
    check(not any(re.fullmatch(r"/machine/peripheral/vcpu\d+", p) for p in new),
          f"stock: DEVICE_DELETED only for: {new}")
    v = views(dom, name)
    check(v["libvirt"] != v["qemu"], f"stock: stale libvirt view: {v}")
    err = attach_dimm(dom)
    dead = not alive(dom)
    check(dead, f"stock: dimm attach after unplug kills QEMU: error={err} dead={dead}")
    say(f"stock: qemu log tail: {qemu_log_tail(name, 4)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--emulator", required=True)
    ap.add_argument("--name", default="qfix-1")
    ap.add_argument("--source", default="lab-vcpu", help="domain whose inactive XML is copied")
    ap.add_argument("--toggles", type=int, default=20)
    ap.add_argument("--expect-broken", action="store_true")
    ap.add_argument("--keep", action="store_true", help="do not undefine the guest")
    a = ap.parse_args()
    if not a.name.startswith("qfix-"):
        raise SystemExit("use a name starting with qfix-")

    # errors are handled (and printed) here, not by libvirt's default handler
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    conn = libvirt.open("qemu:///system")
    try:
        old = conn.lookupByName(a.name)
        if old.isActive():
            old.destroy()
        old.undefine()
    except libvirt.libvirtError:
        pass
    define(conn, a.source, a.name, a.emulator)
    events = None
    try:
        dom = boot(conn, a.name)
        events = EventLog(a.name)
        say(f"emulator {a.emulator}: "
            + subprocess.run([a.emulator, "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0])
        if a.expect_broken:
            run_broken(conn, dom, a.name, events)
        else:
            run_fixed(conn, dom, a.name, a.toggles, events)
            check(alive(dom), "QEMU still running at the end")
        if dom.reconnects:
            say(f"note: libvirtd went away {dom.reconnects} time(s) during the run")
    finally:
        if events:
            events.stop()
            say(f"QMP events: {events.path}")
        if not a.keep:
            try:
                conn = libvirt.open("qemu:///system")
                dom = conn.lookupByName(a.name)
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError:
                pass
    say(f"{'FAILED: ' + str(len(failures)) if failures else 'all checks passed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
