# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections a correction no longer allows: their conntrack entries are deleted.

Replies pass by ``ct state established,related``, so a flow that a rogue rule let in keeps
flowing after the rule is removed, until its conntrack entry times out (days for TCP). After
a correction removes an accept rule, the entries that rule could have created and that no
desired accept rule allows are deleted (``conntrack -D`` with the entry's original tuple).

Only entries of the removed rule's chain are considered: forward = neither end is an address
of this host, input = the destination is, output = the source is; so the host's own
connections (SSH, apt) are never touched by a forward rule. A rule this code cannot evaluate
counts as allowing (the entry is kept): an entry is only deleted when it is certain that no
desired rule allows it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.ocs.edge_firewall.plugins.module_utils import foreign

_FIELD = re.compile(r"\b(src|dst|sport|dport)=(\S+)")


def parse_entries(text):
    """``conntrack -L`` output -> [{"proto", "src", "dst", "sport", "dport"}] (original direction)."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] not in ("tcp", "udp", "sctp", "dccp", "udplite"):
            continue
        entry = {"proto": parts[0]}
        for key, value in _FIELD.findall(line):
            entry.setdefault(key, value)
        if all(k in entry for k in ("src", "dst", "sport", "dport")):
            out.append(entry)
    return out


def entry_flow(entry):
    """A conntrack entry as a one-packet flow set (what foreign.rule_relation evaluates)."""
    return {"id": entry_text(entry), "hook": None, "proto": entry["proto"],
            "src": [ipaddress.ip_network(entry["src"])], "dst": [ipaddress.ip_network(entry["dst"])],
            "sport": [(int(entry["sport"]),) * 2], "dport": [(int(entry["dport"]),) * 2], "iif": None, "oif": None}


def entry_text(entry):
    return "%s %s:%s -> %s:%s" % (entry["proto"], entry["src"], entry["sport"], entry["dst"], entry["dport"])


def _chain_of(entry, local):
    src, dst = entry["src"] in local, entry["dst"] in local
    if dst:
        return "input"
    if src:
        return "output"
    return "forward"


def stale_entries(entries, removed, desired, local):
    """Entries a removed accept rule could have created and no desired accept rule allows.

    ``removed``/``desired``: [(chain, rule)] with rule in nftables' normalised form (matches,
    verdict); ``local``: this host's addresses (strings)."""
    out = []
    for entry in entries:
        chain = _chain_of(entry, local)
        flow = entry_flow(entry)
        created_by = [r for c, r in removed if c == chain and r["verdict"] == "accept"
                      and foreign.rule_relation(r, flow) != foreign.NONE]
        if not created_by:
            continue
        allowed = [r for c, r in desired if c == chain and r["verdict"] == "accept"
                   and foreign.rule_relation(r, flow) != foreign.NONE]
        if not allowed:
            out.append(entry)
    return out


def local_addresses(run):
    """This host's addresses (``ip -o addr``)."""
    rc, out, _err = run(["ip", "-o", "addr", "show"])
    if rc != 0:
        return set()
    return set(m.split("/")[0] for m in re.findall(r"\binet6? (\S+)", out))


def flush(run, conntrack, removed, desired, check_mode):
    """Delete the stale entries (not in check mode) -> (texts of the entries, error or None)."""
    entries = []
    for family in ("ipv4", "ipv6"):
        rc, out, err = run([conntrack, "-L", "-f", family])
        if rc != 0:
            return [], "conntrack -L -f %s failed: %s" % (family, (err or out).strip())
        entries.extend(parse_entries(out))
    stale = stale_entries(entries, removed, desired, local_addresses(run))
    if not check_mode:
        for e in stale:
            run([conntrack, "-D", "-p", e["proto"], "-s", e["src"], "-d", e["dst"],
                 "--sport", e["sport"], "--dport", e["dport"]])
    return [entry_text(e) for e in stale], None


# ------------------------------------------------------------ iptables rules

def ipt_rule(rule):
    """An iptables rule (iptables.parse_rule_line's) in nftables' normalised form, for
    foreign.rule_relation: addresses, protocol, ports, interfaces, conntrack states."""
    matches = []
    for key, value in rule["key"][0]:
        neg = key.startswith("!")
        op = "!=" if neg else "=="
        key = key.lstrip("!")
        if key in ("src", "dst"):
            try:
                nets = [ipaddress.ip_network(v, strict=False) for v in value.split(",")]
            except ValueError:
                matches.append((key, op, None))
                continue
            ivs = tuple(sorted((n.version, int(n.network_address), int(n.broadcast_address)) for n in nets))
            matches.append(("ip saddr" if key == "src" else "ip daddr", op, ivs))
        elif key == "proto":
            matches.append(("meta l4proto", op, (value,)))
        elif key in ("sport", "dport") and isinstance(value, tuple):
            matches.append(("th %s" % key, op, value))
        elif key in ("in", "out"):
            matches.append(("meta iifname" if key == "in" else "meta oifname", op, (value.replace("+", "*"),)))
        elif key == "ctstate":
            matches.append(("ct state", "in", tuple(v.lower() for v in value.split(","))))
        else:
            matches.append((key, op, None))
    target = (rule["key"][1] or "").split(" ")[0]
    return {"matches": matches, "stmts": [], "verdict": "accept" if target == "ACCEPT" else target.lower()}
