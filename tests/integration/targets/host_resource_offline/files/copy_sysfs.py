"""Copy the CPU, memory block and NUMA node parts of a sysfs tree into DEST (plain files and links).

    copy_sysfs.py DEST [SOURCE]      (SOURCE defaults to /sys)

Only the attributes the kvm.hotplug host modules read are copied, each as a
regular file with the text the kernel returned; nodeN/memoryN/cpuN entries that
are links in sysfs stay links (their names are what matters).  Writing to the
copy changes nothing on the host: this is how the host's own offlining is
simulated in tests.
"""
import os
import sys

CPU_FILES = ('online', 'offline', 'possible', 'present', 'isolated', 'kernel_max')
CPU_OWN = ('online',)
TOPOLOGY = ('core_id', 'physical_package_id', 'die_id', 'thread_siblings_list', 'core_cpus_list')
MEM_FILES = ('block_size_bytes', 'auto_online_blocks')
BLOCK_FILES = ('state', 'online', 'removable', 'valid_zones', 'phys_index', 'phys_device')
NODE_FILES = ('cpulist', 'meminfo', 'distance')


def copy_file(src, dst):
    try:
        with open(src) as f:
            text = f.read()
    except OSError:
        return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, 'w') as f:
        f.write(text)


def copy_links(src_dir, dst_dir, prefix):
    for name in os.listdir(src_dir):
        path = os.path.join(src_dir, name)
        if name.startswith(prefix) and name[len(prefix):].isdigit() and os.path.islink(path):
            os.makedirs(dst_dir, exist_ok=True)
            link = os.path.join(dst_dir, name)
            if not os.path.lexists(link):
                os.symlink(os.readlink(path), link)


def main():
    dest = sys.argv[1]
    source = sys.argv[2] if len(sys.argv) > 2 else '/sys'
    system = os.path.join(source, 'devices', 'system')
    out = os.path.join(dest, 'devices', 'system')
    cpu = os.path.join(system, 'cpu')
    for name in CPU_FILES:
        copy_file(os.path.join(cpu, name), os.path.join(out, 'cpu', name))
    for name in os.listdir(cpu):
        if not (name.startswith('cpu') and name[3:].isdigit()):
            continue
        os.makedirs(os.path.join(out, 'cpu', name), exist_ok=True)
        for attr in CPU_OWN:
            copy_file(os.path.join(cpu, name, attr), os.path.join(out, 'cpu', name, attr))
        for attr in TOPOLOGY:
            copy_file(os.path.join(cpu, name, 'topology', attr), os.path.join(out, 'cpu', name, 'topology', attr))
        copy_links(os.path.join(cpu, name), os.path.join(out, 'cpu', name), 'node')
    memory = os.path.join(system, 'memory')
    if os.path.isdir(memory):
        for name in MEM_FILES:
            copy_file(os.path.join(memory, name), os.path.join(out, 'memory', name))
        for name in os.listdir(memory):
            if name.startswith('memory') and name[6:].isdigit():
                os.makedirs(os.path.join(out, 'memory', name), exist_ok=True)
                for attr in BLOCK_FILES:
                    copy_file(os.path.join(memory, name, attr), os.path.join(out, 'memory', name, attr))
                copy_links(os.path.join(memory, name), os.path.join(out, 'memory', name), 'node')
    node = os.path.join(system, 'node')
    if os.path.isdir(node):
        for name in os.listdir(node):
            if name.startswith('node') and name[4:].isdigit():
                os.makedirs(os.path.join(out, 'node', name), exist_ok=True)
                for attr in NODE_FILES:
                    copy_file(os.path.join(node, name, attr), os.path.join(out, 'node', name, attr))
                copy_links(os.path.join(node, name), os.path.join(out, 'node', name), 'memory')
                copy_links(os.path.join(node, name), os.path.join(out, 'node', name), 'cpu')


if __name__ == '__main__':
    main()
