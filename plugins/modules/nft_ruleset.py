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
  - ocs.edge_firewall contributors
requirements:
  - nft (nftables >= 0.9.7) on the managed host, run as root
options:
  firewall:
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
  mode:
    description: C(network) (forward chain) or C(host) (input/output chains). Used with O(rules).
    type: str
    choices: [network, host]
    default: network
  management:
    description:
      - "C({sources: [CIDR, ...], ports: [22]}): who may always reach the firewall itself.
        Used with O(rules). Must not be empty: the management connection is never cut."
    type: dict
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
  lock_timeout:
    description:
      - Seconds to wait for another run of the collection on this host (file lock in /run/lock)
        before failing with nothing changed. Two runs never interleave their read, apply and persist.
    type: int
    default: 120
  conntrack_flush:
    description:
      - After a correction removes an accept rule, delete the conntrack entries of the connections
        that rule let in and no desired rule allows (C(conntrack -D)); otherwise they keep flowing,
        as replies, until they time out. Only entries of the removed rule's chain are considered
        (forward, input or output of this host). Needs the C(conntrack) tool (a warning without it).
      - In check mode the entries are listed, not deleted. C(false) keeps them.
    type: bool
    default: true
  nat_check:
    description:
      - "NAT that would translate the A/V Edge's address on this firewall's side (the page: the
        firewalls must not NAT it): C(fail) (default) stops before anything is changed, naming
        table, chain and rule; C(warn) only warns."
      - "The A/V addresses are the FIREWALL's C(no_nat) list when the policy gives one, else the
        perimeter-side addresses of its C(av_edge) rules."
    type: str
    choices: [fail, warn]
    default: fail
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
  description: Chains and rules added (C(chain) colon rule text), in the desired set but not live.
  returned: always
  type: list
  elements: str
  sample: ["forward: ip daddr 172.16.1.50 tcp dport 443 accept comment \"ocs central-t20-f12-out table 20 figure 12 av_edge STUN/TCP\""]
removed:
  description: Chains, rules and other objects of the owned table that are live but not desired.
  returned: always
  type: list
  elements: str
  sample: ["forward: tcp dport 23 accept"]
updated:
  description: Table/chain attributes restored (policy, hook, rule order), the persisted file and the include line written.
  returned: always
  type: list
  elements: str
  sample: ["chain forward: policy accept -> drop", "persist file /etc/nftables.d/ocs_edge.nft written"]
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

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ocs.edge_firewall.plugins.module_utils import common, conntrack, foreign, lock, nft_listing
from ansible_collections.ocs.edge_firewall.plugins.module_utils import nftables as nftlib


def _conntrack_flush(module, live, desired, result):
    """Delete (check mode: list) the conntrack entries only the removed accept rules allowed."""
    if not module.params["conntrack_flush"] or not live:
        return
    want = set(nftlib.rule_key(r) for c in desired["chains"].values() for r in c["rules"])
    removed = [(c, r) for c, chain in live["chains"].items() for r in chain["rules"]
               if nftlib.rule_key(r) not in want and r["verdict"] == "accept"]
    if not removed:
        return
    binary = module.get_bin_path("conntrack")
    if binary is None:
        module.warn("conntrack is not installed: connections the removed accept rules let in stay until "
                    "their conntrack entries time out")
        return
    keep = [(c, r) for c, chain in desired["chains"].items() for r in chain["rules"]]
    flows, error = conntrack.flush(module.run_command, binary, removed, keep, module.check_mode)
    if error:
        module.warn(error)
    result["conntrack_deleted"] = flows


