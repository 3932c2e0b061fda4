"""Read a FIFO slowly for N seconds, then drain it to the end.

Keeps a libvirt save job into the FIFO running for a while: a real job during which changes must be refused.
Draining at the end lets the writer finish, so libvirt is never left blocked on the FIFO.
"""
from __future__ import annotations

import sys
import time


def main(path, seconds):
    deadline = time.time() + seconds
    with open(path, 'rb') as fifo:
        while time.time() < deadline:
            if not fifo.read(65536):
                return
            time.sleep(0.05)
        while fifo.read(1 << 20):
            pass


if __name__ == '__main__':
    main(sys.argv[1], float(sys.argv[2]))
