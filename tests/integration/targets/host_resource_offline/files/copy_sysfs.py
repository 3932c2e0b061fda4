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


def numbered(directory, prefix):
    """Names in directory that are prefix followed by a number (cpu3, memory32, node1)."""
    return [name for name in os.listdir(directory) if name.startswith(prefix) and name[len(prefix):].isdigit()]


def copy_links(src_dir, dst_dir, prefix):
    for name in numbered(src_dir, prefix):
        path = os.path.join(src_dir, name)
        if os.path.islink(path):
            os.makedirs(dst_dir, exist_ok=True)
            link = os.path.join(dst_dir, name)
            if not os.path.lexists(link):
                os.symlink(os.readlink(path), link)


def copy_numbered(src_parent, dst_parent, prefix, files, link_prefixes):
    """For each prefixN directory: its files (paths relative to it) and its links named like link_prefixesN."""
    if not os.path.isdir(src_parent):
        return
    for name in numbered(src_parent, prefix):
        src, dst = os.path.join(src_parent, name), os.path.join(dst_parent, name)
        os.makedirs(dst, exist_ok=True)
        for attr in files:
            copy_file(os.path.join(src, attr), os.path.join(dst, attr))
        for link_prefix in link_prefixes:
            copy_links(src, dst, link_prefix)


def main():
    dest = sys.argv[1]
    source = sys.argv[2] if len(sys.argv) > 2 else '/sys'
    system = os.path.join(source, 'devices', 'system')
    out = os.path.join(dest, 'devices', 'system')
    for name in CPU_FILES:
        copy_file(os.path.join(system, 'cpu', name), os.path.join(out, 'cpu', name))
    for name in MEM_FILES:
        copy_file(os.path.join(system, 'memory', name), os.path.join(out, 'memory', name))
    copy_numbered(os.path.join(system, 'cpu'), os.path.join(out, 'cpu'), 'cpu',
                  CPU_OWN + tuple(os.path.join('topology', attr) for attr in TOPOLOGY), ('node',))
    copy_numbered(os.path.join(system, 'memory'), os.path.join(out, 'memory'), 'memory', BLOCK_FILES, ('node',))
    copy_numbered(os.path.join(system, 'node'), os.path.join(out, 'node'), 'node', NODE_FILES, ('memory', 'cpu'))


if __name__ == '__main__':
    main()
