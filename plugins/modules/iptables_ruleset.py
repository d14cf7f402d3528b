#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: iptables_ruleset
short_description: Enforce one firewall's OCS edge rule set in owned iptables chains, atomically
version_added: "0.1.0"
description:
  - Renders the rule set of one firewall (a FIREWALL of the collection's policy model,
    docs/policy-model.md) into chains of the C(filter) table that the collection owns,
    C(<prefix>-IN), C(<prefix>-FWD) and C(<prefix>-OUT) (O(chain_prefix), default C(OCS-EDGE)),
    with exactly one jump to each from its built-in chain (INPUT, FORWARD, OUTPUT) at position 1,
    and C(<prefix>-MGMT) with one jump from the end of INPUT.
  - Reads the live rules with C(iptables-save -t filter), parses only the owned chains and the
    jumps to them, normalises both sides (addresses as networks, C(/32) and netmasks alike; ports
    as intervals, C(N:M), C(N-M) and multiport lists alike; conntrack states as sets) and compares.
    Options the parser does not know are kept verbatim and count as differences.
  - Only when they differ, applies one C(iptables-restore --noflush) transaction (one COMMIT) that
    declares (creates or flushes) the owned chains, deletes every jump to them, adds the rules, inserts
    the jumps at position 1 and deletes owned chains no longer needed. It is validated first with
    C(iptables-restore --noflush --test). A rejected transaction changes nothing; the error quotes
    iptables-restore's message and the numbered transaction. The owned chains are then read back
    and must compare equal, else the run fails and nothing is persisted.
  - Never touches a chain it does not own and never changes a built-in chain's policy; rules of
    other software in INPUT/FORWARD/OUTPUT (docker, fail2ban, ...) stay byte for byte, they only
    move down by one position because the jump is inserted above them.
  - "Network mode (a router between zones): C(<prefix>-FWD): established/related accepted, invalid
    dropped, one ACCEPT per address pair of every PFRULE (new connections only in the seed's
    direction), then DROP. C(<prefix>-IN): loopback, established/related, invalid dropped, the
    management sources to the management TCP ports RETURN (so other software's rules below the jump
    in INPUT, fail2ban's bans, still apply to them), ICMP echo, then DROP when O(input_policy) is
    drop (accept: unmatched traffic returns to INPUT). C(<prefix>-MGMT), jumped to from the end of
    INPUT, accepts the management sources to the management ports, whatever INPUT's policy."
  - "Host mode (a server protecting itself): C(<prefix>-IN) as above (always DROP at the end) plus
    the PFRULEs of chain input; C(<prefix>-OUT): loopback, established/related, the PFRULEs of
    chain output, then DROP only when O(output_policy) is drop."
  - Every rule carries C(-m comment --comment); PFRULE rules carry C(PFRULE.comment) (seed table,
    figure, role), so C(iptables-save) reads back to the page.
  - "Persistence: the owned section (chain declarations, jumps, rules; the same lines that were
    applied) is merged into O(persist_path), the file netfilter-persistent restores at boot
    (C(/etc/iptables/rules.v4)). The rest of that file (other tables, other chains and rules) is
    kept as it is. Written atomically, and only when its content changes."
  - IPv4 only. An IPv6 address in the FIREWALL is an error naming the rule; it is never dropped
    silently. Use the nftables backend (M(ocs.edge_firewall.nft_ruleset)) for IPv6.
author:
  - OCS edge firewall maintainers (@ocs-edge)
requirements:
  - iptables-save and iptables-restore (iptables >= 1.6, nft or legacy backend) on the managed host, run as root
extends_documentation_fragment:
  - ocs.edge_firewall.firewall
  - ocs.edge_firewall.firewall.linux