def _foreign_report(module, firewall, table, result):
    """Other tables' base chains and NAT against the policy -> fatal messages (fail mode only).

    Fills result["foreign"] (drops/may_drop/accepts) and result["nat"]; warns about the rest."""
    p = module.params

    def run(argv):
        return module.run_command(argv)
    try:
        tables = nft_listing.read_ruleset(run, module.get_bin_path("nft", required=True),
                                          skip=((nftlib.FAMILY, table),))
    except nft_listing.ListingError as exc:
        return ["reading the other tables failed: %s" % exc]
    unreadable = ["table %s %s could not be read (nft -j)" % k for k, v in tables.items() if v is None]
    found = foreign.chain_findings({k: v for k, v in tables.items() if v is not None},
                                   foreign.policy_flows(firewall), owned=(nftlib.FAMILY, table))
    nat = foreign.nft_nat_findings({k: v for k, v in tables.items() if v is not None},
                                   foreign.av_edge_addresses(firewall))
    result["foreign"] = dict(found, unreadable=unreadable)
    result["nat"] = nat
    fatal = []
    for msg in found["may_drop"] + found["accepts"] + unreadable:
        module.warn(msg)
    drops = ["%s (the policy must allow it; nftables drops a packet any base chain on the hook drops)" % m
             for m in found["drops"]]
    if p["foreign_check"] == "fail":
        fatal += drops
    else:
        for msg in drops:
            module.warn(msg)
    nat_msgs = ["%s; the page says the firewall must not NAT it" % m for m in nat]
    if p["nat_check"] == "fail":
        fatal += nat_msgs
    else:
        for msg in nat_msgs:
            module.warn(msg)
    return fatal


def _persist_plan(params, script, table):
    """-> list of (path, old_text, new_text, mode, what) to write (new_text None = remove)."""
    plan = []
    path, conf = params["persist_path"], params["persist_conf"]
    present = params["state"] == "present"
    if path:
        old = nftlib.read_text(path)
        new = script if present else None
        if old != new:
            plan.append((path, old, new, 0o644, "persist file %s %s" % (path, "written" if new else "removed")))
        if conf:
            old_conf = nftlib.read_text(conf)
            if present:
                new_conf = nftlib.conf_with_include(old_conf, path, table)
            elif old_conf is not None:
                new_conf = nftlib.conf_without_include(old_conf, path, table)
            else:
                new_conf = None
            if old_conf != new_conf:
                plan.append((conf, old_conf, new_conf, 0o755, "include of %s %s %s" % (
                    path, "added to" if present else "removed from", conf)))
    return plan


def main():
    module = AnsibleModule(
        argument_spec=common.ruleset_argument_spec(
            table=dict(type="str", default="ocs_edge"),
            persist_path=dict(type="path", default="/etc/nftables.d/ocs_edge.nft"),
            persist_conf=dict(type="path", default="/etc/nftables.conf"),
            foreign_check=dict(type="str", choices=["fail", "warn"], default="fail"),
            nat_check=dict(type="str", choices=["fail", "warn"], default="fail"),
            lock_timeout=dict(type="int", default=120),
            conntrack_flush=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("firewall", "rules")],
        supports_check_mode=True,
    )
    p = module.params
    name, table = p["name"], p["table"]
    result = dict(changed=False, created=[], removed=[], updated=[], table="%s %s" % (nftlib.FAMILY, table),
                  persist_path=p["persist_path"] or "")

    def fail(msg, **extra):
        result.update(extra)
        module.fail_json(msg=msg, **result)

    if not nftlib.TABLE_RE.match(table):
        fail("firewall %s: table: %r is not a valid nft table name" % (name, table))
    try:
        for var in ("persist_path", "persist_conf"):
            common.check_path(p[var], name, var, nftlib.NftError)
    except nftlib.NftError as exc:
        fail("%s (nothing was changed)" % exc)

    def run(argv, data=None):
        if data is None:
            return module.run_command(argv)
        return module.run_command(argv, data=data, binary_data=True)

    nft = nftlib.Nft(run, module.get_bin_path("nft", required=True))
    try:
        with lock.RunLock(timeout=p["lock_timeout"]):
            _enforce(module, nft, result, fail)
    except lock.LockTimeout as exc:
        fail("firewall %s: %s" % (name, exc))


