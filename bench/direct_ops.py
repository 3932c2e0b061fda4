#!/usr/bin/env python3
"""The plain-Python side of bench/op_overhead_bench.py and bench/batch_bench.py: what a careful hand-written libvirt
script does for one operation and its wait, as a process of its own (so its interpreter start-up and libvirt import
count, as they do for a user's script). The calls and waits are the ones the other benches time in-process.

    direct_ops.py vcpu DOMAIN COUNT            setVcpu per added vCPU, poll guestVcpus until 0..COUNT-1 are online
    direct_ops.py dimm DOMAIN MIB BLOCKS       attach a DIMM (live + config), poll the agent until BLOCKS are online
    direct_ops.py migrate DOMAIN SRC DST       migrateToURI3 live, peer to peer, persistent, undefine the source
    direct_ops.py vcpus COUNT=DOMAIN,...       setVcpusFlags for every domain, then poll until each has its count
"""

from __future__ import annotations

import sys
import time

import libvirt


def vcpu(domain, count):
    conn = libvirt.open('qemu:///system')
    dom = conn.lookupByName(domain)
    current = dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE)
    for vcpu_id in range(current, int(count)):
        dom.setVcpu(str(vcpu_id), 1, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    want = '0-%d' % (int(count) - 1)
    while (dom.guestVcpus() or {}).get('online') != want:
        time.sleep(0.05)


def dimm(domain, mib, blocks):
    import memory_hotplug_bench as mem
    dom = libvirt.open('qemu:///system').lookupByName(domain)
    dom.attachDeviceFlags(mem.DIMM_XML % int(mib), libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    mem.wait_until('the guest onlining the DIMM', lambda: mem.online_blocks(dom) >= int(blocks))


def migrate(domain, src, dst):
    dom = libvirt.open(src).lookupByName(domain)
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
             | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    dom.migrateToURI3(dst, {}, flags)


def vcpus(*pairs):
    """COUNT=DOMAIN ...: the per-host batch floor (bench/rebalance_bench.py's direct())."""
    import rebalance_bench
    want = dict((d, int(c)) for c, d in (p.split('=', 1) for p in pairs))
    conn = libvirt.open('qemu:///system')
    rebalance_bench.direct(conn, want)


def main():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    what, args = sys.argv[1], sys.argv[2:]
    dict(vcpu=vcpu, dimm=dimm, migrate=migrate, vcpus=vcpus)[what](*args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
