"""Does a QEMU binary finalize a vCPU hot-unplugged under TCG?  Over QMP alone: no libvirt, no lab guest.

    qmp_check.py QEMU_BINARY [--datadir DIR ...] [--kernel K] [--initrd I]

For a QEMU that is not installed (a .deb unpacked with `dpkg -x`, a build tree) and its own firmware
(`--datadir`, QEMU's -L).  Boots the lab's kernel and initramfs (default: copies of those in
/var/lib/kvm-hotplug-lab, read only) with -smp 2,maxcpus=4 under TCG, hot-adds a vCPU, waits until the guest
has it online (its serial log), device_del's it and waits 15 s for DEVICE_DELETED of that device: QEMU sends it
only once the CPU is finalized, and libvirt waits for it (bug 2 of README.md).  Then it hot-adds a vCPU again,
the memory transaction that crashed Debian 12's 7.2 after an unplug (bug 1).  Prints JSON; exits 0 when the
unplug completed and QEMU survived the re-add, 1 otherwise.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

LAB_STATE = '/var/lib/kvm-hotplug-lab'
CMDLINE = 'console=ttyS0 quiet mitigations=off tsc=reliable no_timer_check cryptomgr.notests'


class Qmp:
    """One QMP connection; events that arrive while waiting for a reply are kept."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buf = b''
        self.events = []
        self._read(30)                                   # the greeting
        self.cmd('qmp_capabilities')

    def _read(self, timeout):
        self.sock.settimeout(timeout)
        while b'\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('QEMU closed its QMP socket')
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line)

    def cmd(self, name, **arguments):
        self.sock.sendall(json.dumps({'execute': name, 'arguments': arguments}).encode() + b'\n')
        while True:
            msg = self._read(60)
            if 'event' in msg:
                self.events.append(msg)
            elif 'error' in msg:
                raise RuntimeError('%s: %s' % (name, msg['error']))
            else:
                return msg['return']

    def wait_event(self, match, timeout):
        end = time.time() + timeout
        while not any(match(e) for e in self.events) and time.time() < end:
            try:
                msg = self._read(max(0.1, end - time.time()))
            except socket.timeout:
                break
            if 'event' in msg:
                self.events.append(msg)
        return any(match(e) for e in self.events)


def wait_serial(path, text, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            with open(path, errors='replace') as handle:
                if text in handle.read():
                    return True
        time.sleep(0.2)
    return False


def free_slot(qmp):
    return [c for c in qmp.cmd('query-hotpluggable-cpus') if 'qom-path' not in c][-1]


def check(qmp, serial, proc):
    out = dict(version='%(major)d.%(minor)d.%(micro)d' % qmp.cmd('query-version')['qemu'])
    out['booted'] = wait_serial(serial, 'KVMHP state', 120)
    slot = free_slot(qmp)
    qmp.cmd('device_add', driver=slot['type'], id='hotcpu', **slot['props'])
    out['guest_onlined'] = wait_serial(serial, 'cpus_online=0-2', 60)
    started = time.time()
    qmp.cmd('device_del', id='hotcpu')
    finalized = qmp.wait_event(lambda e: e['event'] == 'DEVICE_DELETED' and e['data'].get('device') == 'hotcpu', 15)
    out['device_deleted_after_s'] = round(time.time() - started, 2) if finalized else None
    out['device_deleted_events'] = [e['data'] for e in qmp.events if e['event'] == 'DEVICE_DELETED']
    out['guest_saw_cpu_gone'] = wait_serial(serial, 'KVMHP cpu-gone', 5)
    try:
        slot = free_slot(qmp)
        qmp.cmd('device_add', driver=slot['type'], id='hotcpu2', **slot['props'])
        time.sleep(5)
        out['vcpus_after_readd'] = len(qmp.cmd('query-cpus-fast'))
    except (EOFError, OSError, RuntimeError) as exc:
        out['readd_error'] = str(exc)
    try:
        out['qemu_exit_code'] = proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        out['qemu_exit_code'] = None                     # still running
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('binary')
    parser.add_argument('--datadir', action='append', default=[], help="QEMU's -L (repeatable)")
    parser.add_argument('--kernel', default=os.path.join(LAB_STATE, 'vmlinuz'))
    parser.add_argument('--initrd', default=os.path.join(LAB_STATE, 'initramfs.gz'))
    a = parser.parse_args()
    work = tempfile.mkdtemp(prefix='qmp-check-')
    qmp_path, serial, log = (os.path.join(work, n) for n in ('qmp', 'serial.log', 'qemu.log'))
    # copies: the lab may rebuild its initramfs meanwhile
    kernel, initrd = shutil.copy(a.kernel, work), shutil.copy(a.initrd, os.path.join(work, 'initrd'))
    args = [a.binary] + [x for d in a.datadir for x in ('-L', d)] + [
        '-accel', 'tcg', '-M', 'pc', '-cpu', 'qemu64', '-smp', '2,sockets=1,cores=4,threads=1,maxcpus=4',
        '-m', '512', '-nodefaults', '-display', 'none', '-kernel', kernel, '-initrd', initrd, '-append', CMDLINE,
        '-serial', 'file:' + serial, '-qmp', 'unix:%s,server=on,wait=off' % qmp_path]
    with open(log, 'w') as handle:
        proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if os.path.exists(qmp_path) or proc.poll() is not None:
                break
            time.sleep(0.1)
        out = dict(binary=a.binary, datadirs=a.datadir)
        out.update(check(Qmp(qmp_path), serial, proc))
    finally:
        proc.kill()
        proc.wait()
        with open(log, errors='replace') as handle:
            qemu_said = handle.read()[-400:]
        shutil.rmtree(work, ignore_errors=True)
    out['qemu_output'] = qemu_said
    print(json.dumps(out, indent=1))
    return 0 if out['device_deleted_after_s'] is not None and out['qemu_exit_code'] is None else 1


if __name__ == '__main__':
    sys.exit(main())