def _enforce(module, nft, result, fail):
    """Read, compare, check, apply, read back, persist; under the run lock."""
    p = module.params
    if not module.check_mode:
        common.remove_stale_temp((p["persist_path"], p["persist_conf"]))
    name, table = p["name"], p["table"]
    try:
        live = nft.read_table(table)
    except nftlib.NftError as exc:
        fail("firewall %s: %s" % (name, exc))

    if p["state"] == "absent":
        if live is not None:
            result["removed"] = nftlib.compare({"chains": {}}, live)["removed"] + ["table %s" % result["table"]]
        plan = _persist_plan(p, None, table)
        result["updated"] = [item[4] for item in plan]
        result["changed"] = bool(live is not None or plan)
        if module._diff:
            result["diff"] = {"before": nftlib.render_listing(live, table), "after": "",
                              "before_header": "live table %s" % result["table"], "after_header": "absent"}
        if module.check_mode or not result["changed"]:
            module.exit_json(**result)
        try:
            if live is not None:
                nft.delete_table(table)
        except nftlib.NftError as exc:
            fail("firewall %s: %s" % (name, exc))
        for path, _old, new, mode, _what in plan:
            if new is None:
                os.unlink(path)
            else:
                nftlib.write_atomic(path, new, mode)
        module.exit_json(**result)

    firewall = common.firewall_param(p, "nftables")
    if firewall is None:
        fail("firewall %s: give either firewall (the FIREWALL dict) or rules" % name)
    try:
        desired = nftlib.desired_table(firewall, name, p["input_policy"], p["output_policy"], p["allow_icmp"])
        script = nftlib.render_script(desired, table, header=[
            "Managed by ocs.edge_firewall (module nft_ruleset) for firewall %s." % name,
            "Do not edit: the next run puts table %s %s back as the policy says." % (nftlib.FAMILY, table),
        ])
    except nftlib.NftError as exc:
        fail("%s (nothing was changed; the previous rule set is still in force)" % exc)

    fatal = _foreign_report(module, firewall, table, result)
    if fatal:
        fail("firewall %s: other software's rules contradict the policy (nothing was changed; set "
             "ocs_foreign_rules_check/ocs_nat_check: warn to only warn):\n%s" % (name, "\n".join(fatal)))

    cmp = nftlib.compare(desired, live)
    plan = _persist_plan(p, script, table)
    result.update(created=cmp["created"], removed=cmp["removed"],
                  updated=cmp["updated"] + [item[4] for item in plan], script=script)
    result["changed"] = bool(cmp["changed"] or plan)
    if module._diff:
        diffs = [{"before_header": "live table %s" % result["table"],
                  "after_header": "desired table %s" % result["table"],
                  "before": nftlib.render_listing(live, table), "after": nftlib.render_listing(desired, table)}]
        for path, old, new, _mode, _what in plan:
            diffs.append({"before_header": path, "after_header": path, "before": old or "", "after": new or ""})
        result["diff"] = diffs

    if cmp["changed"]:
        try:
            nft.check(script)
        except nftlib.NftError as exc:
            fail("firewall %s: table %s: %s\nThe previous rule set is still in force." % (name, result["table"], exc))
    if module.check_mode or not result["changed"]:
        if module.check_mode and cmp["changed"]:
            _conntrack_flush(module, live, desired, result)
        module.exit_json(**result)

    if cmp["changed"]:
        try:
            nft.apply(script)
        except nftlib.NftError as exc:
            fail("firewall %s: table %s: %s\nThe previous rule set is still in force." % (name, result["table"], exc))
        applied = ("the new table %s IS IN FORCE (nft -f committed it)" % result["table"])
        try:
            after = nft.read_table(table)
        except nftlib.NftError as exc:
            fail("firewall %s: %s, but reading it back failed: %s; the persisted file was not written "
                 "(the boot file still loads the previous rule set)" % (name, applied, exc))
        still = nftlib.compare(desired, after)
        if still["changed"]:
            fail("firewall %s: %s, but it reads back different from the desired set (created %s, removed %s, "
                 "updated %s); the persisted file was not written (the boot file still loads the previous "
                 "rule set)" % (name, applied, still["created"], still["removed"], still["updated"]))
        _conntrack_flush(module, live, desired, result)
    _persist(module, plan, fail, cmp["changed"])
    module.exit_json(**result)


def _persist(module, plan, fail, applied):
    """Write the persisted file(s); a failure says what is in force now and what boots."""
    name = module.params["name"]
    done = []
    for path, _old, new, mode, _what in plan:
        try:
            nftlib.write_atomic(path, new, mode)
        except (IOError, OSError) as exc:
            fail("firewall %s: %s; writing %s failed: %s (written before it: %s). At the next boot the "
                 "previous content of %s is loaded." % (
                     name, "the new table IS IN FORCE" if applied else "the live table was already as desired",
                     path, exc, ", ".join(done) or "nothing", path))
        done.append(path)


if __name__ == "__main__":
    main()
