# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iptables backend of ocs.edge_firewall: FIREWALL (docs/policy-model.md) -> owned chains.

The collection owns up to three chains of the ``filter`` table, named ``<prefix>-IN``,
``<prefix>-FWD`` and ``<prefix>-OUT`` (default prefix ``OCS-EDGE``), and one jump to each
from the built-in chain (INPUT, FORWARD, OUTPUT), always at position 1. Nothing else in the
filter table (or any other table) is read for the comparison or changed.

* :func:`desired_state` turns a FIREWALL into a normalised state (chains + jumps);
* :func:`render_rules` renders it in ``iptables-restore`` format (the persisted section and the
  golden files), :func:`render_transaction` the ``iptables-restore --noflush`` script that moves
  the live filter table from what :func:`parse_save` read to the desired state in one commit;
* :func:`parse_save` reads ``iptables-save -t filter`` (only the owned chains and jumps to them);
* :func:`compare` lists the rules/chains/jumps created, removed and updated;
* :func:`merge_persist` / :func:`strip_persist` edit a netfilter-persistent rules file
  (``/etc/iptables/rules.v4``) so that it holds the applied owned section and keeps the rest.

Normalised rule: ``{"chain", "key": (sorted (name, value) matches, target, comment), "text"}``;
``text`` is the iptables-save line without ``-A <chain> `` (rendered exactly as iptables-save
prints it, so the listing of a freshly applied state reads back byte for byte). Addresses are
compared as networks (``10.0.0.1`` == ``10.0.0.1/32`` == ``10.0.0.1/255.255.255.255``), ports as
merged intervals (``--dport 5061`` == ``-m multiport --dports 5061``, ``N-M`` == ``N:M``),
conntrack states as sets. Options the parser does not know are kept verbatim, never ignored.

IPv4 only: an IPv6 address anywhere in the FIREWALL is an error that says so (use the
nftables backend, family inet, for IPv6); it is never dropped silently.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re
from collections import Counter

from ansible_collections.ocs.edge_firewall.plugins.module_utils import common
from ansible_collections.ocs.edge_firewall.plugins.module_utils.common import (  # noqa: F401 (public names)
    merge as _merge, numbered as _numbered, read_text, unified, where as _where,
)

TABLE = "filter"
COMMENT_MAX = 255              # XT_MAX_COMMENT_LEN 256 incl. NUL
CHAIN_MAX = 28                 # XT_EXTENSION_MAXNAMELEN 29 incl. NUL
PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,%d}$" % (CHAIN_MAX - 6))   # + "-MGMT"
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}\+?$")
PROTOCOLS = common.PROTOCOLS
MULTIPORT_MAX = 15             # multiport: at most 15 ports, a range counts as two
BUILTIN = {"IN": "INPUT", "FWD": "FORWARD", "OUT": "OUTPUT"}    # jumped to from position 1
TAILS = {"MGMT": "INPUT"}                                         # jumped to from the end

BASE_COMMENTS = dict(
    common.BASE_COMMENTS,
    drop="ocs base: default drop (what the policy does not name)",
    jump="ocs.edge_firewall: owned chain, keep at position 1",
    mgmt_return="ocs management: on to the other INPUT rules (bans), accepted at the end of INPUT",
    tail="ocs.edge_firewall: owned chain, keep last (management after the other rules, bans)",
)


class IptError(common.FirewallError):
    """A rule set that cannot be rendered/applied; the message names firewall and parameter."""


def chain_names(prefix="OCS-EDGE"):
    """{"IN": "<prefix>-IN", "FWD": ..., "OUT": ...}; the chains the collection owns."""
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        raise IptError("chain_prefix: %r is not a valid chain name prefix (a letter, then letters, digits, "
                       "'_', '.', '-'; at most %d characters so that '<prefix>-MGMT' fits iptables' %d)"
                       % (prefix, CHAIN_MAX - 5, CHAIN_MAX))
    if prefix.upper() in ("INPUT", "OUTPUT", "FORWARD", "ACCEPT", "DROP", "RETURN", "REJECT"):
        raise IptError("chain_prefix: %r is reserved" % prefix)
    return {k: "%s-%s" % (prefix, k) for k in ("IN", "FWD", "OUT", "MGMT")}


# --------------------------------------------------------------------- quoting/tokens

