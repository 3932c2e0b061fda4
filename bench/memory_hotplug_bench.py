#!/usr/bin/env python3
"""Hot-add with wait-for-guest: kvm.hotplug.memory_hotplug against direct libvirt calls, side by side in one run.

    .venv/bin/python bench/memory_hotplug_bench.py [--domain lab-mem] [--rounds 3] [--size-mib 512]

Each round, in alternating order, adds `--size-mib` of memory as one DIMM to a
running domain and waits until the guest has all of it online, in two ways:

  direct   attachDeviceFlags(LIVE|CONFIG) of the DIMM XML, then poll the guest
           agent (guest-get-memory-blocks) until the DIMM's blocks are online:
           the least a careful script does.
  module   the module as a user runs it (`ansible localhost -m
           kvm.hotplug.memory_hotplug -a 'size=... wait_for_guest=true'`),
           timed end to end, and the module's own `elapsed` (lock, reads of
           libvirt, QEMU and the agent, planning, attach, re-read, wait, report).

Between measurements the memory is taken back out (not timed).  Both waits poll
every 0.25 s.  Run by hand against the lab (tests/lab/README.md), never by make
test.  Prints the medians and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import libvirt
import libvirt_qemu
from lxml import etree

import _common

POLL = 0.25
DIMM_XML = "<memory model='dimm'><target><size unit='MiB'>%d</size><node>0</node></target></memory>"


def agent(dom, command):
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps({'execute': command}), 5, 0))['return']


def online_blocks(dom):
    return sum(1 for block in agent(dom, 'guest-get-memory-blocks') if block['online'])


def dimms(dom, flags=0):
    root = etree.fromstring(dom.XMLDesc(flags))
    return [etree.tostring(el, encoding='unicode') for el in root.findall("devices/memory[@model='dimm']")]


def wait_until(what, check, timeout=120):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit('bench: %s did not happen within %s s' % (what, timeout))
        time.sleep(POLL)


def direct_add(dom, size_mib, expected_blocks):
    xml = DIMM_XML % size_mib
    started = time.monotonic()
    dom.attachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    wait_until('the guest onlining the DIMM', lambda: online_blocks(dom) == expected_blocks)
    return time.monotonic() - started


def module_add(domain, base_mib, size_mib):
    env = _common.ansible_env(ANSIBLE_STDOUT_CALLBACK='default', ANSIBLE_LOAD_CALLBACK_PLUGINS='1')
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible'), 'localhost', '-m',
               'kvm.hotplug.memory_hotplug', '-a',
               'name=%s size=%dMiB wait_for_guest=true timeout=120' % (domain, base_mib + size_mib),
               '-e', 'ansible_python_interpreter=%s' % sys.executable]
    started = time.monotonic()
    out = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True).stdout
    total = time.monotonic() - started
    result = json.loads(out[out.index('{'):])
    if result.get('failed') or not result.get('changed'):
        sys.exit('bench: the module did not add the memory: %s' % result.get('msg', out))
    return total, result['elapsed']


def serial_blocks(domain):
    """Online memory blocks in the last state line of a lab guest's serial log (None outside the lab)."""
    try:
        with open('/var/lib/kvm-hotplug-lab/%s.serial.log' % domain, 'rb') as handle:
            states = [line for line in handle.read().decode('utf-8', 'replace').splitlines()
                      if line.startswith('KVMHP state ')]
    except OSError:
        return None
    return int(states[-1].split('mem_blocks_online=')[1].split()[0]) if states else None


def take_back(dom, boot_blocks):
    for flags, live in ((0, True), (libvirt.VIR_DOMAIN_XML_INACTIVE, False)):
        for xml in reversed(dimms(dom, flags)):
            dom.detachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE if live else libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    wait_until('the DIMMs leaving', lambda: not dimms(dom) and online_blocks(dom) == boot_blocks)
    # The lab guest onlines a block the first time it sees it and forgets it only once it has seen it gone:
    # let its loop notice before the next round plugs the same block again.
    wait_until('the guest noticing', lambda: serial_blocks(dom.name()) in (None, boot_blocks))
    time.sleep(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--domain', default='lab-mem')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--size-mib', type=int, default=512)
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    dom = libvirt.open('qemu:///system').lookupByName(args.domain)
    if dimms(dom) or dimms(dom, libvirt.VIR_DOMAIN_XML_INACTIVE):
        sys.exit('bench: %s already has DIMMs; start from its boot memory (labctl reset %s)'
                 % (args.domain, args.domain))
    boot_blocks = online_blocks(dom)
    base_mib = int(etree.fromstring(dom.XMLDesc(0)).findtext('memory')) // 1024  # KiB, as libvirt writes it
    expected = boot_blocks + args.size_mib // 128
    direct, module_total, module_elapsed = [], [], []
    for round_no in range(args.rounds):
        order = ('direct', 'module') if round_no % 2 == 0 else ('module', 'direct')
        for way in order:
            if way == 'direct':
                direct.append(direct_add(dom, args.size_mib, expected))
            else:
                total, elapsed = module_add(args.domain, base_mib, args.size_mib)
                if online_blocks(dom) != expected:
                    sys.exit('bench: the module returned before the guest had the memory online')
                module_total.append(total)
                module_elapsed.append(elapsed)
            take_back(dom, boot_blocks)
        print('round %d: direct %.2f s, module %.2f s in the module (%.2f s end to end with ansible)'
              % (round_no + 1, direct[-1], module_elapsed[-1], module_total[-1]), flush=True)
    d, e, t = (statistics.median(x) for x in (direct, module_elapsed, module_total))
    print()
    print('hot-add %d MiB to %s with wait for the guest, median of %d rounds:' % (args.size_mib, args.domain,
                                                                                  args.rounds))
    print('  direct libvirt calls + agent wait   %6.2f s' % d)
    print('  memory_hotplug (module elapsed)     %6.2f s   ratio %.2f' % (e, e / d))
    print('  memory_hotplug (ansible end to end) %6.2f s   ratio %.2f' % (t, t / d))
    return 0


if __name__ == '__main__':
    sys.exit(main())
