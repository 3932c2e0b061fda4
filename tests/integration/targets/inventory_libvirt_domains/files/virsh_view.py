"""What virsh says about every domain of some libvirt URIs, read without the plugin or the collection's code.

    virsh_view.py HYPERVISOR=URI...   prints JSON {domains: [{name, hypervisor, uri, state, vcpus_current,
                                      vcpus_maximum, memory_kib, max_memory_kib, slots}], unreachable: [HYPERVISOR]}

State from `virsh domstate`, vCPU counts from `virsh vcpucount` (live for a running or paused domain, config for
one that is not), memory from `virsh dumpxml` (the live XML of a running domain, else the persistent one) read with
the standard library's XML parser.  A URI virsh cannot list is in `unreachable`.
"""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

UNITS = {'b': 1, 'bytes': 1, 'k': 1024, 'kib': 1024, 'kb': 1000, 'm': 1024 ** 2, 'mib': 1024 ** 2, 'mb': 1000 ** 2,
         'g': 1024 ** 3, 'gib': 1024 ** 3, 'gb': 1000 ** 3}


def virsh(uri, *args):
    return subprocess.run(['virsh', '-q', '-c', uri] + list(args), check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, universal_newlines=True, timeout=60).stdout.strip()


def kib(element):
    if element is None:
        return None
    return int(element.text) * UNITS[element.get('unit', 'KiB').lower()] // 1024


def domain(uri, name):
    state = virsh(uri, 'domstate', name).replace(' ', '')   # 'shut off' -> 'shutoff'
    scope = '--live' if state in ('running', 'paused', 'blocked', 'pmsuspended') else '--config'
    root = ET.fromstring(virsh(uri, 'dumpxml', name) if scope == '--live' else virsh(uri, 'dumpxml', '--inactive', name))
    max_memory = root.find('maxMemory')
    return dict(state=state,
                vcpus_current=int(virsh(uri, 'vcpucount', name, scope, '--active')),
                vcpus_maximum=int(virsh(uri, 'vcpucount', name, scope, '--maximum')),
                memory_kib=kib(root.find('memory')),
                max_memory_kib=kib(max_memory),
                slots=int(max_memory.get('slots', 0)) if max_memory is not None else 0)


def main(pairs):
    domains, unreachable = [], []
    for pair in pairs:
        hypervisor, uri = pair.split('=', 1)
        try:
            names = [n.strip() for n in virsh(uri, 'list', '--all', '--name').splitlines() if n.strip()]
        except subprocess.CalledProcessError:
            unreachable.append(hypervisor)
            continue
        domains.extend(dict(domain(uri, name), name=name, hypervisor=hypervisor, uri=uri) for name in names)
    json.dump(dict(domains=domains, unreachable=unreachable), sys.stdout, indent=1, sort_keys=True)


if __name__ == '__main__':
    main(sys.argv[1:])