_NO_QUOTE = set("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def save_string(value):
    """Quote a value exactly like iptables-save (xtables_save_string)."""
    if value and all(c in _NO_QUOTE for c in value):
        return value
    return '"%s"' % re.sub(r'(["\\\'])', r"\\\1", value)


def tokenize(line):
    """Split an iptables-save/restore line like iptables-restore does (quotes, backslash escapes)."""
    out, cur, quoted, escaped, have = [], [], False, False, False
    for ch in line:
        if escaped:
            cur.append(ch)
            escaped = False
            have = True
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            have = True
        elif ch in " \t\n" and not quoted:
            if have:
                out.append("".join(cur))
            cur, have = [], False
        else:
            cur.append(ch)
            have = True
    if quoted:
        raise IptError("unbalanced quote in %r" % line)
    if have:
        out.append("".join(cur))
    return out


# ------------------------------------------------------------------------- values

def _addr_norm(text):
    """'10.0.0.1', '10.0.0.1/32', '10.0.0.0/255.255.255.0' -> canonical 'a.b.c.d/len'."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return "?%s" % text
    return "%s/%d" % (net.network_address, net.prefixlen)


def _port_norm(text):
    """'5061', '50000:59999', '3478,50000:59999' -> merged intervals (None if not ports)."""
    ivs = []
    for part in text.split(","):
        m = re.match(r"^(\d+)(?::(\d+))?$", part.strip())
        if not m:
            return None
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        ivs.append((lo, hi))
    return _merge(ivs)


def _port_text(iv):
    return "%d" % iv[0] if iv[0] == iv[1] else "%d:%d" % iv


# ------------------------------------------------------------------ parse one rule

_SHORT = {"-s": "--source", "-d": "--destination", "-i": "--in-interface", "-o": "--out-interface",
          "-p": "--protocol", "-m": "--match", "-j": "--jump", "-g": "--goto", "-f": "--fragment"}
_KEY = {"--source": "src", "--src": "src", "--destination": "dst", "--dst": "dst",
        "--in-interface": "in", "--out-interface": "out", "--protocol": "proto",
        "--sport": "sport", "--source-port": "sport", "--sports": "sport", "--source-ports": "sport",
        "--dport": "dport", "--destination-port": "dport", "--dports": "dport", "--destination-ports": "dport",
        "--ctstate": "ctstate", "--state": "ctstate", "--icmp-type": "icmp-type"}
# modules whose presence is implied by the options they carry (compared through those options)
_IMPLIED_MODULES = ("tcp", "udp", "multiport", "comment", "conntrack", "state", "icmp")


def parse_rule_tokens(tokens):
    """Tokens after ``-A CHAIN`` -> (matches, target, comment); unknown options kept verbatim."""
    matches, target, comment = [], None, None
    neg = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            neg = True
            i += 1
            continue
        opt = _SHORT.get(tok, tok)
        # values: the following tokens up to the next option (or "!")
        j = i + 1
        vals = []
        while j < len(tokens) and not (tokens[j].startswith("-") and len(tokens[j]) > 1
                                       and not re.match(r"^-\d", tokens[j])) and tokens[j] != "!":
            vals.append(tokens[j])
            j += 1
        if opt in ("--jump", "--goto"):
            # the target and all of its options (until the end) are one value
            rest = tokens[i + 1:]
            target = ("" if opt == "--jump" else "goto ") + " ".join(save_string(t) for t in rest)
            break
        bang = "!" if neg else ""
        neg = False
        value = " ".join(vals)
        if opt == "--match":
            if value not in _IMPLIED_MODULES:
                matches.append((bang + "module", value))
        elif opt == "--comment":
            comment = value
        elif opt in _KEY:
            key = _KEY[opt]
            if key in ("src", "dst"):
                value = ",".join(sorted(_addr_norm(v) for v in value.split(",")))
            elif key in ("sport", "dport"):
                value = _port_norm(value) or value
            elif key == "ctstate":
                value = ",".join(sorted(value.upper().split(",")))
            elif key == "proto":
                value = value.lower()
            elif key == "icmp-type":
                value = {"echo-request": "8", "8/0": "8"}.get(value, value)
            matches.append((bang + key, value))
        else:
            matches.append((bang + opt, value))
        i = j
    return tuple(sorted(matches, key=repr)), target, comment


def parse_rule_line(line):
    """'-A CHAIN ...' -> (chain, rule) or None for other lines."""
    tokens = tokenize(line)
    if len(tokens) < 2 or tokens[0] not in ("-A", "--append"):
        return None
    chain = tokens[1]
    matches, target, comment = parse_rule_tokens(tokens[2:])
    text = line.strip().split(None, 2)[2] if len(line.strip().split(None, 2)) > 2 else ""
    return chain, {"chain": chain, "key": (matches, target, comment), "text": text}


def _target_chain(rule):
    target = rule["key"][1] or ""
    if target.startswith("goto "):
        target = target[5:]
    return target.split(" ")[0] if target else None


# ------------------------------------------------------------------- desired state

def _ipv4_only(name, path):
    def check(i, val, net):
        if net.version != 4:
            raise IptError("%s[%d]: %s is an IPv6 address; the iptables backend enforces IPv4 only "
                           "(ip6tables is not implemented). Use ocs_firewall_platform: nftables for a "
                           "firewall with IPv6 addresses." % (_where(name, path), i, val))
    return check


def _addresses(values, name, path):
    """PFRULE/management addresses -> list of canonical IPv4 'a.b.c.d/len', or None (any)."""
    nets = common.networks(values, name, path, IptError, _ipv4_only(name, path))
    if nets is None:
        return None
    return ["%s/%d" % (n.network_address, n.prefixlen) for n in common.uncovered(nets)]


def _ports(values, name, path):
    """Validate a port list -> merged intervals, or None (any)."""
    out = common.port_intervals(values, name, path, IptError)
    return None if out is None else _merge(out)


def _chunks(intervals):
    """Split port intervals into groups multiport accepts (15 slots, a range takes two)."""
    groups, cur, used = [], [], 0
    for iv in intervals:
        need = 1 if iv[0] == iv[1] else 2
        if cur and used + need > MULTIPORT_MAX:
            groups.append(tuple(cur))
            cur, used = [], 0
        cur.append(iv)
        used += need
    if cur:
        groups.append(tuple(cur))
    return groups


def _check_comment(comment, name, path):
    return common.check_comment(comment, name, path, IptError, COMMENT_MAX, "iptables",
                                "the collection does not put in firewall comments")


def render_spec(spec):
    """spec dict -> the rule text exactly as iptables-save prints it (without '-A CHAIN')."""
    parts = []
    if spec.get("src"):
        parts += ["-s", spec["src"]]
    if spec.get("dst"):
        parts += ["-d", spec["dst"]]
    if spec.get("in"):
        parts += ["-i", spec["in"]]
    if spec.get("out"):
        parts += ["-o", spec["out"]]
    proto = spec.get("proto")
    if proto:
        parts += ["-p", proto]
        sport, dport = spec.get("sport"), spec.get("dport")
        single = [(o, v) for o, v in (("--sport", sport), ("--dport", dport)) if v and len(v) == 1]
        multi = [(o, v) for o, v in (("--sports", sport), ("--dports", dport)) if v and len(v) > 1]
        if proto == "icmp":
            parts += ["-m", "icmp", "--icmp-type", spec["icmp-type"]]
        elif single:
            parts += ["-m", proto]
            for o, v in single:
                parts += [o, _port_text(v[0])]
        for o, v in multi:
            parts += ["-m", "multiport", o, ",".join(_port_text(iv) for iv in v)]
    if spec.get("ctstate"):
        parts += ["-m", "conntrack", "--ctstate", spec["ctstate"]]
    if spec.get("comment") is not None:
        parts += ["-m", "comment", "--comment", save_string(spec["comment"])]
    parts += ["-j", spec["target"]]
    return " ".join(parts)


def _make_rule(chain, spec):
    text = render_spec(spec)
    parsed = parse_rule_line("-A %s %s" % (chain, text))[1]
    return parsed


def _base_rules(chain, management, allow_icmp, name, mgmt_target="RETURN"):
    rules = [
        _make_rule(chain, {"in": "lo", "comment": BASE_COMMENTS["lo"], "target": "ACCEPT"}),
        _make_rule(chain, {"ctstate": "RELATED,ESTABLISHED", "comment": BASE_COMMENTS["est"], "target": "ACCEPT"}),
        _make_rule(chain, {"ctstate": "INVALID", "comment": BASE_COMMENTS["inv"], "target": "DROP"}),
    ]
    rules.extend(_management_rules(chain, management, name, mgmt_target))
    if allow_icmp:
        rules.append(_make_rule(chain, {"proto": "icmp", "icmp-type": "8", "comment": BASE_COMMENTS["echo"],
                                        "target": "ACCEPT"}))
    return rules


def _management_rules(chain, management, name, target):
    """The management rules: RETURN in <prefix>-IN (so other software's rules below the jump in
    INPUT, fail2ban's bans, still see the packet), ACCEPT in <prefix>-MGMT (jumped to from the
    end of INPUT, after those rules, whatever INPUT's policy is)."""
    sources = common.management_sources(management, name, _addresses, IptError)
    ports = _ports(management.get("ports") or ["22"], name, "management.ports")
    out = []
    for src in sources:
        for group in _chunks(ports):
            out.append(_make_rule(chain, {"src": src, "proto": "tcp", "dport": group, "target": target,
                                          "comment": BASE_COMMENTS["mgmt" if target == "ACCEPT" else "mgmt_return"]}))
    return out


def pfrule_rules(pfrule, index, mode, interfaces, name, chains):
    """One PFRULE -> iptables rules: one per (source, destination) address pair and port group."""
    path, chain, proto = common.pfrule_head(pfrule, index, mode, name, "iptables", IptError)
    src = _addresses(pfrule.get("src"), name, path + ".src")
    dst = _addresses(pfrule.get("dst"), name, path + ".dst")
    sport = _ports(pfrule.get("sport"), name, path + ".sport")
    dport = _ports(pfrule.get("dport"), name, path + ".dport")
    comment = _check_comment(pfrule.get("comment"), name, path + ".comment")
    opts = {"src_zone": "in", "dst_zone": "out"}
    ifaces = {opts[zone_key]: ifname
              for zone_key, ifname in common.zone_interfaces(pfrule, mode, interfaces, name, IFNAME_RE, IptError)}
    target_chain = chains[{"forward": "FWD", "input": "IN", "output": "OUT"}[chain]]
    out = []
    for s in (src or [None]):
        for d in (dst or [None]):
            for sp in (_chunks(sport) if sport else [None]):
                for dp in (_chunks(dport) if dport else [None]):
                    spec = dict(ifaces, src=s, dst=d, proto=proto, sport=sp, dport=dp, comment=comment,
                                target="ACCEPT")
                    out.append(_make_rule(target_chain, spec))
    return out


def desired_state(firewall, name=None, prefix="OCS-EDGE", input_policy="drop", output_policy="accept",
                  allow_icmp=True):
    """FIREWALL dict -> {"chains": {chain name: [rules]}, "jumps": {builtin: owned chain}}.

    network mode: <prefix>-IN (lo, established, invalid, management, ICMP echo, then DROP when
    ``input_policy`` is drop) and <prefix>-FWD (established, invalid, one ACCEPT per address pair of
    every PFRULE, then DROP); host mode: <prefix>-IN (as above, PFRULEs of chain input, DROP) and
    <prefix>-OUT (lo, established, PFRULEs of chain output, DROP when ``output_policy`` is drop).
    """
    chains_by_kind = chain_names(prefix)
    mode, interfaces, rules, management = common.check_firewall(
        firewall, name, "iptables", input_policy, output_policy, IptError)

    cin, cfwd, cout = chains_by_kind["IN"], chains_by_kind["FWD"], chains_by_kind["OUT"]
    cmgmt = chains_by_kind["MGMT"]
    chains = {cin: _base_rules(cin, management, allow_icmp, name),
              cmgmt: _management_rules(cmgmt, management, name, "ACCEPT")}
    policies = {cin: input_policy if mode == "network" else "drop"}
    if mode == "network":
        chains[cfwd] = [
            _make_rule(cfwd, {"ctstate": "RELATED,ESTABLISHED", "comment": BASE_COMMENTS["est"], "target": "ACCEPT"}),
            _make_rule(cfwd, {"ctstate": "INVALID", "comment": BASE_COMMENTS["inv"], "target": "DROP"}),
        ]
        policies[cfwd] = "drop"
    else:
        chains[cout] = [
            _make_rule(cout, {"out": "lo", "comment": BASE_COMMENTS["lo"], "target": "ACCEPT"}),
            _make_rule(cout, {"ctstate": "RELATED,ESTABLISHED", "comment": BASE_COMMENTS["est"], "target": "ACCEPT"}),
        ]
        policies[cout] = output_policy
    for i, pfrule in enumerate(rules):
        for rule in pfrule_rules(pfrule, i, mode, interfaces, name, chains_by_kind):
            chains[rule["chain"]].append(rule)
    for chain, policy in policies.items():
        if policy == "drop":
            chains[chain].append(_make_rule(chain, {"comment": BASE_COMMENTS["drop"], "target": "DROP"}))
    jumps, tails = {}, {}
    for kind, chain in chains_by_kind.items():
        if chain in chains and kind in BUILTIN:
            jumps[BUILTIN[kind]] = _make_rule(BUILTIN[kind], {"comment": BASE_COMMENTS["jump"], "target": chain})
        elif chain in chains:
            tails[TAILS[kind]] = _make_rule(TAILS[kind], {"comment": BASE_COMMENTS["tail"], "target": chain})
    # chains in iptables-save's order (by name), so a listing of live and desired reads alike
    return {"chains": dict(sorted(chains.items())), "jumps": jumps, "tails": tails}


# ---------------------------------------------------------------------- render

def owned_lines(state):
    """Declarations, jumps and rules of the owned section, in iptables-restore syntax; the tail
    jumps (to the end of their chain) are part of the rules, after everything else."""
    decl = [":%s - [0:0]" % c for c in state["chains"]]
    jumps = ["-A %s %s" % (b, r["text"]) for b, r in state["jumps"].items()]
    rules = ["-A %s %s" % (c, r["text"]) for c, rs in state["chains"].items() for r in rs]
    rules += ["-A %s %s" % (b, r["text"]) for b, r in state.get("tails", {}).items()]
    return decl, jumps, rules


def render_rules(state, header=None):
    """The owned section as a complete iptables-restore file (golden files, fresh persistence)."""
    decl, jumps, rules = owned_lines(state)
    lines = ["# %s" % common.printable(h) for h in (header or [])]
    return "\n".join(lines + ["*filter"] + decl + jumps + rules + ["COMMIT"]) + "\n"


def render_listing(state):
    """Readable canonical listing of an owned state (for --diff); '' when nothing is there."""
    if state is None or (not state["chains"] and not state["jumps"]):
        return ""
    out = []
    for b, r in state["jumps"].items():
        rs = r if isinstance(r, list) else [r] + ([state["tails"][b]] if b in state.get("tails", {}) else [])
        for item in rs:
            pos = " (position %d)" % item["pos"] if item.get("pos") else ""
            out.append("-A %s %s%s" % (b, item["text"], pos))
    for c, rs in state["chains"].items():
        out.append(":%s" % c)
        out.extend("-A %s %s" % (c, r["text"]) for r in rs)
    return "\n".join(out) + "\n"


def render_transaction(desired, live):
    """One ``iptables-restore --noflush`` script: live owned state -> desired, in one COMMIT.

    Declaring a user chain with --noflush creates it or flushes it; every live jump to an owned
    chain (from any chain we do not own) is deleted by its exact iptables-save text and the one
    desired jump per built-in chain is inserted at position 1; owned chains no longer desired
    are flushed and deleted. Chains and rules of others are never named.
    """
    live = live or {"chains": {}, "jumps": {}}
    lines = ["*filter"]
    lines += [":%s - [0:0]" % c for c in desired["chains"]]
    lines += ["-F %s" % c for c in desired["chains"]]
    for chain, rs in live["jumps"].items():
        for r in rs:
            lines.append("-D %s %s" % (chain, r["text"]))
    for c, rs in desired["chains"].items():
        lines += ["-A %s %s" % (c, r["text"]) for r in rs]
    for b, r in desired["jumps"].items():
        lines.append("-I %s 1 %s" % (b, r["text"]))
    for b, r in desired.get("tails", {}).items():
        lines.append("-A %s %s" % (b, r["text"]))       # after every other rule of the chain
    for c in live["chains"]:
        if c not in desired["chains"]:
            lines += ["-F %s" % c, "-X %s" % c]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_removal(live):
    """iptables-restore --noflush script that deletes the jumps and the owned chains."""
    lines = ["*filter"]
    for chain, rs in live["jumps"].items():
        for r in rs:
            lines.append("-D %s %s" % (chain, r["text"]))
    for c in live["chains"]:
        lines += ["-F %s" % c]
    for c in live["chains"]:
        lines += ["-X %s" % c]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ parse

def parse_save(text, prefix="OCS-EDGE"):
    """``iptables-save -t filter`` -> live owned state.

    {"chains": {owned chain: [rules]} (only owned chains that exist),
     "jumps": {chain: [rules with "pos" (1-based)]} (every rule of a chain we do not own that
     jumps/goes to an owned chain), "exists": bool}. Everything else is not looked at.
    """
    owned = set(chain_names(prefix).values())
    chains, jumps = {}, {}
    positions = Counter()
    in_filter = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            in_filter = line[1:] == TABLE
            continue
        if not in_filter:
            continue
        if line == "COMMIT":
            in_filter = False
            continue
        if line.startswith(":"):
            cname = line[1:].split()[0]
            if cname in owned:
                chains.setdefault(cname, [])
            continue
        parsed = parse_rule_line(line)
        if parsed is None:
            continue
        chain, rule = parsed
        positions[chain] += 1
        if chain in owned:
            chains.setdefault(chain, []).append(rule)
        elif _target_chain(rule) in owned:
            rule["pos"] = positions[chain]
            jumps.setdefault(chain, []).append(rule)
    for chain, rules in jumps.items():
        for rule in rules:
            rule["last"] = rule["pos"] == positions[chain]
    chains = dict(sorted(chains.items()))
    return {"chains": chains, "jumps": jumps}


# ---------------------------------------------------------------------- compare

def compare(desired, live):
    """-> {"created": [...], "removed": [...], "updated": [...], "changed": bool}."""
    created, removed, updated = [], [], []
    live = live or {"chains": {}, "jumps": {}}
    for cname, rules in desired["chains"].items():
        lrules = live["chains"].get(cname)
        if lrules is None:
            created.append("chain %s" % cname)
            created.extend("%s: %s" % (cname, r["text"]) for r in rules)
            continue
        want = Counter(r["key"] for r in rules)
        have = Counter(r["key"] for r in lrules)
        extra, missing = have - want, want - have
        for r in lrules:
            if extra.get(r["key"]):
                extra[r["key"]] -= 1
                removed.append("%s: %s" % (cname, r["text"]))
        for r in rules:
            if missing.get(r["key"]):
                missing[r["key"]] -= 1
                created.append("%s: %s" % (cname, r["text"]))
        if not (have - want) and not (want - have):
            if [r["key"] for r in rules] != [r["key"] for r in lrules]:
                updated.append("chain %s: rule order restored" % cname)
    for cname, lrules in live["chains"].items():
        if cname not in desired["chains"]:
            removed.append("chain %s" % cname)
            removed.extend("%s: %s" % (cname, r["text"]) for r in lrules)
    _compare_jumps(desired, live, created, removed, updated)
    return {"created": created, "removed": removed, "updated": updated,
            "changed": bool(created or removed or updated)}


def _compare_jumps(desired, live, created, removed, updated):
    """Per built-in chain exactly one jump at position 1 (and one tail jump, last), the desired
    texts; every other jump to an owned chain is removed."""
    tails = desired.get("tails", {})
    for chain, ljumps in live["jumps"].items():
        head, tail = desired["jumps"].get(chain), tails.get(chain)
        keep_head = next((j for j in ljumps if head is not None and j["key"] == head["key"]), None)
        keep_tail = next((j for j in reversed(ljumps) if tail is not None and j["key"] == tail["key"]), None)
        for j in ljumps:
            if j is not keep_head and j is not keep_tail:
                removed.append("%s: %s (jump at position %d)" % (chain, j["text"], j["pos"]))
        if keep_head is not None and keep_head["pos"] != 1:
            updated.append("jump %s -> %s moved from position %d to 1"
                           % (chain, _target_chain(keep_head), keep_head["pos"]))
        if keep_tail is not None and not keep_tail.get("last", True):
            updated.append("jump %s -> %s moved from position %d to the end"
                           % (chain, _target_chain(keep_tail), keep_tail["pos"]))
    for where, wanted in (("position 1", desired["jumps"]), ("the end", tails)):
        for chain, want in wanted.items():
            if not any(j["key"] == want["key"] for j in live["jumps"].get(chain, [])):
                created.append("%s: %s (jump at %s)" % (chain, want["text"], where))


# ------------------------------------------------------------------ persistence

def _is_owned_line(line, owned):
    s = line.strip()
    if s.startswith(":"):
        return s[1:].split()[0] in owned if len(s) > 1 else False
    parsed = parse_rule_line(s) if s.startswith("-") else None
    if parsed is None:
        return False
    chain, rule = parsed
    return chain in owned or _target_chain(rule) in owned


def strip_persist(text, prefix="OCS-EDGE"):
    """Remove the owned chains, their rules and jumps to them from the filter section of a
    rules file; everything else (other tables, other chains and rules) stays byte for byte."""
    owned = set(chain_names(prefix).values())
    out, in_filter = [], False
    for line in (text or "").splitlines(True):
        s = line.strip()
        if s.startswith("*"):
            in_filter = s[1:] == TABLE
        elif s == "COMMIT":
            in_filter = False
        elif in_filter and _is_owned_line(s, owned):
            continue
        out.append(line)
    return "".join(out)


def merge_persist(text, state, prefix="OCS-EDGE"):
    """A netfilter-persistent rules file with the owned section of ``state`` in its filter
    section (chain declarations after the others', jumps before every other rule so they are
    at position 1 after a restore, rules before COMMIT) and everything else kept.
    A missing/empty file becomes a file with only the filter section."""
    decl, jumps, rules = owned_lines(state)
    base = strip_persist(text, prefix) if text else ""
    lines = base.splitlines()
    if not any(l.strip() == "*filter" for l in lines):
        lines += ["*filter", "COMMIT"]
    start = [i for i, l in enumerate(lines) if l.strip() == "*filter"][0]
    end = start + 1
    while end < len(lines) and lines[end].strip() != "COMMIT":
        end += 1
    if end >= len(lines):
        raise IptError("the *filter section of the rules file has no COMMIT line")
    section = lines[start + 1:end]
    last_decl = max([i for i, l in enumerate(section) if l.strip().startswith(":")] or [-1])
    head, tail = section[:last_decl + 1], section[last_decl + 1:]
    new_section = head + decl + jumps + tail + rules
    return "\n".join(lines[:start + 1] + new_section + lines[end:]) + "\n"


def persisted_state(text, prefix="OCS-EDGE"):
    """The owned state as a rules file holds it (for comparing the persisted copy)."""
    return parse_save(text or "", prefix)


def write_atomic(path, text, mode=0o640):
    """Write via a temporary file in the same directory + rename; keeps an existing file's mode."""
    common.write_atomic(path, text, mode)


# ---------------------------------------------------------------------- runner

class Ipt:
    """Runs iptables-save/iptables-restore. ``run(argv, data=None) -> (rc, stdout, stderr)``."""

    def __init__(self, run, save="iptables-save", restore="iptables-restore"):
        self._run = run
        self.save = save
        self.restore = restore

    def read(self, prefix="OCS-EDGE"):
        rc, out, err = self._run([self.save, "-t", TABLE])
        if rc != 0:
            raise IptError("reading the live rules failed (%s -t %s, rc=%s): %s"
                           % (self.save, TABLE, rc, (err or out).strip()))
        return parse_save(out, prefix), out

    def read_nat(self):
        """``iptables-save -t nat`` text ('' when the nat table cannot be read)."""
        rc, out, _err = self._run([self.save, "-t", "nat"])
        return out if rc == 0 else ""

    def _restore(self, script, test, what):
        # -w: wait for the xtables lock (legacy backend) instead of failing on a concurrent call
        argv = [self.restore, "-w", "30", "--noflush"] + (["--test"] if test else [])
        rc, out, err = self._run(argv, data=script)
        if rc != 0:
            raise IptError("%s: iptables-restore rejected the transaction (rc=%s), nothing was changed:\n%s\n"
                           "--- transaction (%s) ---\n%s" % (what, rc, (err or out).strip(), " ".join(argv),
                                                             _numbered(script)))
        return out

    def check(self, script):
        return self._restore(script, True, "validation (iptables-restore --noflush --test)")

    def apply(self, script):
        return self._restore(script, False, "apply (iptables-restore --noflush)")
