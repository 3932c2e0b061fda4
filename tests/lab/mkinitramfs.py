#!/usr/bin/env python3
"""Build the kvm.hotplug lab guest: Debian cloud kernel + busybox initramfs.

The initramfs (cpio newc, gzip) holds:
  /bin/busybox (busybox-static) and one symlink per applet,
  /init (tests/lab/guest/init), /sbin/shutdown (tests/lab/guest/shutdown),
  /bin/qemu-ga and every shared library ldd reports for it,
  /lib/modules/*.ko for the virtio modules the guest needs, plus
  /lib/modules/load-order (dependency order, read by /init),
  /dev/console (so the kernel can give /init a console before devtmpfs).

The archive is written in pure Python (no cpio binary, no root needed for the
device node) and is reproducible: same inputs, same bytes.  A build is skipped
when the content hash of all inputs matches the stamp of the last build.

Usable as a module (labctl imports it) or as a script:
    python3 tests/lab/mkinitramfs.py [--state-dir DIR] [--force]
"""

import argparse
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INIT_SCRIPT = os.path.join(HERE, "guest", "init")
SHUTDOWN_SCRIPT = os.path.join(HERE, "guest", "shutdown")
DEFAULT_STATE_DIR = "/var/lib/kvm-hotplug-lab"

BUSYBOX = "/bin/busybox"
QEMU_GA = "/usr/sbin/qemu-ga"

# Wanted modules; their dependencies (from modules.dep) are added and the
# whole set is ordered so that every module comes after its dependencies:
# virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
# virtio_console virtio_balloon virtio_mem on Debian 12's cloud kernel.
MODULES = [
    "virtio_pci",
    "virtio_console",
    "virtio_balloon",
    "virtio_mem",
]

# Bump when the layout of the archive changes in a way the inputs don't show.
FORMAT_VERSION = "1"


class BuildError(RuntimeError):
    pass


def _version_key(s):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def find_kernel():
    """Return (kernel version, vmlinuz path) of the newest cloud kernel.

    LAB_KERNEL_VERSION in the environment picks a specific one.
    """
    wanted = os.environ.get("LAB_KERNEL_VERSION")
    found = []
    for name in os.listdir("/boot"):
        m = re.fullmatch(r"vmlinuz-(.+-cloud-amd64)", name)
        if not m:
            continue
        kver = m.group(1)
        if os.path.isdir(os.path.join("/lib/modules", kver, "kernel")):
            found.append(kver)
    if wanted:
        if wanted not in found:
            raise BuildError("LAB_KERNEL_VERSION=%s: no /boot/vmlinuz-%s with modules"
                             % (wanted, wanted))
        kver = wanted
    elif found:
        kver = sorted(found, key=_version_key)[-1]
    else:
        raise BuildError("no /boot/vmlinuz-*-cloud-amd64 with /lib/modules; "
                         "run tests/lab/install-packages")
    return kver, os.path.join("/boot", "vmlinuz-" + kver)


def module_order(kver, wanted=MODULES):
    """Return [(name, path)] for wanted modules and dependencies, deps first."""
    moddir = os.path.join("/lib/modules", kver)
    deps = {}
    by_name = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            if ":" not in line:
                continue
            mod, rest = line.split(":", 1)
            deps[mod] = rest.split()
            name = re.sub(r"\.ko(\.(xz|zst|gz))?$", "", os.path.basename(mod))
            by_name[name.replace("-", "_")] = mod
    order = []
    seen = set()

    def visit(mod, stack=()):
        if mod in seen:
            return
        if mod in stack:
            raise BuildError("module dependency loop at %s" % mod)
        for dep in deps.get(mod, []):
            visit(dep, stack + (mod,))
        seen.add(mod)
        order.append(mod)

    for name in wanted:
        mod = by_name.get(name)
        if mod is None:
            raise BuildError("module %s not found for kernel %s" % (name, kver))
        visit(mod)
    out = []
    for mod in order:
        name = re.sub(r"\.ko(\.(xz|zst|gz))?$", "", os.path.basename(mod))
        out.append((name, os.path.join(moddir, mod)))
    return out


