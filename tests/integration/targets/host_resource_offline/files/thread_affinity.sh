#!/bin/sh
# The host kernel's view of a running libvirt domain's QEMU threads: "thread name=allowed CPUs" per line,
# from /proc (QEMU names its threads, e.g. "CPU 1/TCG", "IO iothread1"; the main thread is the emulator).
pid=$(cat "/run/libvirt/qemu/$1.pid") || exit 1
for t in /proc/"$pid"/task/*; do
    printf '%s=%s\n' "$(cat "$t/comm")" "$(awk '/^Cpus_allowed_list/{print $2}' "$t/status")"
done
