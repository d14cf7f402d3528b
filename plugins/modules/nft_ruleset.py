#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nft_ruleset
short_description: Enforce one firewall's OCS edge rule set as one nftables table, atomically
version_added: "0.1.0"
description:
  - Renders the rule set of one firewall (a FIREWALL of the collection's policy model,
    docs/policy-model.md) into one nftables table that the collection owns
    (default C(inet ocs_edge)), compares it with the live table (C(nft -j list table)) and,
    only when they differ, replaces the whole table in one transaction.
  - The applied file holds C(table inet ocs_edge {}), C(delete table inet ocs_edge) and the
    full table, so it loads whether or not the table exists. It is validated first with
    C(nft -c -f), then loaded with C(nft -f). When validation or loading fails nothing is
    changed, the previous table stays in force and the error quotes nft's message and the
    numbered script.
  - "Never runs C(flush ruleset): every other table (for example C(ip filter) of docker or
    iptables-nft, C(inet f2b) of fail2ban) is left untouched."
  - "Network mode (a router between zones): chain C(forward) (hook forward, policy drop;
    established/related accepted, invalid dropped, then one accept rule per PFRULE) and chain
    C(input) (hook input, policy O(input_policy); loopback, established/related, the
    management sources to the management TCP ports, ICMP echo, ICMPv6 neighbour discovery)."
  - "Host mode (a server protecting itself): chain C(input) (policy drop, same base rules as
    above, then the PFRULEs of chain input) and chain C(output) (policy O(output_policy);
    loopback and established/related, then the PFRULEs of chain output)."
  - Every rule carries a comment; PFRULE rules carry C(PFRULE.comment) (seed table, figure,
    role), so C(nft list ruleset) reads back to the page.
  - Rule matches are compared by meaning (address and port sets as intervals), so a port or
    address changed by hand, a rule added or deleted by hand, a changed chain policy or an
    extra chain/set in the owned table are all reported and put back.
  - "Persistence: the applied script is written to O(persist_path) and an C(include) line for
    it is added once to O(persist_conf) (the file nftables.service loads at boot). The
    persisted file is byte for byte the script that was applied."
author:
  - OCS edge firewall maintainers (@ocs-edge)
requirements:
  - nft (nftables >= 0.9.7) on the managed host, run as root
extends_documentation_fragment:
  - ocs.edge_firewall.firewall
  - ocs.edge_firewall.firewall.linux
