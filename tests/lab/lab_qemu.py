"""Which QEMU the lab's vCPU-unplug guests run, and why: the one place that decides it.

Stock QEMU under TCG never finalizes a hot-unplugged x86 vCPU (Debian 12's 7.2 and bookworm-backports' 10.0.2,
qemu-tcg-fix/README.md).  The lab's fix is a patch for Debian 12's QEMU 7.2, built into /opt/kvm-hotplug-lab/qemu.
Three readers take the same decision from here:

- the build step (`make lab-qemu`, qemu-tcg-fix/build) builds only on Debian 12's 7.2, the patch's base;
- labctl gives the guests marked emulator="patched" the decided emulator;
- tests/harness/suite.py reports the targets with the alias needs/tcg-vcpu-unplug as skipped, with the reason,
  when the fix is unavailable.

    python3 tests/lab/lab_qemu.py           the decision, one line
    python3 tests/lab/lab_qemu.py action    the build step's action on stdout (build, use-built, none),
                                            the decision on stderr

Standard library only: the build step runs it with the system's python3, before the venv exists.
"""
import collections
import os
import re
import subprocess
import sys

STOCK_QEMU = '/usr/bin/qemu-system-x86_64'
# the build step's install prefix (QFIX_PREFIX there too)
PATCHED_QEMU = os.path.join(os.environ.get('QFIX_PREFIX', '/opt/kvm-hotplug-lab/qemu'), 'bin', 'qemu-system-x86_64')

# What the build step does.
BUILD = 'build'            # the installed QEMU is the patch's base: build the fix, or find the build up to date
USE_BUILT = 'use-built'    # another QEMU is installed: keep the patched 7.2 built here before, build nothing
NONE = 'none'              # another QEMU and no patched build: nothing can be built, the fix is unavailable

# Debian 12's QEMU 7.2 source versions: "1:7.2+dfsg-7+deb12u18".
PATCH_BASE = re.compile(r'^(\d+:)?7\.2\+dfsg-')

LabQemu = collections.namedtuple('LabQemu', 'action emulator unplug_fix reason')
LabQemu.__doc__ = """The decision.

action      what the build step does: BUILD, USE_BUILT or NONE
emulator    the <emulator> of the guests that need a completed TCG vCPU unplug
unplug_fix  whether that emulator finalizes a TCG vCPU unplug (False: such tests are skipped)
reason      one line saying which QEMU that is and why
"""


def decide(installed_version, patched_built):
    """The lab's QEMU for guests that need a completed TCG vCPU unplug.

    installed_version: the Debian source version of the installed qemu-system-x86, or None when it is not installed.
    patched_built: whether the patched 7.2 binary is at PATCHED_QEMU.
    """
    base = installed_version is not None and PATCH_BASE.match(installed_version) is not None
    if installed_version is None:
        installed = 'qemu-system-x86 is not installed (tests/lab/install-packages installs it)'
    elif base:
        installed = 'installed QEMU is %s, the fix\'s base' % installed_version
    else:
        installed = 'installed QEMU is %s, not Debian 12\'s 7.2 the fix is for' % installed_version
    if base:
        action = BUILD
        why = '' if patched_built else ', and the fix is not built yet (make lab-qemu builds it)'
    elif patched_built:
        action = USE_BUILT
        why = ': the patched 7.2 built here before is kept, nothing is built'
    else:
        action = NONE
        why = ', and no patched 7.2 was built here before: nothing is built'
    if patched_built:
        uses = ('guests that hot-unplug vCPUs run %s (Debian 12\'s 7.2 with the TCG vCPU-unplug fix), the others %s'
                % (PATCHED_QEMU, STOCK_QEMU))
    else:
        uses = ('the TCG vCPU-unplug fix is unavailable: every guest runs %s, which never finalizes a TCG vCPU unplug'
                % STOCK_QEMU)
    return LabQemu(action, PATCHED_QEMU if patched_built else STOCK_QEMU, patched_built,
                   '%s%s; %s' % (installed, why, uses))


def installed_qemu_version():
    """The Debian source version of the installed qemu-system-x86 (a binNMU's +bN dropped), or None."""
    try:
        out = subprocess.run(['dpkg-query', '-W', '-f', '${db:Status-Status} ${source:Version}', 'qemu-system-x86'],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False).stdout.decode()
    except OSError:        # no dpkg: not a Debian machine
        return None
    status, _space, version = out.strip().partition(' ')
    return version if status == 'installed' and version else None


def current():
    """The decision for this machine as it is now."""
    return decide(installed_qemu_version(), os.access(PATCHED_QEMU, os.X_OK))


def main(argv):
    decision = current()
    if argv[1:] == ['action']:
        sys.stderr.write('[lab-qemu] %s\n' % decision.reason)
        print(decision.action)
    elif not argv[1:]:
        print('[lab-qemu] %s' % decision.reason)
    else:
        sys.exit('usage: lab_qemu.py [action]')


if __name__ == '__main__':
    main(sys.argv)
