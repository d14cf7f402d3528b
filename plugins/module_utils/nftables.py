# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables backend of ocs.edge_firewall: FIREWALL (docs/policy-model.md) -> one nft table.

The collection owns one table (default ``inet ocs_edge``) and manages it as a whole:

* :func:`desired_table` turns a FIREWALL into a normalised table (chains + rules);
* :func:`render_script` turns that into one nft script that deletes and re-creates the
  table in one transaction (``table X {}`` + ``delete table X`` + ``table X {...}``), so
  it loads whether or not the table exists and never touches any other table;
* :func:`parse_live` turns ``nft -j list table`` output into the same normalised form;
* :func:`compare` lists the rules/chains created, removed and updated;
* :class:`Nft` runs nft (validate with ``nft -c -f``, apply with ``nft -f``).

Normalised rule: ``{"chain", "matches": [(key, op, value)], "stmts": [text], "verdict",
"comment"}``. Address and port values are kept as merged integer intervals, so
``{10.0.0.0/25, 10.0.0.128/25}`` and ``10.0.0.0/24`` compare equal (nft merges interval
sets itself), while any real change of an address or a port is a difference.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import ipaddress
import json
import os
import re
import tempfile
from collections import Counter

FAMILY = "inet"
COMMENT_MAX = 128          # NFTNL_UDATA_COMMENT_MAXLEN: nft refuses longer comments
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}\*?$")   # IFNAMSIZ 16 incl. NUL
TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
PROTOCOLS = ("tcp", "udp")
ADDR_KEYS = ("ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr")
PORT_KEYS = ("tcp sport", "tcp dport", "udp sport", "udp dport", "th sport", "th dport")
FLAG_KEYS = ("ct state", "ct status")          # rendered a,b (bitmask match, op "in")

BASE_COMMENTS = {
    "lo": "ocs base: loopback",
    "est": "ocs base: established,related (replies of allowed connections)",
    "inv": "ocs base: conntrack invalid",
    "mgmt": "ocs management: controller/SSH to this firewall (ocs_management_networks)",
    "echo": "ocs base: icmp echo-request",
    "nd": "ocs base: icmpv6 neighbour discovery and echo-request",
}
ICMPV6_TYPES = ("echo-request", "nd-neighbor-solicit", "nd-neighbor-advert",
                "nd-router-solicit", "nd-router-advert")


class NftError(Exception):
    """A rule set that cannot be rendered/applied; the message names firewall and parameter."""


# --------------------------------------------------------------------------- values

def _addr_interval(text):
    net = ipaddress.ip_network(text, strict=False)
    return net.version, int(net.network_address), int(net.broadcast_address)


def _merge(intervals):
    """Merge overlapping/adjacent (lo, hi) integer intervals (per family for addresses)."""
    out = []
    for item in sorted(intervals):
        if out and item[:-2] == out[-1][:-2] and item[-2] <= out[-1][-1] + 1:
            if item[-1] > out[-1][-1]:
                out[-1] = out[-1][:-1] + (item[-1],)
        else:
            out.append(tuple(item))
    return tuple(out)


def _addr_text(interval):
    version, lo, hi = interval
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    nets = list(ipaddress.summarize_address_range(cls(lo), cls(hi)))
    return ["%s" % n.network_address if n.num_addresses == 1 else "%s" % n for n in nets]


def _port_text(interval):
    lo, hi = interval
    return "%d" % lo if lo == hi else "%d-%d" % (lo, hi)


def _elements(key, value):
    """Display elements of a canonical value."""
    if key in ADDR_KEYS:
        return [t for iv in value for t in _addr_text(iv)]
    if key in PORT_KEYS:
        return [_port_text(iv) for iv in value]
    return list(value)


def render_value(key, value, elems=None):
    elems = list(elems) if elems else _elements(key, value)
    if key in FLAG_KEYS:
        return ",".join(elems)
    if len(elems) == 1:
        return elems[0]
    return "{ %s }" % ", ".join(elems)


