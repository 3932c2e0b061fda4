# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Opening libvirt connections, looking up domains, and turning libvirt errors into one-line messages.

Every module of the collection goes through this file to talk to libvirt, so
that a wrong URI, a missing domain or a missing Python binding reads the same
everywhere.  Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

import os
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError

try:
    import libvirt
except ImportError:
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None
    # libvirt's default error handler prints every error to stderr as well as
    # raising it; the module reports errors itself, once, in fail_json.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

# QEMU monitor and guest agent commands passed through libvirt: imported here once, used by qemu_monitor.py and
# guest_agent.py.
try:
    import libvirt_qemu  # pylint: disable=unused-import
except ImportError:
    libvirt_qemu = None

DEFAULT_URI = 'qemu:///system'


def require_libvirt(module):
    """Fail cleanly when the libvirt Python binding is not importable on the managed host."""
    if libvirt is None:
        module.fail_json(msg=missing_required_lib('libvirt-python'), exception=LIBVIRT_IMPORT_ERROR)


def resolve_uri(uri):
    """The URI to use: the option, else LIBVIRT_DEFAULT_URI, else qemu:///system."""
    return uri or os.environ.get('LIBVIRT_DEFAULT_URI') or DEFAULT_URI


def error_code(exc):
    """libvirt's numeric error code of a libvirtError, or None."""
    try:
        return exc.get_error_code()
    except Exception:  # pylint: disable=broad-except
        return None


def error_text(exc):
    """libvirt's own message of a libvirtError without the Python repr noise."""
    try:
        message = exc.get_error_message()
    except Exception:  # pylint: disable=broad-except
        message = None
    return (message or str(exc)).strip()


def is_error(exc, *names):
    """True when exc is a libvirtError whose code is one of the VIR_ERR_* names given."""
    code = error_code(exc)
    return code is not None and any(getattr(libvirt, name, object()) == code for name in names)


def open_connection(uri, read_only=False):
    """Open a libvirt connection (read-write unless read_only) or raise HotplugError naming the URI."""
    resolved = resolve_uri(uri)
    try:
        conn = libvirt.openReadOnly(resolved) if read_only else libvirt.open(resolved)
    except libvirt.libvirtError as exc:
        raise HotplugError('cannot connect to libvirt at %s: %s' % (resolved, error_text(exc)),
                           exception=traceback.format_exc(), uri=resolved)
    if conn is None:  # very old bindings returned None instead of raising
        raise HotplugError('cannot connect to libvirt at %s' % resolved, uri=resolved)
    return conn


def lookup_domain(conn, name):
    """The virDomain called name, or HotplugError saying it does not exist on this URI."""
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if is_error(exc, 'VIR_ERR_NO_DOMAIN'):
            raise HotplugError('domain %r not found on %s' % (name, conn_uri(conn)), domain=name)
        raise HotplugError('cannot look up domain %r on %s: %s' % (name, conn_uri(conn), error_text(exc)),
                           exception=traceback.format_exc(), domain=name)


def conn_uri(conn):
    """The URI a connection really talks to (after defaults were applied)."""
    try:
        return conn.getURI()
    except Exception:  # pylint: disable=broad-except
        return '?'


class LibvirtSession(object):
    """Context manager: an open connection (and the domain looked up on it) closed however the block ends.

    A resync (restarting libvirt) gives a new connection and domain object: replace() swaps them in, and
    the one that is current at the end is closed.
    """

    def __init__(self, uri, read_only=False):
        self.uri = resolve_uri(uri)
        self.read_only = read_only
        self.conn = None
        self.dom = None

    def __enter__(self):
        self.conn = open_connection(self.uri, self.read_only)
        return self.conn

    def lookup(self, name):
        """Look the domain up on this connection and keep it as .dom."""
        self.dom = lookup_domain(self.conn, name)
        return self.dom

    def replace(self, conn, dom):
        self.conn, self.dom = conn, dom

    def __exit__(self, *exc_info):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # pylint: disable=broad-except
                pass
        return False


def call(action, func, *args, **kwargs):
    """Run one libvirt call; a libvirtError becomes HotplugError("<action>: <libvirt's message>").

    action says what was being done and to which domain, e.g.
    "setting 4 live vCPUs on lab-vcpu", so the message needs no traceback.
    """
    try:
        return func(*args, **kwargs)
    except libvirt.libvirtError as exc:
        raise HotplugError('%s: %s' % (action, error_text(exc)), exception=traceback.format_exc(),
                           libvirt_error_code=error_code(exc))
