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

from ansible_collections.ocs.edge_firewall.plugins.module_utils.backend import (
    Backend, Changes, FileChange, numbered, read_text, rule_changes,
)
from ansible_collections.ocs.edge_firewall.plugins.module_utils.platforms import PLATFORMS
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import (
    BASE_COMMENTS as _COMMON_COMMENTS, POLICIES, FirewallError, merge, parse_firewall, uncovered, where,
)

TABLE = "filter"
COMMENT_MAX = PLATFORMS["iptables"].comment_max
CHAIN_MAX = 28                 # XT_EXTENSION_MAXNAMELEN 29 incl. NUL
PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,%d}" % (CHAIN_MAX - 5))   # + "-FWD", whole string
MULTIPORT_MAX = PLATFORMS["iptables"].multiport_max   # a range counts as two
BUILTIN = {"IN": "INPUT", "FWD": "FORWARD", "OUT": "OUTPUT"}

BASE_COMMENTS = dict(
    _COMMON_COMMENTS,
    drop="ocs base: default drop (what the policy does not name)",
    jump="ocs.edge_firewall: owned chain, keep at position 1",
)


class IptError(FirewallError):
    """A rule set that cannot be rendered/applied; the message names firewall and parameter."""


def chain_names(prefix="OCS-EDGE"):
    """{"IN": "<prefix>-IN", "FWD": ..., "OUT": ...}; the chains the collection owns."""
    if not isinstance(prefix, str) or not PREFIX_RE.fullmatch(prefix):
        raise IptError("chain_prefix: %r is not a valid chain name prefix (a letter, then letters, digits, "
                       "'_', '.', '-'; at most %d characters so that '<prefix>-FWD' fits iptables' %d)"
                       % (prefix, CHAIN_MAX - 4, CHAIN_MAX))
    if prefix.upper() in ("INPUT", "OUTPUT", "FORWARD", "ACCEPT", "DROP", "RETURN", "REJECT"):
        raise IptError("chain_prefix: %r is reserved" % prefix)
    return {k: "%s-%s" % (prefix, k) for k in ("IN", "FWD", "OUT")}


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
    return merge(ivs)


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
    return chain, {"chain": chain, "key": (matches, target, comment), "text": text, "comment": comment}


def _target_chain(rule):
    target = rule["key"][1] or ""
    if target.startswith("goto "):
        target = target[5:]
    return target.split(" ")[0] if target else None


# ------------------------------------------------------------------- desired state

def _addresses(nets):
    """Parsed IPv4 addresses (rules.Rule) -> list of canonical 'a.b.c.d/len', or None (any)."""
    if nets is None:
        return None
    return ["%s/%d" % (n.network_address, n.prefixlen) for n in uncovered(nets)]


def _ports(intervals):
    """Parsed ports -> merged intervals, or None (any)."""
    return None if intervals is None else merge(intervals)


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


def _make_rule(chain, spec, rid=None):
    parsed = parse_rule_line("-A %s %s" % (chain, render_spec(spec)))[1]
    if rid is not None:
        parsed["id"] = rid
    return parsed


def _base(key, chain, spec):
    return _make_rule(chain, dict(spec, comment=BASE_COMMENTS[key]), "base:%s" % key)


def _base_rules(chain, management, allow_icmp):
    rules = [
        _base("lo", chain, {"in": "lo", "target": "ACCEPT"}),
        _base("est", chain, {"ctstate": "RELATED,ESTABLISHED", "target": "ACCEPT"}),
        _base("inv", chain, {"ctstate": "INVALID", "target": "DROP"}),
    ]
    rules.extend(_management_rules(chain, management))
    if allow_icmp:
        rules.append(_base("echo", chain, {"proto": "icmp", "icmp-type": "8", "target": "ACCEPT"}))
    return rules


def _management_rules(chain, management):
    ports = _ports(management["ports"])
    return [_base("mgmt", chain, {"src": src, "proto": "tcp", "dport": group, "target": "ACCEPT"})
            for src in _addresses(management["sources"]) for group in _chunks(ports)]


