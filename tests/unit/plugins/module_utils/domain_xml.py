"""Build libvirt domain XML and DomainSnapshot objects for unit tests."""
from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import parse_domain_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.snapshot import DomainSnapshot, JobInfo


def domain_xml(name='dom', maximum=8, enabled=(0, 1), fixed=(0,), cells=((0, '0-3', 262144), (1, '4-7', 262144)),
               pins=None, topology=(2, 1, 4, 1), domain_type='qemu', memory_kib=524288, max_memory_kib=4194304,
               slots=8, devices=''):
    vcpus = ''.join("<vcpu id='%d' enabled='%s' hotpluggable='%s'/>" % (
        i, 'yes' if i in enabled else 'no', 'no' if i in fixed else 'yes') for i in range(maximum))
    cputune = ''
    if pins:
        cputune = '<cputune>%s</cputune>' % ''.join("<vcpupin vcpu='%d' cpuset='%s'/>" % p for p in pins.items())
    numa = ''
    if cells:
        numa = '<numa>%s</numa>' % ''.join("<cell id='%d' cpus='%s' memory='%d' unit='KiB'/>" % c for c in cells)
    topo = ''
    if topology:
        topo = "<topology sockets='%d' dies='%d' cores='%d' threads='%d'/>" % topology
    max_memory = "<maxMemory slots='%d' unit='KiB'>%d</maxMemory>" % (slots, max_memory_kib) if max_memory_kib else ''
    return """<domain type='%s'><name>%s</name><uuid>11111111-2222-3333-4444-555555555555</uuid>%s
      <memory unit='KiB'>%d</memory><vcpu placement='static' current='%d'>%d</vcpu><vcpus>%s</vcpus>%s
      <cpu mode='custom'>%s%s</cpu><devices>%s</devices></domain>""" % (
        domain_type, name, max_memory, memory_kib, len(enabled), maximum, vcpus, cputune, topo, numa, devices)


def snapshot(live_xml=None, config_xml=None, state='running', persistent=True, job=None, name='dom'):
    live = parse_domain_xml(live_xml) if live_xml and state in ('running', 'paused', 'pmsuspended') else None
    config = parse_domain_xml(config_xml or live_xml) if persistent else None
    return DomainSnapshot(name=name, uuid='11111111-2222-3333-4444-555555555555', id=1 if live else None,
                          state=state, state_reason=1, persistent=persistent, autostart=False,
                          job=job or JobInfo(False, 'none', None), live=live, config=config)