options:
  firewall:
    # its keys (suboptions): doc fragment ocs.edge_firewall.firewall
    description:
      - The FIREWALL dict of the policy (keys C(mode), C(platform), C(interfaces),
        C(management), C(rules)). Mutually exclusive with O(rules).
      - C(platform), when given, must be C(nftables).
    type: dict
  rules:
    description:
      - The PFRULE list, when O(firewall) is not given. Each PFRULE needs C(protocol)
        (tcp or udp), C(src), C(dst) (null = any, else list of IPs/CIDRs), C(sport), C(dport)
        (null = any, else list of C(N) or C(N-M)), C(chain) and C(comment) (max 128 bytes);
        C(src_zone)/C(dst_zone) select interfaces.
    type: list
    elements: dict
  interfaces:
    description:
      - Zone -> interface name (C(internet), C(perimeter), C(internal)). Used with O(rules).
        In network mode a rule gets C(iifname) of its C(src_zone) and C(oifname) of its
        C(dst_zone) when those are given.
    type: dict
    default: {}
  name:
    description: Name of the firewall (inventory host) used in messages and in the script header.
    type: str
    default: firewall
  table:
    description: Name of the C(inet) table the collection owns. Nothing outside it is touched.
    type: str
    default: ocs_edge
  input_policy:
    description:
      - Policy of the input chain in network mode. C(drop) filters traffic to the router
        itself (management, loopback, established, ICMP stay allowed); C(accept) leaves
        traffic to the router unfiltered. Host mode always uses C(drop).
    type: str
    choices: [drop, accept]
    default: drop
  output_policy:
    description:
      - Policy of the output chain in host mode. C(accept) (default) lets the host initiate
        anything (DNS, updates, NTP); the C(output) PFRULEs are still rendered, documenting the
        seed. C(drop) allows only loopback, replies and the C(output) PFRULEs.
    type: str
    choices: [accept, drop]
    default: accept
  allow_icmp:
    description: Accept ICMP/ICMPv6 echo-request to the firewall itself. ICMPv6 neighbour discovery is always accepted.
    type: bool
    default: true
  persist_path:
    description: File the applied script is written to. Empty string to not persist.
    type: path
    default: /etc/nftables.d/ocs_edge.nft
  persist_conf:
    description:
      - File loaded at boot (nftables.service) that must C(include) O(persist_path); the line
        is added once, with a marker comment. Created (with a C(#!/usr/sbin/nft -f) line)
        when absent. Empty string to leave it alone.
    type: path
    default: /etc/nftables.conf
  foreign_check:
    description:
      - "Base chains of other tables on the same hooks (iptables-nft's C(ip filter), docker's,
        firewalld's) whose policy or rules drop the policy's flows (for example
        C(iptables -P FORWARD DROP)): C(fail) (default) stops before anything is changed, naming
        table, chain, rule and flow; C(warn) only warns. A rule that may drop part of a flow
        (a named set, a match this check cannot evaluate) and chains that accept are warnings."
      - NAT rules are looked for in every table (masquerade, snat, dnat, redirect), see O(nat_check).
    type: str
    choices: [fail, warn]
    default: fail
  state:
    description: C(present) enforces the rule set; C(absent) deletes the table, the persisted file and the include line.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reports what would change (created/removed/updated, diff) without touching the table or the files.
  diff_mode:
    support: full
    description: Shows the live and desired table (canonical listing) and the persisted file.
  platform:
    support: full
    platforms: posix
    description: Target OS/families that can be operated against.
    details: "Linux with nftables (nft), run as root."
notes:
  - nftables evaluates every base chain on a hook; a packet dropped by this table is dropped
    even if another table accepts it. Another table cannot let through what this one drops.
  - Debian's default C(/etc/nftables.conf) starts with C(flush ruleset); that is the
    distribution's boot file and this module only appends an include line to it.
seealso:
  - name: Policy model
    description: FIREWALL and PFRULE, the input of this module (docs/policy-model.md in the collection).
    link: https://wiki.nftables.org/wiki-nftables/index.php/Atomic_rule_replacement
"""

EXAMPLES = r"""
- name: Enforce the rule set the policy engine computed for this firewall
  ocs.edge_firewall.nft_ruleset:
    firewall: "{{ ocs_firewall }}"
    name: "{{ inventory_hostname }}"

- name: Hand-written rules, network mode, no persistence
  ocs.edge_firewall.nft_ruleset:
    name: lab-router
    mode: network
    management: {sources: [10.99.0.0/24], ports: ["22"]}
    interfaces: {perimeter: eth1, internal: eth0}
    rules:
      - id: central-t18-f5-out
        protocol: tcp
        src: [10.10.1.10]
        dst: [172.16.1.31, 172.16.1.32]
        sport: null
        dport: ["5061"]
        src_zone: internal
        dst_zone: perimeter
        chain: forward
        comment: ocs central-t18-f5-out table 18 figure 5 access_edge SIP/MTLS
    persist_path: ""

- name: Remove the collection's table and its persisted file
  ocs.edge_firewall.nft_ruleset:
    state: absent
"""

RETURN = r"""
created:
  description:
    - "Desired but not live, by id (docs/backend-contract.md): PFRULE ids, base rules
      (C(base:mgmt), ...), C(table:inet <table>), C(chain:<name>), C(file:<path>)."
  returned: always
  type: list
  elements: str
  sample: ["table:inet ocs_edge", "chain:forward", "central-t20-f12-out", "base:mgmt", "file:/etc/nftables.d/ocs_edge.nft"]
removed:
  description:
    - "Live but not desired: chains, sets and other objects of the owned table (C(chain:sneaky),
      C(set:allow)); a rule nothing desired explains is C(rule:<chain>: <its rule text>)."
  returned: always
  type: list
  elements: str
  sample: ["rule:forward: tcp dport 23 accept", "chain:sneaky", "set:allow"]
updated:
  description:
    - "The id of a rule whose live form differs (an address, a port, a count), a chain whose type,
      hook, priority, policy or rule order differ (C(chain:forward)), table flags, the persisted
      script or boot file rewritten."
  returned: always
  type: list
  elements: str
  sample: ["central-t18-f5-in", "chain:forward", "file:/etc/nftables.conf"]
diff:
  description:
    - "Ansible diffs (before/after with headers) of the owned table as a canonical listing, then
      the persisted script and the boot file; returned when something differs."
  returned: changed
  type: list
  elements: dict
warnings:
  description: Warnings of the run (other tables' rules that may drop the policy's flows, NAT found in warn mode, conntrack missing).
  returned: when there is at least one
  type: list
  elements: str
script:
  description: The nft script (what is applied and persisted).
  returned: when state=present
  type: str
table:
  description: The owned table.
  returned: always
  type: str
  sample: inet ocs_edge
persist_path:
  description: Where the script is persisted ('' when not).
  returned: always
  type: str
foreign:
  description: Other tables' base chains against the policy's flows (C(drops), C(may_drop), C(accepts), C(unreadable)).
  returned: when state=present
  type: dict
nat:
  description: NAT rules that would translate the A/V Edge's address (table, chain, rule).
  returned: when state=present
  type: list
  elements: str
conntrack_deleted:
  description: Conntrack entries deleted (check mode, to delete) because the removed accept rules let them in.
  returned: when a correction removed accept rules and conntrack is installed
  type: list
  elements: str
  sample: ["tcp 10.10.1.10:40312 -> 172.16.1.31:5062"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ocs.edge_firewall.plugins.module_utils import backend
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import FirewallError
from ansible_collections.ocs.edge_firewall.plugins.module_utils.nftables import Nft, NftBackend


def main():
    module = AnsibleModule(argument_spec=backend.ruleset_argument_spec(
        table=dict(type="str", default="ocs_edge"),
        persist_path=dict(type="path", default="/etc/nftables.d/ocs_edge.nft"),
        persist_conf=dict(type="path", default="/etc/nftables.conf"),
        foreign_check=dict(type="str", choices=["fail", "warn"], default="fail"),
    ), mutually_exclusive=[("firewall", "rules")], supports_check_mode=True)
    p = module.params

    def run(argv, data=None):
        return module.run_command(argv, data=data, binary_data=True) if data is not None else module.run_command(argv)

    checks = {"foreign_check": p["foreign_check"], "nat_check": p["nat_check"],
              "conntrack_flush": p["conntrack_flush"], "conntrack": module.get_bin_path("conntrack")}
    try:
        nft = NftBackend(p["name"], Nft(run, module.get_bin_path("nft", required=True)), p["table"],
                         p["input_policy"], p["output_policy"], p["allow_icmp"], p["persist_path"], p["persist_conf"],
                         checks)
    except FirewallError as exc:  # NftError, or a path/name refused by the backend contract
        module.fail_json(msg=str(exc))
    backend.run_module(module, nft, backend.firewall_param(p, "nftables"))


if __name__ == "__main__":
    main()