def render_match(match):
    """match = (key, op, canonical value[, display elements]) -> nft text."""
    key, op, value = match[:3]
    display = match[3] if len(match) > 3 and key in ADDR_KEYS + PORT_KEYS else None
    text = render_value(key, value, display)
    if key in ("meta iifname", "meta oifname"):
        key = key[5:]
        text = render_value(key, value, ['"%s"' % v for v in value])
    if op in ("==", "in"):
        return "%s %s" % (key, text)
    return "%s %s %s" % (key, op, text)


def render_rule(rule):
    parts = [render_match(m) for m in rule["matches"]] + list(rule["stmts"])
    if rule["verdict"]:
        parts.append(rule["verdict"])
    if rule.get("comment") is not None:
        parts.append('comment "%s"' % rule["comment"])
    return " ".join(parts)


def rule_key(rule):
    """What makes two rules equal: chain, the set of matches, statements, verdict, comment."""
    return (rule["chain"], tuple(sorted((m[:3] for m in rule["matches"]), key=repr)), tuple(rule["stmts"]),
            rule["verdict"], rule.get("comment"))


# ------------------------------------------------------------------ desired state

def _where(name, path):
    return "firewall %s: %s" % (name or "?", path)


def _addresses(values, name, path):
    """Validate a PFRULE/management address list -> {4: [networks], 6: [networks]} or None."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values:
        raise NftError("%s must be null (any) or a non-empty list of IP addresses/CIDRs, got %r"
                       % (_where(name, path), values))
    out = {4: [], 6: []}
    for i, val in enumerate(values):
        try:
            net = ipaddress.ip_network(str(val).strip(), strict=True)
        except ValueError as exc:
            raise NftError("%s[%d]: %r is not a valid IP address or network (%s)"
                           % (_where(name, path), i, val, exc))
        out[net.version].append(net)
    # Drop duplicates and addresses inside another listed network; keep the rest as written
    # (collapse_addresses would turn two neighbouring servers into a /31, hard to read).
    result = {}
    for version, nets in out.items():
        nets = sorted(set(nets))
        kept = [n for n in nets if not any(o != n and n.subnet_of(o) for o in nets)]
        if kept:
            result[version] = kept
    return result


def _ports(values, name, path):
    if values is None:
        return None
    if isinstance(values, (str, int)):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values:
        raise NftError("%s must be null (any) or a non-empty list of ports 'N' or 'N-M', got %r"
                       % (_where(name, path), values))
    out = []
    for i, val in enumerate(values):
        m = re.match(r"^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$", str(val)) if not isinstance(val, bool) else None
        lo = int(m.group(1)) if m else 0
        hi = int(m.group(2)) if m and m.group(2) else lo
        if not m or not 1 <= lo <= hi <= 65535:
            raise NftError("%s[%d]: %r is not a port 1-65535 or a range N-M with N <= M"
                           % (_where(name, path), i, val))
        out.append((lo, hi))
    return _merge(out), tuple(_port_text(p) for p in sorted(set(out)))


def _net_intervals(nets):
    return _merge(_addr_interval(str(n)) for n in nets)


def _family_pairs(src, dst, name, path):
    """Split src/dst address lists by family -> [(family, src_nets|None, dst_nets|None)]."""
    if src is None and dst is None:
        return [(None, None, None)]
    out = []
    for version, fam in ((4, "ip"), (6, "ip6")):
        s = None if src is None else src.get(version)
        d = None if dst is None else dst.get(version)
        if (src is not None and s is None) or (dst is not None and d is None):
            continue
        out.append((fam, s, d))
    if not out:
        raise NftError("%s: source and destination addresses have no IP version in common "
                       "(IPv4 to IPv6 cannot match one packet)" % _where(name, path))
    return out


def _net_text(nets):
    return tuple("%s" % n.network_address if n.num_addresses == 1 else "%s" % n for n in nets)


def _addr_matches(fam, src, dst):
    m = []
    if src is not None:
        m.append(("%s saddr" % fam, "==", _net_intervals(src), _net_text(src)))
    if dst is not None:
        m.append(("%s daddr" % fam, "==", _net_intervals(dst), _net_text(dst)))
    return m


def _rule(chain, matches, verdict, comment, name, path):
    if comment is None or not str(comment).strip():
        raise NftError("%s: every rule needs a comment (seed table, figure, role)" % _where(name, path))
    comment = str(comment)
    if '"' in comment or "\n" in comment or "\\" in comment:
        raise NftError("%s: comment %r contains a double quote, backslash or newline, which nft "
                       "comments cannot hold" % (_where(name, path), comment))
    if len(comment.encode("utf-8")) > COMMENT_MAX:
        raise NftError("%s: comment is %d bytes, nftables allows at most %d: %r"
                       % (_where(name, path), len(comment.encode("utf-8")), COMMENT_MAX, comment))
    return {"chain": chain, "matches": list(matches), "stmts": [], "verdict": verdict, "comment": comment}


def _chain(hook, policy):
    return {"type": "filter", "hook": hook, "prio": 0, "policy": policy, "rules": []}


def _base_rules(chain, management, allow_icmp, name):
    """Loopback, conntrack, management and ICMP rules of an input chain."""
    rules = [
        _rule(chain, [("meta iifname", "==", ("lo",))], "accept", BASE_COMMENTS["lo"], name, chain),
        _rule(chain, [("ct state", "in", ("established", "related"))], "accept", BASE_COMMENTS["est"], name, chain),
        _rule(chain, [("ct state", "in", ("invalid",))], "drop", BASE_COMMENTS["inv"], name, chain),
    ]
    rules.extend(_management_rules(chain, management, name))
    if allow_icmp:
        rules.append(_rule(chain, [("icmp type", "==", ("echo-request",))], "accept",
                           BASE_COMMENTS["echo"], name, chain))
    # IPv6 does not work at all without neighbour discovery; always allowed on input.
    rules.append(_rule(chain, [("icmpv6 type", "==", tuple(sorted(ICMPV6_TYPES if allow_icmp else ICMPV6_TYPES[1:])))],
                       "accept", BASE_COMMENTS["nd"], name, chain))
    return rules


def _management_rules(chain, management, name):
    if not isinstance(management, dict):
        raise NftError("%s must be a dict {sources: [...], ports: [...]}" % _where(name, "management"))
    sources = management.get("sources")
    sources = _addresses(sources, name, "management.sources") if sources else None
    if not sources:
        raise NftError("%s is empty: the rule set must always let the management network reach "
                       "the firewall (set ocs_management_networks)" % _where(name, "management.sources"))
    ports, ports_text = _ports(management.get("ports") or ["22"], name, "management.ports")
    out = []
    for fam, src, _dst in _family_pairs(sources, None, name, "management.sources"):
        out.append(_rule(chain, _addr_matches(fam, src, None) + [("tcp dport", "==", ports, ports_text)], "accept",
                         BASE_COMMENTS["mgmt"], name, "management"))
    return out


def pfrule_rules(pfrule, index, mode, interfaces, name):
    """One PFRULE -> normalised rule(s) (two when it mixes IPv4 and IPv6 addresses)."""
    path = "rules[%d]" % index
    if not isinstance(pfrule, dict):
        raise NftError("%s must be a dict (PFRULE), got %r" % (_where(name, path), pfrule))
    rid = pfrule.get("id", "?")
    path = "rules[%d] (%s)" % (index, rid)
    chain = pfrule.get("chain") or ("forward" if mode == "network" else None)
    allowed = ("forward",) if mode == "network" else ("input", "output")
    if chain not in allowed:
        raise NftError("%s.chain: %r is not valid in %s mode (expected %s)"
                       % (_where(name, path), chain, mode, " or ".join(allowed)))
    proto = pfrule.get("protocol")
    if proto not in PROTOCOLS:
        raise NftError("%s.protocol: %r is not supported by the nftables backend (tcp or udp)"
                       % (_where(name, path), proto))
    src = _addresses(pfrule.get("src"), name, path + ".src")
    dst = _addresses(pfrule.get("dst"), name, path + ".dst")
    sport = _ports(pfrule.get("sport"), name, path + ".sport")
    dport = _ports(pfrule.get("dport"), name, path + ".dport")
    head = []
    if mode == "network" and interfaces:
        for zone_key, meta in (("src_zone", "meta iifname"), ("dst_zone", "meta oifname")):
            ifname = interfaces.get(pfrule.get(zone_key)) if pfrule.get(zone_key) else None
            if ifname:
                if not IFNAME_RE.match(str(ifname)):
                    raise NftError("%s: interface %r is not a valid Linux interface name (max 15 chars)"
                                   % (_where(name, "interfaces.%s" % pfrule.get(zone_key)), ifname))
                head.append((meta, "==", (str(ifname),)))
    tail = []
    if sport is None and dport is None:
        tail.append(("meta l4proto", "==", (proto,)))
    if sport is not None:
        tail.append(("%s sport" % proto, "==") + sport)
    if dport is not None:
        tail.append(("%s dport" % proto, "==") + dport)
    out = []
    for fam, s, d in _family_pairs(src, dst, name, path):
        out.append(_rule(chain, head + _addr_matches(fam, s, d) + tail, "accept",
                         pfrule.get("comment"), name, path + ".comment"))
    return out


def desired_table(firewall, name=None, input_policy="drop", output_policy="accept", allow_icmp=True):
    """FIREWALL dict -> normalised table {"chains": {name: chain}, "objects": []}.

    network mode: chain input (policy ``input_policy``; lo, established, management, ICMP) and
    chain forward (policy drop; established accepted, invalid dropped, one rule per PFRULE).
    host mode: chain input (policy drop; as above + PFRULEs of chain input) and chain output
    (policy ``output_policy``; lo + established, then PFRULEs of chain output).
    """
    if not isinstance(firewall, dict):
        raise NftError("%s must be a dict (FIREWALL of docs/policy-model.md)" % _where(name, "firewall"))
    platform = firewall.get("platform", "nftables")
    if platform != "nftables":
        raise NftError("%s: platform is %r; this module only enforces nftables firewalls"
                       % (_where(name, "firewall.platform"), platform))
    mode = firewall.get("mode", "network")
    if mode not in ("network", "host"):
        raise NftError("%s: %r is not network or host" % (_where(name, "mode"), mode))
    for pol, var in ((input_policy, "input_policy"), (output_policy, "output_policy")):
        if pol not in ("accept", "drop"):
            raise NftError("%s: %r is not accept or drop" % (_where(name, var), pol))
    interfaces = firewall.get("interfaces") or {}
    if not isinstance(interfaces, dict):
        raise NftError("%s must be a dict zone -> interface name" % _where(name, "interfaces"))
    rules = firewall.get("rules")
    if rules is None:
        rules = []
    if not isinstance(rules, list):
        raise NftError("%s must be a list of PFRULE dicts" % _where(name, "rules"))
    management = firewall.get("management")
    if management is None:
        raise NftError("%s is missing: the management network must always reach the firewall"
                       % _where(name, "management"))

    chains = {}
    if mode == "network":
        chains["input"] = _chain("input", input_policy)
        chains["input"]["rules"] = _base_rules("input", management, allow_icmp, name)
        chains["forward"] = _chain("forward", "drop")
        chains["forward"]["rules"] = [
            _rule("forward", [("ct state", "in", ("established", "related"))], "accept", BASE_COMMENTS["est"], name, "forward"),
            _rule("forward", [("ct state", "in", ("invalid",))], "drop", BASE_COMMENTS["inv"], name, "forward"),
        ]
    else:
        chains["input"] = _chain("input", "drop")
        chains["input"]["rules"] = _base_rules("input", management, allow_icmp, name)
        chains["output"] = _chain("output", output_policy)
        chains["output"]["rules"] = [
            _rule("output", [("meta oifname", "==", ("lo",))], "accept", BASE_COMMENTS["lo"], name, "output"),
            _rule("output", [("ct state", "in", ("established", "related"))], "accept", BASE_COMMENTS["est"], name, "output"),
        ]
    for i, pfrule in enumerate(rules):
        for rule in pfrule_rules(pfrule, i, mode, interfaces, name):
            chains[rule["chain"]]["rules"].append(rule)
    return {"chains": chains, "objects": []}


# ------------------------------------------------------------------------ render

def chain_header(chain):
    if chain.get("hook") is None:
        return None
    return "type %s hook %s priority %s; policy %s;" % (
        chain["type"], chain["hook"], "filter" if chain["prio"] == 0 else chain["prio"], chain["policy"])


def render_script(table_state, table="ocs_edge", header=None):
    """The nft script that replaces table inet <table> atomically (and loads when it is absent)."""
    if not TABLE_RE.match(table or ""):
        raise NftError("table: %r is not a valid nft table name (letter, then letters/digits/_)" % (table,))
    lines = ["#!/usr/sbin/nft -f"]
    for h in (header or []):
        lines.append("# %s" % h)
    lines += [
        "# One transaction: create the table if absent, delete it, re-create it in full.",
        "table %s %s {}" % (FAMILY, table),
        "delete table %s %s" % (FAMILY, table),
        "table %s %s {" % (FAMILY, table),
    ]
    first = True
    for cname, chain in table_state["chains"].items():
        if not first:
            lines.append("")
        first = False
        lines.append("\tchain %s {" % cname)
        head = chain_header(chain)
        if head:
            lines.append("\t\t%s" % head)
        for rule in chain["rules"]:
            lines.append("\t\t%s" % render_rule(rule))
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_listing(table_state, table="ocs_edge"):
    """Readable, canonical listing of a normalised table (for --diff); '' when absent."""
    if table_state is None:
        return ""
    lines = ["table %s %s {" % (FAMILY, table)]
    for cname, chain in table_state["chains"].items():
        lines.append("\tchain %s {" % cname)
        head = chain_header(chain)
        if head:
            lines.append("\t\t%s" % head)
        for rule in chain["rules"]:
            lines.append("\t\t%s" % render_rule(rule))
        lines.append("\t}")
    for obj in table_state.get("objects", []):
        lines.append("\t%s" % obj)
    lines.append("}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- parse

def _left_key(left):
    if isinstance(left, dict):
        if "payload" in left:
            p = left["payload"]
            if "protocol" in p:
                return "%s %s" % (p["protocol"], p["field"])
            return "@%s,%s,%s" % (p.get("base"), p.get("offset"), p.get("len"))
        if "meta" in left:
            return "meta %s" % left["meta"]["key"]
        if "ct" in left:
            ct = left["ct"]
            return "ct %s%s" % ((ct["dir"] + " ") if ct.get("dir") else "", ct["key"])
    return json.dumps(left, sort_keys=True)


def _right_elems(right):
    if isinstance(right, dict) and "set" in right:
        return list(right["set"])
    if isinstance(right, list):
        return list(right)
    return [right]


def _canon_value(key, right):
    elems = _right_elems(right)
    if key in ADDR_KEYS:
        ivs = []
        for e in elems:
            if isinstance(e, dict) and "prefix" in e:
                ivs.append(_addr_interval("%s/%s" % (e["prefix"]["addr"], e["prefix"]["len"])))
            elif isinstance(e, dict) and "range" in e:
                lo, hi = (ipaddress.ip_address(x) for x in e["range"])
                ivs.append((lo.version, int(lo), int(hi)))
            elif isinstance(e, str):
                ivs.append(_addr_interval(e))
            else:
                return None
        return _merge(ivs)
    if key in PORT_KEYS:
        ivs = []
        for e in elems:
            if isinstance(e, dict) and "range" in e:
                ivs.append((int(e["range"][0]), int(e["range"][1])))
            elif isinstance(e, int):
                ivs.append((e, e))
            else:
                return None
        return _merge(ivs)
    out = []
    for e in elems:
        out.append(e if isinstance(e, str) else json.dumps(e, sort_keys=True))
    return tuple(sorted(set(out)))


def _display(right):
    out = []
    for e in _right_elems(right):
        if isinstance(e, dict) and "prefix" in e:
            out.append("%s/%s" % (e["prefix"]["addr"], e["prefix"]["len"]))
        elif isinstance(e, dict) and "range" in e:
            out.append("%s-%s" % tuple(e["range"]))
        elif isinstance(e, (str, int)):
            out.append("%s" % e)
        else:
            out.append(json.dumps(e, sort_keys=True))
    return tuple(out)


def _stmt_text(stmt):
    (name, body), = stmt.items()
    if name == "counter":
        return "counter"
    if name == "log" and isinstance(body, dict) and "prefix" in body:
        return 'log prefix "%s"' % body["prefix"]
    if body is None:
        return name
    return "%s %s" % (name, json.dumps(body, sort_keys=True))


VERDICTS = ("accept", "drop", "reject", "return", "continue", "queue")


def parse_rule(obj):
    """One JSON rule object -> normalised rule (anything unknown kept as text, never dropped)."""
    rule = {"chain": obj["chain"], "matches": [], "stmts": [], "verdict": None,
            "comment": obj.get("comment"), "handle": obj.get("handle")}
    for expr in obj.get("expr", []):
        if "match" in expr:
            m = expr["match"]
            key = _left_key(m["left"])
            value = _canon_value(key, m["right"])
            if value is None:
                key, value = "%s %s" % (key, json.dumps(m["right"], sort_keys=True)), ()
            rule["matches"].append((key, m.get("op", "=="), value, _display(m["right"])))
        elif len(expr) == 1 and next(iter(expr)) in VERDICTS and rule["verdict"] is None:
            name = next(iter(expr))
            rule["verdict"] = name if expr[name] is None else _stmt_text(expr)
        elif "jump" in expr or "goto" in expr:
            (name, body), = expr.items()
            rule["verdict"] = "%s %s" % (name, body.get("target"))
        else:
            rule["stmts"].append(_stmt_text(expr))
    return rule


def parse_live(document, table="ocs_edge"):
    """``nft -j list table inet <table>`` (parsed JSON) -> normalised table, None if absent."""
    items = document.get("nftables", []) if isinstance(document, dict) else []
    found = False
    chains = {}
    objects = []
    for item in items:
        (kind, body), = item.items()
        if kind == "metainfo":
            continue
        if body.get("family", FAMILY) != FAMILY:
            continue
        tname = body.get("name") if kind == "table" else body.get("table")
        if tname != table:
            continue
        if kind == "table":
            found = True
            flags = body.get("flags")
            if flags:
                objects.append("table flags %s" % ",".join(flags if isinstance(flags, list) else [flags]))
        elif kind == "chain":
            chains[body["name"]] = {"type": body.get("type"), "hook": body.get("hook"),
                                    "prio": body.get("prio"), "policy": body.get("policy"), "rules": []}
        elif kind == "rule":
            rule = parse_rule(body)
            chains.setdefault(rule["chain"], {"type": None, "hook": None, "prio": None,
                                              "policy": None, "rules": []})["rules"].append(rule)
        else:
            objects.append("%s %s" % (kind, body.get("name", json.dumps(body, sort_keys=True))))
    if not found:
        return None
    return {"chains": chains, "objects": objects}


def live_tables(document):
    """``nft -j list tables`` -> set of (family, name)."""
    out = set()
    for item in document.get("nftables", []):
        if "table" in item:
            out.add((item["table"]["family"], item["table"]["name"]))
    return out


# ----------------------------------------------------------------------- compare

def _chain_desc(name, chain):
    head = chain_header(chain)
    return "chain %s (%s)" % (name, head.rstrip(";")) if head else "chain %s (regular chain)" % name


def compare(desired, live):
    """-> {"created": [...], "removed": [...], "updated": [...], "changed": bool}."""
    created, removed, updated = [], [], []
    live = live or None
    if live is None:
        updated.append("table %s created" % FAMILY)
        live = {"chains": {}, "objects": []}
    for cname, chain in desired["chains"].items():
        lchain = live["chains"].get(cname)
        if lchain is None:
            created.append(_chain_desc(cname, chain))
            created.extend("%s: %s" % (cname, render_rule(r)) for r in chain["rules"])
            continue
        for attr in ("type", "hook", "prio", "policy"):
            if chain[attr] != lchain.get(attr):
                updated.append("chain %s: %s %s -> %s" % (cname, attr, lchain.get(attr), chain[attr]))
        want = Counter(rule_key(r) for r in chain["rules"])
        have = Counter(rule_key(r) for r in lchain["rules"])
        extra = have - want
        missing = want - have
        for r in lchain["rules"]:
            k = rule_key(r)
            if extra.get(k):
                extra[k] -= 1
                removed.append("%s: %s" % (cname, render_rule(r)))
        for r in chain["rules"]:
            k = rule_key(r)
            if missing.get(k):
                missing[k] -= 1
                created.append("%s: %s" % (cname, render_rule(r)))
        if not (have - want) and not (want - have):
            if [rule_key(r) for r in chain["rules"]] != [rule_key(r) for r in lchain["rules"]]:
                updated.append("chain %s: rule order restored" % cname)
    for cname, lchain in live["chains"].items():
        if cname not in desired["chains"]:
            removed.append(_chain_desc(cname, lchain))
            removed.extend("%s: %s" % (cname, render_rule(r)) for r in lchain["rules"])
    for obj in live.get("objects", []):
        removed.append(obj)
    return {"created": created, "removed": removed, "updated": updated,
            "changed": bool(created or removed or updated)}


def unified(before, after, before_name="live", after_name="desired"):
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                        before_name, after_name))


# ------------------------------------------------------------------- persistence

def include_line(persist_path):
    return 'include "%s"' % persist_path


def conf_with_include(conf_text, persist_path, table="ocs_edge"):
    """Return nftables.conf text that includes persist_path (unchanged text if it already does)."""
    line = include_line(persist_path)
    if conf_text is not None and any(l.strip() == line for l in conf_text.splitlines()):
        return conf_text
    text = conf_text if conf_text is not None else "#!/usr/sbin/nft -f\n"
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "# ocs.edge_firewall: table %s %s (managed, do not remove)\n%s\n" % (FAMILY, table, line)


def conf_without_include(conf_text, persist_path, table="ocs_edge"):
    line = include_line(persist_path)
    marker = "# ocs.edge_firewall: table %s %s (managed, do not remove)" % (FAMILY, table)
    keep = [l for l in conf_text.splitlines(True) if l.strip() not in (line, marker)]
    return "".join(keep)


def read_text(path):
    try:
        with open(path) as fh:
            return fh.read()
    except (IOError, OSError):
        return None


def write_atomic(path, text, mode=0o644):
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".ocs_edge.", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -------------------------------------------------------------------------- nft

class Nft:
    """Runs nft. ``run(argv) -> (rc, stdout, stderr)`` (module.run_command or subprocess)."""

    def __init__(self, run, nft="nft"):
        self._run = run
        self.nft = nft

    def _call(self, args, what):
        rc, out, err = self._run([self.nft] + args)
        if rc != 0:
            raise NftError("%s failed (nft %s, rc=%s): %s" % (what, " ".join(args), rc, (err or out).strip()))
        return out

    def list_tables(self):
        return live_tables(json.loads(self._call(["-j", "list", "tables"], "listing tables") or "{}"))

    def read_table(self, table):
        """Live table in normalised form, or None when it does not exist."""
        if (FAMILY, table) not in self.list_tables():
            return None
        out = self._call(["-j", "list", "table", FAMILY, table], "reading table %s %s" % (FAMILY, table))
        return parse_live(json.loads(out), table)

    def _with_file(self, script, args, what):
        fd, path = tempfile.mkstemp(prefix="ocs_edge.", suffix=".nft")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(script)
            rc, out, err = self._run([self.nft] + args + ["-f", path])
        finally:
            os.unlink(path)
        if rc != 0:
            raise NftError("%s: nft rejected the rule set (rc=%s), nothing was changed:\n%s\n--- script ---\n%s"
                           % (what, rc, (err or out).strip(), _numbered(script)))
        return out

    def check(self, script):
        return self._with_file(script, ["-c"], "validation (nft -c -f)")

    def apply(self, script):
        return self._with_file(script, [], "apply (nft -f)")

    def delete_table(self, table):
        return self._call(["delete", "table", FAMILY, table], "deleting table %s %s" % (FAMILY, table))


def _numbered(script):
    return "\n".join("%4d  %s" % (i, l) for i, l in enumerate(script.splitlines(), 1))