def pfrule_rules(rule, mode, interfaces, chains):
    """One parsed rule (rules.Rule) -> iptables rules: one per (source, destination) address
    pair and port group."""
    ifaces = {}
    if mode == "network":
        for zone, opt in ((rule.src_zone, "in"), (rule.dst_zone, "out")):
            if zone and interfaces.get(zone):
                ifaces[opt] = interfaces[zone]
    target_chain = chains[{"forward": "FWD", "input": "IN", "output": "OUT"}[rule.chain]]
    sport, dport = _ports(rule.sport), _ports(rule.dport)
    out = []
    for s in (_addresses(rule.src) or [None]):
        for d in (_addresses(rule.dst) or [None]):
            for sp in (_chunks(sport) if sport else [None]):
                for dp in (_chunks(dport) if dport else [None]):
                    spec = dict(ifaces, src=s, dst=d, proto=rule.protocol, sport=sp, dport=dp,
                                comment=rule.comment, target="ACCEPT")
                    out.append(_make_rule(target_chain, spec, rule.id))
    return out


def _policies(name, input_policy, output_policy):
    for pol, var in ((input_policy, "input_policy"), (output_policy, "output_policy")):
        if pol not in POLICIES:
            raise IptError("%s: %r is not accept or drop" % (where(name, var), pol))


def desired_state(firewall, name=None, prefix="OCS-EDGE", input_policy="drop", output_policy="accept",
                  allow_icmp=True):
    """FIREWALL dict -> {"chains": {chain name: [rules]}, "jumps": {builtin: owned chain}}.

    network mode: <prefix>-IN (lo, established, invalid, management, ICMP echo, then DROP when
    ``input_policy`` is drop) and <prefix>-FWD (established, invalid, one ACCEPT per address pair of
    every PFRULE, then DROP); host mode: <prefix>-IN (as above, PFRULEs of chain input, DROP) and
    <prefix>-OUT (lo, established, PFRULEs of chain output, DROP when ``output_policy`` is drop).
    """
    chains_by_kind = chain_names(prefix)
    _policies(name, input_policy, output_policy)
    fw = parse_firewall(firewall, name, "iptables")
    cin, cfwd, cout = chains_by_kind["IN"], chains_by_kind["FWD"], chains_by_kind["OUT"]
    chains = {cin: _base_rules(cin, fw.management, allow_icmp)}
    policies = {cin: input_policy if fw.mode == "network" else "drop"}
    if fw.mode == "network":
        chains[cfwd] = [_base("est", cfwd, {"ctstate": "RELATED,ESTABLISHED", "target": "ACCEPT"}),
                        _base("inv", cfwd, {"ctstate": "INVALID", "target": "DROP"})]
        policies[cfwd] = "drop"
    else:
        chains[cout] = [_base("lo", cout, {"out": "lo", "target": "ACCEPT"}),
                        _base("est", cout, {"ctstate": "RELATED,ESTABLISHED", "target": "ACCEPT"})]
        policies[cout] = output_policy
    for rule in fw.rules:
        for native in pfrule_rules(rule, fw.mode, fw.interfaces, chains_by_kind):
            chains[native["chain"]].append(native)
    for chain, policy in policies.items():
        if policy == "drop":
            chains[chain].append(_base("drop", chain, {"target": "DROP"}))
    jumps = {}
    for kind, chain in chains_by_kind.items():
        if chain in chains:
            jumps[BUILTIN[kind]] = _base("jump", BUILTIN[kind], {"target": chain})
    # chains in iptables-save's order (by name), so a listing of live and desired reads alike
    return {"chains": dict(sorted(chains.items())), "jumps": jumps}


# ---------------------------------------------------------------------- render

def owned_lines(state):
    """Declarations, jumps and rules of the owned section, in iptables-restore syntax."""
    decl = [":%s - [0:0]" % c for c in state["chains"]]
    jumps = ["-A %s %s" % (b, r["text"]) for b, r in state["jumps"].items()]
    rules = ["-A %s %s" % (c, r["text"]) for c, rs in state["chains"].items() for r in rs]
    return decl, jumps, rules


def render_rules(state, header=None):
    """The owned section as a complete iptables-restore file (golden files, fresh persistence)."""
    decl, jumps, rules = owned_lines(state)
    lines = ["# %s" % h for h in (header or [])]
    return "\n".join(lines + ["*filter"] + decl + jumps + rules + ["COMMIT"]) + "\n"


