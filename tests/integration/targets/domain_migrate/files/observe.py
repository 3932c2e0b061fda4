"""What one lab hypervisor says about a domain, read without the module: libvirt, QEMU, the guest agent, processes.

    observe.py URI NAME     prints JSON

defined/state/persistent from libvirt; qemu_vcpus (query-cpus-fast cpu-index) and qemu_memory_devices
(query-memory-devices) from QEMU's monitor; agent_online_cpus from guest-get-vcpus; config_vcpus and
config_dimms from the persistent XML; qemu_processes counts the QEMU processes of this machine that run
a guest of that name (all lab hypervisors share one process table), so "exactly once" can be asserted.
"""
import json
import os
import sys
import time

import libvirt
import libvirt_qemu
from lxml import etree


def qemu_processes(name):
    count = 0
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                args = handle.read().split(b'\0')
        except OSError:
            continue
        if args and b'qemu-system' in args[0] and any(a.startswith(b'guest=%s,' % name.encode()) for a in args):
            count += 1
    return count


def agent(dom, command, attempts=20):
    for _attempt in range(attempts):
        try:
            return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps({'execute': command}), 5, 0))['return']
        except libvirt.libvirtError:
            time.sleep(1)
    return None


def main():
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    uri, name = sys.argv[1:3]
    out = dict(uri=uri, name=name, defined=False, state=None, persistent=None, qemu_vcpus=None,
               qemu_memory_devices=None, agent_online_cpus=None, config_vcpus=None, config_dimms=None,
               job_active=False, qemu_processes=qemu_processes(name))
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        print(json.dumps(out))
        return
    state = dom.state()[0]
    out.update(defined=True, persistent=bool(dom.isPersistent()),
               state={libvirt.VIR_DOMAIN_RUNNING: 'running', libvirt.VIR_DOMAIN_PAUSED: 'paused',
                      libvirt.VIR_DOMAIN_SHUTOFF: 'shutoff'}.get(state, str(state)))
    if out['persistent']:
        root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        out['config_vcpus'] = int(root.find('vcpu').get('current', root.find('vcpu').text))
        out['config_dimms'] = len(root.findall("devices/memory[@model='dimm']"))
    if state == libvirt.VIR_DOMAIN_RUNNING:
        try:
            out['job_active'] = dom.jobStats().get('type', 0) != libvirt.VIR_DOMAIN_JOB_NONE
        except libvirt.libvirtError:
            pass

        def qmp(command):
            return json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps({'execute': command}), 0))['return']
        # during a job (a migration) libvirt holds QEMU's monitor: asking would wait 30 s and fail
        if not out['job_active']:
            out['qemu_vcpus'] = sorted(c['cpu-index'] for c in qmp('query-cpus-fast'))
            out['qemu_memory_devices'] = sorted(
                (dict(id=d['data'].get('id'), type=d['type'], size_mib=d['data']['size'] // 1048576,
                      node=d['data'].get('node')) for d in qmp('query-memory-devices')), key=lambda d: str(d['id']))
        vcpus = agent(dom, 'guest-get-vcpus')
        out['agent_online_cpus'] = None if vcpus is None else sum(1 for v in vcpus if v.get('online'))
    print(json.dumps(out))


if __name__ == '__main__':
    main()
