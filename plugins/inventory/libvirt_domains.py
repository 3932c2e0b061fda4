# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
name: libvirt_domains
short_description: The libvirt domains of KVM hosts as inventory hosts, grouped by hotplug headroom
version_added: 0.2.0
description:
  - Lists the domains of the KVM hosts given in O(hypervisors) through their libvirt URIs (local or
    C(qemu+ssh://), C(qemu+tcp://), ...) and adds one inventory host per domain.
  - Groups them by hypervisor (C(hypervisor_<name>)), by state (C(state_<state>), for example C(state_running),
    C(state_shutoff), C(state_paused)) and by hotplug headroom (C(vcpu_headroom), C(memory_headroom)).
  - Each host's variables say what the domain can still grow by without a restart (live definition of a
    running domain, persistent one of a domain that is not running) in C(kvm_hotplug_domain), see the notes.
  - O(compose), O(groups) and O(keyed_groups) on those variables give finer groups, for example
    "running domains that can take 2 more vCPUs".
  - The connections are read-only; the plugin never changes a domain.
  - The inventory file's name must end in C(libvirt_domains.yml) or C(libvirt_domains.yaml).
author:
  - kvm.hotplug developers (@kvm-hotplug)
requirements:
  - libvirt-python (the C(libvirt) Python binding) on the controller
  - lxml on the controller
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin; it must be set for the inventory file to be read by it.
    type: str
    required: true
    choices: [kvm.hotplug.libvirt_domains]
  hypervisors:
    description:
      - The KVM hosts whose domains are listed, in order of preference (see O(hypervisors[].name) and the notes
        on duplicate domain names).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The KVM host's inventory name.
          - Given to its domains as C(kvm_hotplug_hypervisor), so that a play on the domains can
            C(delegate_to) the host, and used in the group name C(hypervisor_<name>).
        type: str
        required: true
      uri:
        description:
          - The libvirt URI to reach the host from the controller, for example V(qemu:///system) for this machine or
            V(qemu+ssh://root@kvm1.example.com/system).
        type: str
        default: qemu:///system
  fail_on_unreachable:
    description:
      - What to do when a hypervisor cannot be reached or its domains cannot be listed.
      - V(false) warns, naming the hypervisor and the URI with libvirt's message, and goes on with the other
        hypervisors (the hosts of that hypervisor are then missing from the inventory, and the cache is not written).
      - V(true) fails the inventory source with that message.
    type: bool
    default: false
notes:
  - >-
    Host variables: C(kvm_hotplug_hypervisor) (the KVM host's inventory name), C(kvm_hotplug_uri) (its libvirt URI)
    and C(kvm_hotplug_domain), a dictionary with C(name), C(uuid), C(hypervisor), C(uri), C(state), C(active),
    C(persistent), C(autostart), C(id), C(domain_type), C(tcg), C(migrating), C(definition) (V(live) or V(config):
    the definition the headroom is computed from), C(numa_cells), C(guest_agent) (C(defined), C(connected)),
    C(vcpus) and C(memory).
  - >-
    C(vcpus): C(current), C(maximum) and C(free) (maximum minus current: how many vCPUs can still be added without
    raising the maximum, which needs a restart). C(vcpu_headroom) holds the domains whose C(free) is above 0.
  - >-
    C(memory), sizes in KiB as libvirt counts them: C(current_kib) (libvirt's C(<memory>), DIMMs and virtio-mem
    devices at their full size included), C(balloon_kib) (C(<currentMemory>)), C(maximum_kib) (C(<maxMemory>), null
    when the domain has none), C(free_kib) (maximum minus current, 0 without C(<maxMemory>)), C(slots), C(used_slots)
    and C(free_slots) (DIMM slots of C(<maxMemory>)), C(virtio_mem_free_kib) (what the existing virtio-mem devices
    can still plug), C(hotpluggable) (the domain has C(<maxMemory>) and guest NUMA cells, which memory hotplug needs)
    and C(growable_kib): the most the domain can grow by in one way, either DIMMs (C(free_kib) when a slot is free),
    or virtio-mem (C(virtio_mem_free_kib), or C(free_kib) for a first virtio-mem device).
    C(memory_headroom) holds the domains whose C(growable_kib) is above 0.
  - >-
    Duplicate domain names: one inventory host per domain name. When the same name is on several hypervisors (a
    domain defined on two hosts, or during a migration), the host is the one that runs (or is paused) there; among
    equals, the first in O(hypervisors) order. A warning names every copy, and the host variable
    C(kvm_hotplug_duplicates) lists the copies that were not used (C(hypervisor), C(uri), C(state)).
  - >-
    With O(cache) the domains read from every hypervisor are kept under the inventory file's cache key; a run in
    which a hypervisor could not be reached does not write the cache. O(compose), O(groups) and O(keyed_groups) are
    applied again on every run, cached or not.
  - >-
    The plugin is found through the C(auto) inventory plugin (enabled by default), or by listing
    C(kvm.hotplug.libvirt_domains) in C(enable_plugins) of the C([inventory]) configuration section.
seealso:
  - module: kvm.hotplug.domain_info
  - module: kvm.hotplug.vcpu_hotplug
  - module: kvm.hotplug.memory_hotplug
'''

EXAMPLES = r'''
# kvm.libvirt_domains.yml: the domains of two KVM hosts, reached over SSH from the controller.
plugin: kvm.hotplug.libvirt_domains
hypervisors:
  - name: kvm1
    uri: qemu+ssh://root@kvm1.example.com/system
  - name: kvm2
    uri: qemu+ssh://root@kvm2.example.com/system
# Stop on a host that cannot be reached, instead of a warning.
fail_on_unreachable: true

---
# Finer groups from the host variables: "all running VMs that can take 2 more vCPUs", and more.
plugin: kvm.hotplug.libvirt_domains
hypervisors:
  - name: localhost
groups:
  vcpu_room_2: kvm_hotplug_domain.state == 'running' and kvm_hotplug_domain.vcpus.free >= 2
  memory_room_1g: kvm_hotplug_domain.active and kvm_hotplug_domain.memory.growable_kib >= 1048576
keyed_groups:
  # type_qemu (TCG) and type_kvm
  - key: kvm_hotplug_domain.domain_type
    prefix: type
  # free_vcpus_0, free_vcpus_1, ... (a key must be a string)
  - key: kvm_hotplug_domain.vcpus.free | string
    prefix: free_vcpus
compose:
  free_memory_mib: kvm_hotplug_domain.memory.free_kib // 1024
# Keep what was read for an hour.
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /tmp/kvm_hotplug_inventory
cache_timeout: 3600

# A play on that group, run against each domain's hypervisor:
#
# - name: Two more vCPUs for every running VM that has room
#   hosts: vcpu_room_2
#   gather_facts: false
#   tasks:
#     - name: Add two vCPUs
#       kvm.hotplug.vcpu_hotplug:
#         name: "{{ kvm_hotplug_domain.name }}"
#         count: "{{ kvm_hotplug_domain.vcpus.current + 2 }}"
#       delegate_to: "{{ kvm_hotplug_hypervisor }}"
'''

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.basic import missing_required_lib
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.vars import combine_vars, load_extra_vars

from ansible_collections.kvm.hotplug.plugins.module_utils._common.errors import HotplugError
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.connection import (
    DEFAULT_URI, LIBVIRT_IMPORT_ERROR, LibvirtSession, call, libvirt,
)
from ansible_collections.kvm.hotplug.plugins.module_utils._libvirt.domain_runtime import read_domain
from ansible_collections.kvm.hotplug.plugins.module_utils._memory.sizes import VIRTIO_MEM

NAME = 'kvm.hotplug.libvirt_domains'


def vcpu_headroom(model):
    """vCPUs of a definition: current, maximum and how many can still be added (up to the maximum)."""
    return dict(current=model.vcpu_current, maximum=model.vcpu_max,
                free=max(model.vcpu_max - model.vcpu_current, 0))


def memory_headroom(model):
    """Memory of a definition (KiB) and how much it can still grow by, as _memory/plan.py would plan it."""
    maximum = model.max_memory_kib
    free = max(maximum - model.memory_kib, 0) if maximum is not None else 0
    slots = model.max_memory_slots or 0
    free_slots = max(slots - model.slots_used, 0)
    virtio = [d for d in model.memory_devices if d.model == VIRTIO_MEM]
    virtio_free = sum(max(d.size_kib - (d.requested_kib or 0), 0) for d in virtio)
    hotpluggable = maximum is not None and bool(model.numa_cells)
    if hotpluggable:
        # A DIMM takes a slot and maxMemory room; the plan resizes existing virtio-mem devices, or adds a first one
        # that takes the room maxMemory leaves.
        growable = max(free if free_slots else 0, virtio_free if virtio else free)
    else:
        growable = 0
    return dict(current_kib=model.memory_kib, balloon_kib=model.current_memory_kib, maximum_kib=maximum,
                free_kib=free, slots=slots, used_slots=model.slots_used, free_slots=free_slots,
                virtio_mem_free_kib=virtio_free, hotpluggable=hotpluggable, growable_kib=growable)


def describe(snapshot, hypervisor, uri):
    """The kvm_hotplug_domain host variable of one domain (JSON-friendly: it may be cached)."""
    model = snapshot.live if snapshot.live is not None else snapshot.config
    return dict(
        name=snapshot.name, uuid=snapshot.uuid, hypervisor=hypervisor, uri=uri,
        state=snapshot.state, active=snapshot.active, persistent=snapshot.persistent,
        autostart=snapshot.autostart, id=snapshot.id, migrating=snapshot.job.migrating,
        definition='live' if snapshot.live is not None else 'config',
        domain_type=model.domain_type, tcg=model.is_tcg, numa_cells=len(model.numa_cells),
        guest_agent=dict(defined=model.has_guest_agent_channel, connected=model.guest_agent_connected),
        vcpus=vcpu_headroom(model),
        memory=memory_headroom(model),
    )


def choose(copies):
    """The copy of a domain name that becomes the host: an active one first, then the first hypervisor listed."""
    return sorted(copies, key=lambda entry: (not entry['active'], entry['order']))[0]


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = NAME

    def verify_file(self, path):
        return (super(InventoryModule, self).verify_file(path)
                and path.endswith(('libvirt_domains.yml', 'libvirt_domains.yaml')))

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        hypervisors = self._hypervisors()
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option('cache') and cache
        update_cache = self.get_option('cache') and not cache
        domains = None
        if use_cache:
            try:
                domains = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if domains is None:
            if libvirt is None:
                raise AnsibleError('%s: %s' % (NAME, missing_required_lib('libvirt-python')),
                                   orig_exc=None if LIBVIRT_IMPORT_ERROR is None else ImportError(LIBVIRT_IMPORT_ERROR))
            domains, complete = self._read(hypervisors)
            if update_cache and not complete:
                self.display.warning('%s: not writing the inventory cache, as a hypervisor was not read' % NAME)
                update_cache = False
        if update_cache:
            self._cache[cache_key] = domains
        self._populate(domains)

    def _hypervisors(self):
        """The hypervisors option, checked: [(name, uri)] in order."""
        result = []
        for index, item in enumerate(self.get_option('hypervisors') or []):
            if not isinstance(item, dict) or not item.get('name'):
                raise AnsibleParserError('%s: hypervisors[%d] must be a dictionary with a name (and a uri), got %r'
                                         % (NAME, index, item))
            unknown = sorted(set(item) - set(('name', 'uri')))
            if unknown:
                raise AnsibleParserError('%s: hypervisors[%d] (%s): unknown key%s %s'
                                         % (NAME, index, item['name'], '' if len(unknown) == 1 else 's',
                                            ', '.join(unknown)))
            result.append((str(item['name']), str(item.get('uri') or DEFAULT_URI)))
        if not result:
            raise AnsibleParserError('%s: hypervisors lists no KVM host' % NAME)
        names = [name for name, _uri in result]
        if len(set(names)) != len(names):
            raise AnsibleParserError('%s: hypervisors names a host twice: %s' % (NAME, ', '.join(names)))
        return result

    def _read(self, hypervisors):
        """Every domain of every hypervisor: ([kvm_hotplug_domain], whether every hypervisor was read)."""
        domains = []
        complete = True
        for name, uri in hypervisors:
            try:
                domains.extend(self._read_hypervisor(name, uri))
            except HotplugError as exc:
                message = '%s: hypervisor %s (%s) was not read: %s' % (NAME, name, uri, exc.msg)
                if self.get_option('fail_on_unreachable'):
                    raise AnsibleError(message)
                self.display.warning(message)
                complete = False
        return domains, complete

    def _read_hypervisor(self, name, uri):
        entries = []
        with LibvirtSession(uri, read_only=True) as conn:
            listed = call('listing the domains on %s' % uri, conn.listAllDomains, 0)
            for dom in listed:
                try:
                    entries.append(describe(read_domain(dom), name, uri))
                except HotplugError as exc:
                    # A domain that went away (or was undefined) between the list and the read.
                    self.display.warning('%s: hypervisor %s (%s): a domain was skipped: %s' % (NAME, name, uri, exc.msg))
        return sorted(entries, key=lambda entry: entry['name'])

    def _populate(self, domains):
        order = dict((name, index) for index, (name, _uri) in enumerate(self._hypervisors()))
        by_name = {}
        for entry in domains:
            by_name.setdefault(entry['name'], []).append(dict(entry, order=order.get(entry['hypervisor'], len(order))))
        strict = self.get_option('strict')
        extra_vars = load_extra_vars(self.loader) if self.get_option('use_extra_vars') else {}
        for host in sorted(by_name):
            copies = by_name[host]
            chosen = choose(copies)
            others = [c for c in copies if c is not chosen]
            domain = dict((k, v) for k, v in chosen.items() if k != 'order')
            if others:
                self.display.warning('%s: domain %s is on %s; the inventory host is the one on %s'
                                     % (NAME, host, ', '.join('%s (%s)' % (c['hypervisor'], c['state'])
                                                              for c in sorted(copies, key=lambda c: c['order'])),
                                        chosen['hypervisor']))
            self.inventory.add_host(host)
            self.inventory.set_variable(host, 'kvm_hotplug_hypervisor', domain['hypervisor'])
            self.inventory.set_variable(host, 'kvm_hotplug_uri', domain['uri'])
            self.inventory.set_variable(host, 'kvm_hotplug_domain', domain)
            if others:
                self.inventory.set_variable(host, 'kvm_hotplug_duplicates', [
                    dict(hypervisor=c['hypervisor'], uri=c['uri'], state=c['state']) for c in others])
            for group in self._groups(domain):
                self.inventory.add_group(group)
                self.inventory.add_child(group, host)
            hostvars = combine_vars(self.inventory.get_host(host).get_vars(), extra_vars)
            self._set_composite_vars(self.get_option('compose'), hostvars, host, strict=strict)
            hostvars = combine_vars(self.inventory.get_host(host).get_vars(), extra_vars)
            self._add_host_to_composed_groups(self.get_option('groups'), hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, host, strict=strict)

    def _groups(self, domain):
        groups = ['hypervisor_%s' % domain['hypervisor'], 'state_%s' % domain['state']]
        if domain['vcpus']['free'] > 0:
            groups.append('vcpu_headroom')
        if domain['memory']['growable_kib'] > 0:
            groups.append('memory_headroom')
        return [self._sanitize_group_name(group) for group in groups]