def render_listing(state):
    """Readable canonical listing of an owned state (for --diff); '' when nothing is there."""
    if state is None or (not state["chains"] and not state["jumps"]):
        return ""
    out = []
    for b, r in state["jumps"].items():
        rs = r if isinstance(r, list) else [r]
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
    chains = dict(sorted(chains.items()))
    return {"chains": chains, "jumps": jumps}


# ---------------------------------------------------------------------- compare

def _label(chain, rule):
    return "rule:%s: %s" % (chain, rule["text"])


def compare(desired, live):
    """-> Changes: rule ids, chain:<name> of the owned chains, jump:<built-in chain>."""
    live = live or {"chains": {}, "jumps": {}}
    changes = Changes(created=["chain:%s" % c for c in desired["chains"] if c not in live["chains"]],
                      removed=["chain:%s" % c for c in live["chains"] if c not in desired["chains"]])
    changes.add(**rule_changes(desired["chains"], live["chains"], lambda r: r["key"], _label).as_dict())
    # jumps: exactly one per desired built-in chain, the desired text, at position 1
    for chain, ljumps in live["jumps"].items():
        want = desired["jumps"].get(chain)
        good = [j for j in ljumps if want is not None and j["key"] == want["key"]]
        if want is None:
            changes.add(removed=["jump:%s" % chain])
        elif len(ljumps) > 1 or not good or good[0]["pos"] != 1:
            changes.add(updated=["jump:%s" % chain])
    changes.add(created=["jump:%s" % c for c in desired["jumps"] if c not in live["jumps"]])
    return changes


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

    def _restore(self, script, test, what):
        argv = [self.restore, "--noflush"] + (["--test"] if test else [])
        rc, out, err = self._run(argv, data=script)
        if rc != 0:
            raise IptError("%s: iptables-restore rejected the transaction (rc=%s), nothing was changed:\n%s\n"
                           "--- transaction (%s) ---\n%s" % (what, rc, (err or out).strip(), " ".join(argv),
                                                             numbered(script)))
        return out

    def check(self, script):
        return self._restore(script, True, "validation (iptables-restore --noflush --test)")

    def apply(self, script):
        return self._restore(script, False, "apply (iptables-restore --noflush)")


# ---------------------------------------------------------------------- backend

class IptBackend(Backend):
    """The iptables implementation of the backend contract (backend.py): owns the chains
    <prefix>-IN/-FWD/-OUT of the filter table and the jumps to them."""

    platform = "iptables"

    def __init__(self, name, ipt, prefix="OCS-EDGE", input_policy="drop", output_policy="accept",
                 allow_icmp=True, persist_path=""):
        super(IptBackend, self).__init__(name)
        self.chains = chain_names(prefix)
        self.ipt, self.prefix = ipt, prefix
        self.policies = (input_policy, output_policy, allow_icmp)
        self.persist_path = persist_path
        self.owned = "chains %s-IN/-FWD/-OUT" % prefix

    def desired(self, firewall):
        return desired_state(firewall, self.name, self.prefix, *self.policies)

    def read_live(self):
        live = self.ipt.read(self.prefix)[0]
        return live if (live["chains"] or live["jumps"]) else None

    def compare(self, desired, live):
        return compare(desired, live)

    def render(self, state):
        return render_listing(state)

    def validate(self, desired, live):
        self.ipt.check(render_transaction(desired, live))

    def apply(self, desired, live):
        self.ipt.apply(render_transaction(desired, live))

    def persist(self, desired):
        """The rules file with the owned section of ``desired`` (None: stripped of it)."""
        if not self.persist_path:
            return []
        old = read_text(self.persist_path)
        if desired is not None:
            new = merge_persist(old, desired, self.prefix)
        else:
            new = None if old is None else strip_persist(old, self.prefix)
        return [FileChange(self.persist_path, old, new, 0o640)] if old != new else []

    def owned_objects(self, live):
        return ["chain:%s" % c for c in live["chains"]] + ["jump:%s" % j for j in live["jumps"]]

    def remove(self, live):
        removal = render_removal(live)
        self.ipt.check(removal)
        self.ipt.apply(removal)

    def extras(self, desired, live):
        out = {"chains": sorted(self.chains.values()), "persist_path": self.persist_path or ""}
        if desired is None:
            out["transaction"] = render_removal(live) if live is not None else ""
        else:
            out["rules"] = render_rules(desired)
            out["transaction"] = render_transaction(desired, live) if compare(desired, live).changed else ""
        return out
