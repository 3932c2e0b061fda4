"""Open (and close) a real window in which a lab domain is being live-migrated, for the migration refusal test.

    migration_window.py start DOMAIN   prints JSON {daemon_pid, port, workdir}
    migration_window.py stop DOMAIN DAEMON_PID WORKDIR

libvirt refuses to migrate a domain to the host it runs on (same host UUID), so
`start` runs a second libvirtd in a private mount namespace: tmpfs over its
state, runtime, cache, log and config directories, another host UUID, listening
on a free TCP port of 127.0.0.1 only.  It then starts a live migration of
DOMAIN to that daemon at 1 MiB/s (the destination gets its own serial log
path), so the source domain has an outgoing migration job for minutes, and
returns once libvirt reports that job.  `stop` aborts the migration (the guest
keeps running where it was), then ends the second daemon by its process id.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import libvirt

DAEMON_SCRIPT = r'''
set -e
for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt; do
    mount -t tmpfs tmpfs "$d"
done
mkdir -p /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu /run/libvirt/qemu
cat > /etc/libvirt/libvirtd.conf <<CONF
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "$PORT"
auth_tcp = "none"
host_uuid = "$HOST_UUID"
CONF
echo 'stdio_handler = "file"' > /etc/libvirt/qemu.conf
exec /usr/sbin/libvirtd --listen --pid-file /run/libvirt/second-libvirtd.pid
'''


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait(what, check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise SystemExit('migration_window: %s did not happen within %s s' % (what, timeout))


def migrating(dom):
    try:
        stats = dom.jobStats()
    except libvirt.libvirtError:
        return False
    return stats.get('type', 0) != libvirt.VIR_DOMAIN_JOB_NONE and stats.get('operation') == \
        libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT


def start(name):
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    workdir = tempfile.mkdtemp(prefix='kvmhp-migration-')
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST_UUID=str(uuid.uuid4()))
    with open(os.path.join(workdir, 'daemon.log'), 'w') as log:
        daemon = subprocess.Popen(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', DAEMON_SCRIPT],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    dest_uri = 'qemu+tcp://127.0.0.1:%d/system' % port

    def dest_answers():
        try:
            libvirt.open(dest_uri).close()
            return True
        except libvirt.libvirtError:
            return daemon.poll() is not None and sys.exit('migration_window: the second libvirtd exited, see %s'
                                                          % workdir)
    wait('the second libvirtd answering on %s' % dest_uri, dest_answers, 30)

    conn = libvirt.open('qemu:///system')
    dom = conn.lookupByName(name)
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
    serial = '/var/lib/kvm-hotplug-lab/%s.serial.log' % name
    dest_xml = os.path.join(workdir, 'dest.xml')
    with open(dest_xml, 'w') as handle:
        handle.write(xml.replace(serial, os.path.join(workdir, 'dest.serial.log')))
    with open(os.path.join(workdir, 'migrate.log'), 'w') as log:
        subprocess.Popen(['virsh', 'migrate', '--live', '--bandwidth', '1', '--xml', dest_xml, name, dest_uri],
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait('an outgoing migration job on %s' % name, lambda: migrating(dom), 60)
    print(json.dumps(dict(daemon_pid=daemon.pid, port=port, workdir=workdir)))


def stop(name, daemon_pid, workdir):
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open('qemu:///system')
    dom = conn.lookupByName(name)
    aborted = False
    if migrating(dom):
        dom.abortJob()
        aborted = True
    wait('the end of the migration job on %s' % name, lambda: not migrating(dom), 60)
    running = dom.isActive() == 1
    try:
        os.kill(daemon_pid, signal.SIGTERM)
    except ProcessLookupError:
        pass

    def daemon_gone():
        try:
            with open('/proc/%d/stat' % daemon_pid) as handle:
                return handle.read().split(')')[-1].split()[0] == 'Z'
        except OSError:
            return True
    wait('the second libvirtd (pid %d) to exit' % daemon_pid, daemon_gone, 30)
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(dict(aborted=aborted, source_running=running)))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == 'start':
        start(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == 'stop':
        stop(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main()
