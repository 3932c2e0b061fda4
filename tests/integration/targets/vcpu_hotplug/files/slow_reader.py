"""Read a FIFO slowly for N seconds, then drain it: keeps a libvirt save job running (a real job to refuse changes during)."""
import sys, time
deadline = time.time() + float(sys.argv[2])
with open(sys.argv[1], 'rb') as f:
    while time.time() < deadline:
        if not f.read(65536): break
        time.sleep(0.05)
    while f.read(1 << 20): pass   # drain fast so the writer finishes