def read_module(path):
    """Module bytes, decompressed if Debian ever ships them compressed."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], check=True,
                              stdout=subprocess.PIPE).stdout
    return data


def shared_libs(binary):
    """Absolute paths of the shared libraries (and loader) ldd lists."""
    out = subprocess.run(["ldd", binary], check=True, stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    libs = []
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"\S+ => (/\S+) \(", line) or re.match(r"(/\S+) \(", line)
        if m:
            libs.append(m.group(1))
        elif "not found" in line:
            raise BuildError("ldd %s: %s" % (binary, line))
    return libs


def busybox_applets():
    out = subprocess.run([BUSYBOX, "--list-full"], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    return sorted(set(p.strip() for p in out.split() if p.strip()))


def _check_inputs():
    missing = [p for p in (BUSYBOX, QEMU_GA, INIT_SCRIPT, SHUTDOWN_SCRIPT)
               if not os.path.exists(p)]
    if missing:
        raise BuildError("missing %s; run tests/lab/install-packages" % ", ".join(missing))


def plan():
    """Everything the build uses: {'kver', 'kernel', 'files': [(dest, src)], ...}."""
    _check_inputs()
    kver, kernel = find_kernel()
    files = [("/init", INIT_SCRIPT), ("/sbin/shutdown", SHUTDOWN_SCRIPT),
             ("/bin/busybox", BUSYBOX), ("/bin/qemu-ga", QEMU_GA)]
    for lib in shared_libs(QEMU_GA):
        files.append((lib, lib))
    mods = module_order(kver)
    return {"kver": kver, "kernel": kernel, "files": files, "modules": mods,
            "applets": busybox_applets()}


def input_hash(p):
    """Content hash over every input of the build (and of this builder)."""
    h = hashlib.sha256()
    h.update(FORMAT_VERSION.encode())
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    h.update(p["kver"].encode())
    for label, path in [("kernel", p["kernel"])] + p["files"] + \
            [("mod:" + n, path) for n, path in p["modules"]]:
        h.update(label.encode() + b"\0" + path.encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    h.update("\n".join(p["applets"]).encode())
    return h.hexdigest()


class Cpio:
    """Minimal cpio 'newc' writer."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1
        self.dirs = set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        name = name.lstrip("/")
        namez = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0,
            rdev[0], rdev[1], len(namez), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + namez)
        self._pad()
        self.buf.write(data)
        self._pad()

    def _pad(self):
        n = (-self.buf.tell()) % 4
        self.buf.write(b"\0" * n)

    def mkdir(self, path):
        path = "/" + path.strip("/")
        if path == "/" or path in self.dirs:
            return
        self.mkdir(os.path.dirname(path))
        self.dirs.add(path)
        self._entry(path, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, path, data, mode=0o644):
        self.mkdir(os.path.dirname(path))
        self._entry(path, stat.S_IFREG | mode, data)

    def symlink(self, path, target):
        self.mkdir(os.path.dirname(path))
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path, major, minor, mode=0o600):
        self.mkdir(os.path.dirname(path))
        self._entry(path, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0, nlink=1)
        n = (-self.buf.tell()) % 512
        self.buf.write(b"\0" * n)
        return self.buf.getvalue()


def build_archive(p):
    c = Cpio()
    for d in ("/bin", "/sbin", "/dev", "/proc", "/sys", "/tmp", "/run", "/etc",
              "/lib/modules", "/var", "/root"):
        c.mkdir(d)
    c.chardev("/dev/console", 5, 1)
    c.chardev("/dev/null", 1, 3, 0o666)
    c.symlink("/var/run", "../run")
    c.file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    c.file("/etc/group", b"root:x:0:\n")
    for dest, src in p["files"]:
        with open(src, "rb") as f:
            data = f.read()
        mode = 0o755 if (os.stat(src).st_mode & 0o111) else 0o644
        c.file(dest, data, mode)
    links = set()
    for applet in p["applets"]:
        dest = "/" + applet.lstrip("/")
        if dest.startswith("/usr/") or dest.count("/") == 1:
            # keep everything in /bin and /sbin; /usr is not in the guest
            dest = "/bin/" + os.path.basename(dest)
        if dest in links or dest in ("/bin/busybox", "/bin/qemu-ga", "/init", "/sbin/shutdown"):
            continue
        links.add(dest)
        c.symlink(dest, "/bin/busybox")
    order = []
    for name, path in p["modules"]:
        c.file("/lib/modules/%s.ko" % name, read_module(path))
        order.append(name)
    c.file("/lib/modules/load-order", ("\n".join(order) + "\n").encode())
    raw = c.finish()
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(raw)
    return out.getvalue()


def _atomic_write(path, data, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure(state_dir=DEFAULT_STATE_DIR, force=False, log=print):
    """Build kernel + initramfs into state_dir if inputs changed.

    Returns {'hash', 'kver', 'kernel', 'initrd', 'built'}.
    """
    os.makedirs(state_dir, exist_ok=True)
    os.chmod(state_dir, 0o755)
    p = plan()
    digest = input_hash(p)
    kernel_out = os.path.join(state_dir, "vmlinuz")
    initrd_out = os.path.join(state_dir, "initramfs.gz")
    stamp_path = os.path.join(state_dir, "initramfs.stamp")
    stamp = {}
    try:
        with open(stamp_path) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        pass
    info = {"hash": digest, "kver": p["kver"], "kernel": kernel_out,
            "initrd": initrd_out, "built": False}
    if (not force and stamp.get("hash") == digest
            and os.path.exists(kernel_out) and os.path.exists(initrd_out)):
        return info
    log("building guest initramfs (kernel %s, modules %s)"
        % (p["kver"], " ".join(n for n, _ in p["modules"])))
    data = build_archive(p)
    _atomic_write(initrd_out, data)
    tmp = kernel_out + ".tmp"
    shutil.copyfile(p["kernel"], tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, kernel_out)
    _atomic_write(stamp_path, (json.dumps({
        "hash": digest, "kver": p["kver"], "kernel_src": p["kernel"],
        "modules": [n for n, _ in p["modules"]],
        "initramfs_bytes": len(data)}, indent=1) + "\n").encode())
    log("guest initramfs: %s (%d KiB)" % (initrd_out, len(data) // 1024))
    info["built"] = True
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    ap.add_argument("--force", action="store_true", help="rebuild even if unchanged")
    a = ap.parse_args(argv)
    try:
        info = ensure(a.state_dir, a.force)
    except BuildError as e:
        print("mkinitramfs: %s" % e, file=sys.stderr)
        return 1
    if not info["built"]:
        print("guest initramfs up to date: %s" % info["initrd"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
