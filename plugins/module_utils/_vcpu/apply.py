# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Carrying out a VcpuPlan with libvirt, one vCPU at a time, keeping what each call answered.

libvirt's answer is not the truth about a vCPU unplug: it times out when QEMU
does not send DEVICE_DELETED in time, although the guest may have ejected the
vCPU.  So unplug timeouts are recorded, not raised; the caller then reads
QEMU's and the guest's views to find out what happened.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import format_cpulist
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.guest_agent import AGENT_TIMEOUT_SECONDS
from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import (
    call, error_code, error_text, libvirt,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._common.waiting import DeadlineExceeded, call_with_deadline


@dataclass(frozen=True)
class VcpuCall:
    """One libvirt call for one vCPU and what libvirt said."""
    vcpu: int
    action: str          # 'enable' or 'disable'
    ok: bool
    timed_out: bool = False
    error: str | None = None

    def to_dict(self):
        return dict(vcpu=self.vcpu, action=self.action, ok=self.ok, timed_out=self.timed_out, error=self.error)


_LEGACY_HOTPLUG_HINT = ('the guest has not enabled ACPI CPU hot-unplug yet: QEMU stays in legacy CPU hotplug mode '
                        'until the guest kernel initializes ACPI (has it finished booting? does it support ACPI CPU '
                        'hotplug?)')


def explain_libvirt_error(message):
    """A clearer text for libvirt errors that users hit with vCPU hotplug."""
    if 'device unplug request for not supported device type' in message:
        return '%s (%s)' % (message, _LEGACY_HOTPLUG_HINT)
    return message


def apply_live(dom, name, plan):
    """Enable, then disable, the planned vCPUs of the running domain.

    Returns the list of VcpuCall.  A hot-add error stops everything (nothing
    more is attempted).  An unplug that libvirt reports as timed out is kept and
    the next unplug is still sent: QEMU handles them independently, and the
    caller checks QEMU's own view afterwards.
    """
    calls = []
    for vcpu in plan.enable:
        try:
            dom.setVcpu(str(vcpu), 1, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            calls.append(VcpuCall(vcpu, 'enable', False, error=explain_libvirt_error(error_text(exc))))
            return calls
        calls.append(VcpuCall(vcpu, 'enable', True))
    for vcpu in plan.disable:
        try:
            dom.setVcpu(str(vcpu), 0, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            timed_out = error_code(exc) == libvirt.VIR_ERR_OPERATION_TIMEOUT
            calls.append(VcpuCall(vcpu, 'disable', False, timed_out=timed_out,
                                  error=explain_libvirt_error(error_text(exc))))
            if not timed_out:
                return calls
            continue
        calls.append(VcpuCall(vcpu, 'disable', True))
    return calls


def apply_config(dom, name, plan):
    """Make the persistent config enable exactly plan.after."""
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if plan.enable:
        call('enabling vCPUs %s in the persistent config of domain %s' % (format_cpulist(plan.enable), name),
             dom.setVcpu, format_cpulist(plan.enable), 1, flags)
    if plan.disable:
        call('disabling vCPUs %s in the persistent config of domain %s' % (format_cpulist(plan.disable), name),
             dom.setVcpu, format_cpulist(plan.disable), 0, flags)


def apply_guest(dom, name, plan):
    """Online/offline CPUs inside the guest through the agent (virDomainSetGuestVcpus)."""
    for cpus, state, verb in ((plan.online, 1, 'onlining'), (plan.offline, 0, 'offlining')):
        if not cpus:
            continue
        action = '%s guest CPUs %s of domain %s through the guest agent' % (verb, format_cpulist(cpus), name)
        try:
            call_with_deadline(call, AGENT_TIMEOUT_SECONDS, action, dom.setGuestVcpus, format_cpulist(cpus), state, 0)
        except DeadlineExceeded:
            raise HotplugError('%s: the agent did not answer within %d s; the guest may still carry it out'
                               % (action, AGENT_TIMEOUT_SECONDS))
