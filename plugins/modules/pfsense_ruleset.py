#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pfsense_ruleset
short_description: Keep one firewall's OCS edge rules and aliases in pfSense's config.xml, in one pass
version_added: "0.1.0"
description:
  - Runs on the pfSense host (over SSH, as root) and reconciles, in O(config_path)
    (C(/cf/conf/config.xml)), the filter rules and aliases of the collection for one firewall
    (a FIREWALL of the policy model, docs/policy-model.md) in one pass. It reads the file,
    computes the desired elements, compares and writes only when something differs.
  - "Ownership: a managed rule (filter or outbound NAT) has a description C(<rule id> ...
    [ocs.edge_firewall] ...) (the id first, so the 52 characters pf keeps in its labels and logs
    name the rule; descriptions starting with the marker, the old form, are recognised and
    migrated); a managed alias has a name starting with C(OCS_); a managed rule separator has a
    text starting with C([ocs.edge_firewall]). Managed items missing or changed by hand are put
    back, managed items the policy no longer has are removed, everything else (other rules,
    aliases, separators, your NAT rules, the rest of the file) keeps its content and order."
  - "Rules: one C(pass) rule per PFRULE, C(ipprotocol) C(inet), C(keep state), on the interface
    of its C(src_zone) (C(firewall.interfaces), from C(ocs_firewall_interfaces)), in policy order,
    then (O(default_deny)) the default-deny block rules of that interface, as one block headed by
    a managed separator (O(placement)). Unmanaged separators are re-pointed so they stay above
    the same rule."
  - "Default deny: on the internet/internal interface, a management pass to the firewall itself
    (C(management.sources), its ports plus the GUI/SSH ports of the anti-lockout rule) then block
    rules for new connections to the perimeter interface's network and to the perimeter servers;
    on the perimeter interface a block to anything but the firewall itself (C(! (self))). pfSense
    evaluates an interface's rules first match wins, so the factory C(Default allow LAN to any)
    rule below no longer reaches the perimeter; the anti-lockout rule is evaluated before all."
  - "Outbound NAT (O(no_nat)): C(Do not NAT) rules for the perimeter servers' addresses
    (C(firewall.no_nat), O(no_nat_scope)) at the top of the outbound rules: source on the
    internet/internal interface, destination on the perimeter interface. Automatic mode is
    switched to hybrid (same translation for everything else); hybrid and manual (advanced)
    keep their mode, the rules go above yours (pf NAT is first match); disabled: nothing to do.
    Switching automatic to hybrid fails if dormant outbound rules of yours would become active."
  - "Aliases: a C(host) (or C(network)) alias for every address list of the policy (edge
    server addresses and VIPs), a C(port) alias for port ranges; single ports go into the rule."
  - Trackers are derived from the interface and the rule id, in the range 4100000000-4199999999,
    and made unique against every tracker in the file; a re-run leaves the file byte-identical.
  - "Writing follows pfSense's C(write_config()): under the C(config) lock, the current file is
    first copied to O(backup_dir)/config-<revision time>.xml and recorded in C(backup.cache),
    C(<revision>) is set, the file is written atomically in pfSense's own format (tab indent,
    C(<x></x>) for empty values, CDATA for descriptions) and O(cache_file) is removed. Then
    O(reload_command) loads the new rules into pf. A failed reload restores the previous file from
    that backup, reloads it and fails the task with both outputs."
  - "Values XML 1.0 cannot carry (control characters, U+FFFE/FFFF, lone surrogates) in the
    FIREWALL, O(name) or O(username) are refused before anything is read or written."
author:
  - OCS edge firewall maintainers (@ocs-edge)
requirements:
  - A Python 3 interpreter on the pfSense host (pfSense ships C(/usr/local/bin/python3.11);
    set C(ansible_python_interpreter) to it), and a root SSH login.
extends_documentation_fragment:
  - ocs.edge_firewall.firewall
