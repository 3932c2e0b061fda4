"""Print a domain's metadata element in a namespace, or `absent`, read through libvirt-python.

Usage: domain_metadata.py DOMAIN NAMESPACE_URI live|config

An absent element is libvirt's typed error VIR_ERR_NO_DOMAIN_METADATA, so the test asserts on a state and not on
virsh's wording: virsh 9.0 prints "metadata not found", virsh 11.3 prints nothing and exits 0.
"""
import sys

import libvirt

# An absent element is an answer here, not an error: keep libvirt's default handler from printing it on stderr.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
name, namespace, scope = sys.argv[1:4]
flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG if scope == 'config' else libvirt.VIR_DOMAIN_AFFECT_LIVE
conn = libvirt.open('qemu:///system')
try:
    print(conn.lookupByName(name).metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace, flags))
except libvirt.libvirtError as exc:
    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_METADATA:
        raise
    print('absent')
finally:
    conn.close()
