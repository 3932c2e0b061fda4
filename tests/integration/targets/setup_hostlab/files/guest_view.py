"""What the lab-hostres guest's kernel says, read without the modules under test.

Prints JSON: processors listed in /proc/cpuinfo, /sys/devices/system/cpu/online,
every memory block from `lsmem --all` (block, state, zones, node), MemTotal, and
the kernel log lines added since the last call with --mark (dmesg is cleared then).
"""
import json
import subprocess
import sys

view = {}
with open('/proc/cpuinfo') as f:
    view['processors'] = [int(line.split(':')[1]) for line in f if line.startswith('processor')]
with open('/sys/devices/system/cpu/online') as f:
    view['cpu_online'] = f.read().strip()
with open('/proc/meminfo') as f:
    view['mem_total_kib'] = int([line.split()[1] for line in f if line.startswith('MemTotal:')][0])
out = subprocess.run(['lsmem', '--all', '--raw', '--noheadings', '--output', 'BLOCK,STATE,NODE,ZONES'],
                     check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
blocks = {}
for line in out.splitlines():
    fields = line.split(None, 3)
    blocks[fields[0]] = dict(state=fields[1], node=int(fields[2]), zones=fields[3] if len(fields) > 3 else '')
view['blocks'] = blocks
# --mark reads and clears the kernel log, so the next call shows only what happened in between.
view['dmesg'] = subprocess.run(['dmesg', '-c'] if '--mark' in sys.argv else ['dmesg'], check=True,
                               stdout=subprocess.PIPE, universal_newlines=True).stdout.splitlines()
print(json.dumps(view))