options:
  firewall:
    # its keys (suboptions): doc fragment ocs.edge_firewall.firewall
    description:
      - The FIREWALL dict of the policy (keys C(platform), C(mode), C(interfaces), C(rules),
        C(management), C(no_nat)). C(platform), when given, must be C(pfsense); C(mode) must be
        C(network). Anything but a dict (or wrong types inside) is refused with a message
        naming the key.
      - C(interfaces) maps each zone a rule's packet enters from (C(internet), C(perimeter),
        C(internal)) to the pfSense interface id (C(wan), C(lan), C(optN), lower case) present in config.xml.
    type: raw
    required: true
  default_deny:
    description: Add the default-deny block rules (and the management pass) after the policy's pass rules; false for pass-only.
    type: bool
    default: true
  placement:
    description:
      - "Where the managed block of each interface goes: C(top) (before your rules), C(separator)
        (directly below your separator whose text is O(placement_separator), on every managed
        interface), C(bottom) (after your rules, which are then evaluated first)."
    type: str
    choices: [top, separator, bottom]
    default: top
  placement_separator:
    description: Text of your separator the block goes below (O(placement=separator)).
    type: str
    default: ""
  no_nat:
    description: Keep the C(Do not NAT) outbound rules for the perimeter servers (and switch automatic outbound NAT to hybrid).
    type: bool
    default: true
  no_nat_scope:
    description: C(perimeter) every perimeter server address of the policy; C(av_edge) only the A/V Edge addresses (the page's minimum).
    type: str
    choices: [perimeter, av_edge]
    default: perimeter
  name:
    description: Name of the firewall (inventory host), used in messages and in the revision description.
    type: str
    default: firewall
  state:
    description: C(present) enforces the rule set; C(absent) removes every managed rule, alias and separator.
    type: str
    choices: [present, absent]
    default: present
  config_path:
    description: The configuration file.
    type: path
    default: /cf/conf/config.xml
  backup_dir:
    description: Where the previous file is copied before a write (pfSense's configuration history).
    type: path
    default: /cf/conf/backup
  cache_file:
    description: pfSense's parsed-configuration cache, removed after a write so pfSense re-reads the file. Empty string to skip.
    type: str
    default: /tmp/config.cache
  lock_file:
    description: File locked (flock) while reading and writing, the lock pfSense's own writers take. Empty string to skip.
    type: str
    default: /tmp/config.lock
  reload_command:
    description:
      - Command run after a write to load the new configuration into pf (synchronous).
        Split like a shell command line, not run through a shell. Empty string to skip the reload.
    type: str
    default: /etc/rc.filter_configure_sync
  username:
    description: Recorded in the rules' C(created)/C(updated) and in C(<revision>).
    type: str
    default: ocs.edge_firewall (Ansible)
attributes:
  check_mode:
    support: full
    description: Reports what would change (created/removed/updated, diff); writes nothing, reloads nothing.
  diff_mode:
    support: full
    description: A listing of the managed aliases and rules (interface, protocol, source, destination, ports, tracker), before and after.
  platform:
    support: full
    platforms: freebsd
    description: Target OS/families that can be operated against.
    details: "pfSense (FreeBSD), editing its config.xml as root with the Python pfSense ships."
notes:
  - pfSense evaluates the rules of an interface in order, first match wins, on the interface
    where a packet enters. The managed block is at the top of each interface, so a block rule
    added below it by hand cannot shadow the policy; a rule added above it is moved below on the next run.
  - The collection adds no rule for traffic to the firewall itself (management); pfSense's
    anti-lockout rule and your own rules keep the GUI/SSH reachable.
  - Module and library are tested against config.xml files and a directory standing in for the
    pfSense host (reload command replaced); not against a running pfSense.
seealso:
  - name: Policy model
    description: FIREWALL and PFRULE, the input of this module (docs/policy-model.md in the collection).
    link: https://docs.netgate.com/pfsense/en/latest/firewall/index.html
"""

EXAMPLES = r"""
- name: Enforce the rule set the policy engine computed for this pfSense firewall
  ocs.edge_firewall.pfsense_ruleset:
    firewall: "{{ ocs_firewall }}"
    name: "{{ inventory_hostname }}"

- name: Against a copy of the configuration, without reloading anything
  ocs.edge_firewall.pfsense_ruleset:
    firewall: "{{ ocs_firewall }}"
    config_path: /srv/pfsense-standin/cf/conf/config.xml
    backup_dir: /srv/pfsense-standin/cf/conf/backup
    cache_file: ""
    lock_file: ""
    reload_command: ""

- name: Remove every rule, alias and separator of the collection
  ocs.edge_firewall.pfsense_ruleset:
    firewall: "{{ ocs_firewall }}"
    state: absent
"""

RETURN = r"""
created:
  description: Managed items added, by id (rule ids, C(alias:<name>), C(nat:<id>)).
  returned: always
  type: list
  elements: str
  sample: ["central-t20-f14-out", "alias:OCS_central_t20_f14_out_dst", "nat:central-nonat-internet"]
removed:
  description: Managed items removed (no longer in the policy, duplicates, rogue rules carrying the marker), by id.
  returned: always
  type: list
  elements: str
updated:
  description:
    - Managed items restored or migrated, by id; C(position:<iface>) (block moved back),
      C(separator:<iface>/<sepN>) (your separator re-pointed), C(nat:mode) (automatic -> hybrid).
  returned: always
  type: list
  elements: str
diff:
  description: Listing of the managed aliases, rules and NAT rules before and after (before, after, before_header, after_header).
  returned: when something differs
  type: list
  elements: dict
warnings:
  description: Warnings of the run (also shown by Ansible).
  returned: when there is at least one
  type: list
  elements: str
backup:
  description: The backup of the previous file (when written).
  returned: when the file was written
  type: str
  sample: /cf/conf/backup/config-1700000000.xml
reload:
  description: rc, stdout and stderr of the reload command (when run).
  returned: when the file was written and reload_command is not empty
  type: dict
restore_reload:
  description: rc, stdout and stderr of the reload after a failed one restored the previous file.
  returned: when the reload failed
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ocs.edge_firewall.plugins.module_utils import pfsense_backend


def main():
    module = AnsibleModule(argument_spec=pfsense_backend.argument_spec(), supports_check_mode=True)
    pfsense_backend.run(module)


if __name__ == "__main__":
    main()
