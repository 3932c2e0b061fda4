"""The guest's own account in its serial log: how many boots, and its uptime counter.

    serial.py LOG [--above SECONDS] [--wait SECONDS]   prints JSON {boots, last_uptime, lines}

The fleet's guests print "KVMHP uptime S" every 5 s of their uptime and "KVMHP boot" once per boot, and
keep one log across migrations (append).  With --above, wait (up to --wait s) until an uptime above
SECONDS has been printed, so a test shows the counter went on after a move.
"""
import argparse
import json
import time


def read(path):
    boots, uptime, lines = 0, None, 0
    with open(path, errors='replace') as handle:
        for line in handle:
            line = line.replace('\r', '').strip()
            if not line.startswith('KVMHP '):
                continue
            lines += 1
            words = line.split()
            if words[1] == 'boot':
                boots += 1
            elif words[1] == 'uptime' and len(words) > 2 and words[2].isdigit():
                uptime = int(words[2])
    return dict(boots=boots, last_uptime=uptime, lines=lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('log')
    parser.add_argument('--above', type=int)
    parser.add_argument('--wait', type=float, default=30)
    args = parser.parse_args()
    deadline = time.time() + args.wait
    state = read(args.log)
    while args.above is not None and (state['last_uptime'] or 0) <= args.above and time.time() < deadline:
        time.sleep(0.5)
        state = read(args.log)
    print(json.dumps(state))


if __name__ == '__main__':
    main()
