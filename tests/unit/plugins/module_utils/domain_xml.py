"""Build libvirt domain XML and DomainSnapshot objects for unit tests."""
from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_model import parse_domain_xml
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.snapshot import DomainSnapshot, JobInfo


def domain_xml(name='dom', maximum=8, enabled=(0, 1), fixed=(0,), cells=((0, '0-3', 262144), (1, '4-7', 262144)),
               pins=None, topology=(2, 1, 4, 1), domain_type='qemu', memory_kib=524288, max_memory_kib=4194304,
               slots=8, devices='', uuid='11111111-2222-3333-4444-555555555555', vcpu_list=True, emulatorpin=None,
               iothreads=0, iothreadpin=None, cpuset=None, placement='static', numatune=None, os=''):
    """The one domain XML builder of the unit tests.

    vCPUs 0..maximum-1, `enabled` of them on, `fixed` not hotpluggable (a <vcpus> list unless vcpu_list=False);
    pins {vcpu: "cpus"}, emulatorpin "cpus", iothreadpin {id: "cpus"}, <vcpu cpuset> and placement; guest NUMA
    `cells` (id, cpus, KiB), `topology` (sockets, dies, cores, threads), numatune (mode, nodeset); memory; an <os>.
    """
    vcpus = ''
    if vcpu_list:
        vcpus = '<vcpus>%s</vcpus>' % ''.join("<vcpu id='%d' enabled='%s' hotpluggable='%s'/>" % (
            i, 'yes' if i in enabled else 'no', 'no' if i in fixed else 'yes') for i in range(maximum))
    tune = ''.join("<vcpupin vcpu='%d' cpuset='%s'/>" % p for p in sorted((pins or {}).items()))
    if emulatorpin:
        tune += "<emulatorpin cpuset='%s'/>" % emulatorpin
    tune += ''.join("<iothreadpin iothread='%d' cpuset='%s'/>" % p for p in sorted((iothreadpin or {}).items()))
    extra = ('<iothreads>%d</iothreads>' % iothreads if iothreads else '') + ('<cputune>%s</cputune>' % tune if tune else '')
    if numatune:
        extra += "<numatune><memory mode='%s' nodeset='%s'/></numatune>" % numatune
    numa = ''
    if cells:
        numa = '<numa>%s</numa>' % ''.join("<cell id='%d' cpus='%s' memory='%d' unit='KiB'/>" % c for c in cells)
    topo = ''
    if topology:
        topo = "<topology sockets='%d' dies='%d' cores='%d' threads='%d'/>" % topology
    max_memory = "<maxMemory slots='%d' unit='KiB'>%d</maxMemory>" % (slots, max_memory_kib) if max_memory_kib else ''
    vcpu_attrs = "placement='%s'%s" % (placement, '' if cpuset is None else " cpuset='%s'" % cpuset)
    return """<domain type='%s'><name>%s</name><uuid>%s</uuid>%s
      <memory unit='KiB'>%d</memory><vcpu %s current='%d'>%d</vcpu>%s%s
      <cpu mode='custom'>%s%s</cpu>%s<devices>%s</devices></domain>""" % (
        domain_type, name, uuid, max_memory, memory_kib, vcpu_attrs, len(enabled), maximum, vcpus, extra, topo, numa,
        os, devices)


def pinned_xml(name, vcpus=2, current=None, vcpupin=None, **kwargs):
    """domain_xml() of a small KVM domain for the pinning tests: no guest NUMA cells, no topology, no <vcpus> list."""
    return domain_xml(name, maximum=vcpus, enabled=tuple(range(vcpus if current is None else current)), pins=vcpupin,
                      cells=(), topology=None, domain_type='kvm', memory_kib=1048576, max_memory_kib=None,
                      uuid='11111111-2222-3333-4444-%012d' % (abs(hash(name)) % 10 ** 12), vcpu_list=False,
                      os="<os><type arch='x86_64'>hvm</type></os>", **kwargs)


def snapshot(live_xml=None, config_xml=None, state='running', persistent=True, job=None, name='dom'):
    live = parse_domain_xml(live_xml) if live_xml and state in ('running', 'paused', 'pmsuspended') else None
    config = parse_domain_xml(config_xml or live_xml) if persistent else None
    return DomainSnapshot(name=name, uuid='11111111-2222-3333-4444-555555555555', id=1 if live else None,
                          state=state, state_reason=1, persistent=persistent, autostart=False,
                          job=job or JobInfo(False, 'none', None), live=live, config=config)