options:
  firewall:
    # its keys (suboptions): doc fragment ocs.edge_firewall.firewall
    description:
      - The FIREWALL dict of the policy (keys C(mode), C(platform), C(interfaces),
        C(management), C(rules)). Mutually exclusive with O(rules).
      - C(platform), when given, must be C(iptables).
    type: dict
  rules:
    description:
      - The PFRULE list, when O(firewall) is not given. Each PFRULE needs C(protocol)
        (tcp or udp), C(src), C(dst) (null = any, else list of IPv4 addresses/CIDRs), C(sport),
        C(dport) (null = any, else list of C(N) or C(N-M)), C(chain) and C(comment) (max 255 bytes);
        C(src_zone)/C(dst_zone) select interfaces.
    type: list
    elements: dict
  interfaces:
    description:
      - Zone -> interface name (C(internet), C(perimeter), C(internal)). Used with O(rules).
        In network mode a rule gets C(-i) of its C(src_zone) and C(-o) of its C(dst_zone).
    type: dict
    default: {}
  name:
    description: Name of the firewall (inventory host) used in messages.
    type: str
    default: firewall
  chain_prefix:
    description:
      - Prefix of the owned chains C(<prefix>-IN), C(<prefix>-FWD), C(<prefix>-OUT). Nothing outside
        them is changed, except the one jump per built-in chain.
    type: str
    default: OCS-EDGE
  input_policy:
    description:
      - Network mode, the end of C(<prefix>-IN). C(drop) filters traffic to the router itself
        (management, loopback, replies, ICMP stay allowed); C(accept) returns unmatched traffic
        to INPUT (other rules and the chain policy decide). Host mode always drops.
    type: str
    choices: [drop, accept]
    default: drop
  output_policy:
    description:
      - Host mode, the end of C(<prefix>-OUT). C(accept) (default) returns unmatched traffic to
        OUTPUT, so the host can still initiate DNS, NTP, updates; C(drop) allows only loopback,
        replies and the C(output) PFRULEs.
    type: str
    choices: [accept, drop]
    default: accept
  allow_icmp:
    description: Accept ICMP echo-request to the firewall itself.
    type: bool
    default: true
  persist_path:
    description:
      - Rules file restored at boot (netfilter-persistent's C(/etc/iptables/rules.v4)). The owned
        section is merged into its C(*filter) section; everything else in it is kept. Created
        when absent. Empty string to not persist.
    type: path
    default: /etc/iptables/rules.v4
  state:
    description:
      - C(present) enforces the rule set; C(absent) deletes the jumps and the owned chains and
        removes the owned section from O(persist_path) (the file itself stays).
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reports what would change (created/removed/updated, diff) without touching the rules or the file.
  diff_mode:
    support: full
    description: Shows the live and desired owned chains and jumps (iptables-save lines) and the persisted file.
  platform:
    support: full
    platforms: posix
    description: Target OS/families that can be operated against.
    details: "Linux with iptables-save/iptables-restore, run as root."
notes:
  - A packet that reaches the end of C(<prefix>-FWD) is dropped there; rules below the jump in
    FORWARD (for example docker's) are no longer reached by forwarded traffic the policy does not
    name. That is the policy's default drop.
  - netfilter-persistent restores the rules file without C(--noflush) at boot, before docker or
    fail2ban start and add their own rules; the module merges into that file instead of replacing
    it, so rules others saved there survive.
  - iptables-restore is run with C(-w 30) (waits for the xtables lock of the legacy backend), and
    two runs of this module on one host are serialised by a file lock (O(lock_timeout)).
seealso:
  - module: ocs.edge_firewall.nft_ruleset
  - name: Policy model
    description: FIREWALL and PFRULE, the input of this module (docs/policy-model.md in the collection).
    link: https://manpages.debian.org/bookworm/iptables/iptables-restore.8.en.html
"""

EXAMPLES = r"""
- name: Enforce the rule set the policy engine computed for this firewall
  ocs.edge_firewall.iptables_ruleset:
    firewall: "{{ ocs_firewall }}"
    name: "{{ inventory_hostname }}"

- name: Hand-written rules, network mode, no persistence
  ocs.edge_firewall.iptables_ruleset:
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

- name: Remove the collection's chains, jumps and persisted section
  ocs.edge_firewall.iptables_ruleset:
    state: absent
"""

RETURN = r"""
created:
  description:
    - "Desired but not live, by id (docs/backend-contract.md): PFRULE ids, base rules
      (C(base:mgmt), ...), C(chain:<prefix>-FWD), C(jump:<built-in chain>), C(file:<path>)."
  returned: always
  type: list
  elements: str
  sample: ["chain:OCS-EDGE-FWD", "central-t20-f12-out", "base:mgmt", "jump:FORWARD", "file:/etc/iptables/rules.v4"]
removed:
  description:
    - "Live but not desired: owned chains no longer desired and jumps from a built-in chain that
      should not have one (C(chain:OCS-EDGE-OUT), C(jump:OUTPUT)); a rule nothing desired explains
      is C(rule:<chain>: <its rule text>)."
  returned: always
  type: list
  elements: str
  sample: ["rule:OCS-EDGE-FWD: -p tcp -m tcp --dport 23 -j ACCEPT", "chain:OCS-EDGE-OUT", "jump:OUTPUT"]
updated:
  description:
    - "The id of a rule whose live form differs (an address, a port, a count), an owned chain whose
      rule order differs (C(chain:OCS-EDGE-IN)), a jump not alone at position 1 (C(jump:FORWARD)),
      the rules file rewritten."
  returned: always
  type: list
  elements: str
  sample: ["central-t18-f5-in", "chain:OCS-EDGE-IN", "jump:FORWARD"]
diff:
  description:
    - "Ansible diffs (before/after with headers) of the owned chains and jumps as iptables-save
      lines, then the rules file; returned when something differs."
  returned: changed
  type: list
  elements: dict
warnings:
  description: Warnings of the run (NAT found in warn mode, conntrack missing).
  returned: when there is at least one
  type: list
  elements: str
rules:
  description: The owned section in iptables-restore format (what is applied and merged into the persisted file).
  returned: when state=present
  type: str
transaction:
  description: The iptables-restore --noflush transaction that was (or, in check mode, would be) applied; '' when nothing differs.
  returned: always
  type: str
chains:
  description: The owned chains.
  returned: always
  type: list
  elements: str
  sample: ["OCS-EDGE-FWD", "OCS-EDGE-IN"]
persist_path:
  description: Where the owned section is persisted ('' when not).
  returned: always
  type: str
nat:
  description: Rules of the nat table that would translate the A/V Edge's address.
  returned: when state=present
  type: list
  elements: str
conntrack_deleted:
  description: Conntrack entries deleted (check mode, to delete) because the removed ACCEPT rules let them in.
  returned: when a correction removed ACCEPT rules and conntrack is installed
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ocs.edge_firewall.plugins.module_utils import backend
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import FirewallError
from ansible_collections.ocs.edge_firewall.plugins.module_utils.iptables import Ipt, IptBackend


def main():
    module = AnsibleModule(argument_spec=backend.ruleset_argument_spec(
        chain_prefix=dict(type="str", default="OCS-EDGE"),
        persist_path=dict(type="path", default="/etc/iptables/rules.v4"),
    ), mutually_exclusive=[("firewall", "rules")], supports_check_mode=True)
    p = module.params

    def run(argv, data=None):
        return module.run_command(argv, data=data, binary_data=True) if data is not None else module.run_command(argv)

    ipt = Ipt(run, module.get_bin_path("iptables-save", required=True),
              module.get_bin_path("iptables-restore", required=True))
    checks = {"nat_check": p["nat_check"], "conntrack_flush": p["conntrack_flush"],
              "conntrack": module.get_bin_path("conntrack")}
    try:
        ipts = IptBackend(p["name"], ipt, p["chain_prefix"], p["input_policy"], p["output_policy"], p["allow_icmp"],
                          p["persist_path"], checks)
    except FirewallError as exc:  # IptError, or a path/name refused by the backend contract
        module.fail_json(msg="firewall %s: %s" % (p["name"], exc))
    backend.run_module(module, ipts, backend.firewall_param(p, "iptables"))


if __name__ == "__main__":
    main()
