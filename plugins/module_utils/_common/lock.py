# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One change at a time per domain: an advisory file lock on the host the module runs on.

libvirt serializes API calls on a domain, but not a whole read-plan-apply-verify
sequence: two tasks that read "2 vCPUs" at once would both plan from it.  With
this lock the second task waits, then re-reads the state the first one left.
The lock is a flock(2) on a file named after the domain UUID, so it is released
by the kernel even when a module process is killed.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError

LOCK_DIRS = ('/run/lock/kvm.hotplug', '/tmp/kvm.hotplug-locks')


class DomainLock(object):
    """Context manager holding the lock of one domain for up to `timeout` seconds of waiting.

    busy_msg replaces the message when another task holds the lock for longer (the host lock says "host").
    """

    def __init__(self, uuid, name, timeout, lock_dirs=None, busy_msg=None):
        self.uuid = uuid
        self.busy_msg = busy_msg
        self.name = name
        self.timeout = timeout
        self.lock_dirs = lock_dirs or LOCK_DIRS
        self.handle = None
        self.waited = 0.0

    def _open(self):
        last_error = None
        for directory in self.lock_dirs:
            try:
                os.makedirs(directory, mode=0o755, exist_ok=True)
                return open(os.path.join(directory, '%s.lock' % self.uuid), 'a+')
            except OSError as exc:
                last_error = exc
        raise HotplugError('cannot create a lock file for domain %s in %s: %s'
                           % (self.name, ' or '.join(self.lock_dirs), last_error))

    def __enter__(self):
        self.handle = self._open()
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.waited = time.monotonic() - started
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() - started >= self.timeout:
                self.handle.close()
                raise HotplugError(self.busy_msg or 'another kvm.hotplug task is changing domain %s and did not '
                                   'finish within %s s; nothing was changed' % (self.name, self.timeout))
            time.sleep(0.1)

    def __exit__(self, *exc_info):
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
        return False
