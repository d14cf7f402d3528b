# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What other software's netfilter rules do to the policy's flows, and NAT of A/V Edge addresses.

The collection only owns its table (nftables) or chains (iptables); everything else is left
alone. But on a hook every base chain of every table runs: ``iptables -P FORWARD DROP`` (what
dockerd does) in iptables-nft's ``ip filter`` drops every flow the policy allows, and a
masquerade in another table translates the A/V Edge's address although the page forbids it.
Neither can be vetoed from the owned table, so they are detected and reported by name:

* :func:`policy_flows` -- the flows a FIREWALL must let through (PFRULEs + management);
* :func:`chain_findings` -- per flow, the verdict of each foreign base chain on its hooks
  (rules followed into jumps; a match this code cannot evaluate makes a "may");
* :func:`av_edge_addresses` -- the addresses that must not be NATed;
* :func:`nft_nat_findings` / :func:`ipt_nat_findings` -- NAT rules that would translate them.

Relations of a rule to a set of flows: ALL (matches every flow of the set), NONE, SOME.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.ocs.edge_firewall.plugins.module_utils import nftables as nftlib

ALL, SOME, NONE = "all", "some", "none"
HOOKS = {"forward": ("prerouting", "forward", "postrouting"), "input": ("prerouting", "input"),
         "output": ("output", "postrouting")}
FAMILY_VERSIONS = {"inet": (4, 6), "ip": (4,), "ip6": (6,)}
NAT_SOURCE = ("masquerade", "snat")
NAT_DEST = ("dnat", "redirect")
MAX_DEPTH = 16


# ------------------------------------------------------------------------ flows

def _nets(values):
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    return [ipaddress.ip_network(str(v).strip(), strict=False) for v in values]


def _ports(values):
    if values is None:
        return None
    out = []
    for v in (values if isinstance(values, (list, tuple)) else [values]):
        lo, _ignored, hi = str(v).partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def policy_flows(firewall):
    """The flows the FIREWALL must let through: one per PFRULE (first packet, ct state new)
    and one for the management rule. Values None mean any."""
    interfaces = firewall.get("interfaces") or {}
    mode = firewall.get("mode", "network")
    flows = []
    for rule in firewall.get("rules") or []:
        flows.append({
            "id": rule.get("id", "?"), "hook": rule.get("chain") or "forward", "proto": rule.get("protocol"),
            "src": _nets(rule.get("src")), "dst": _nets(rule.get("dst")),
            "sport": _ports(rule.get("sport")), "dport": _ports(rule.get("dport")),
            "iif": interfaces.get(rule.get("src_zone")) if mode == "network" else None,
            "oif": interfaces.get(rule.get("dst_zone")) if mode == "network" else None})
    mgmt = firewall.get("management") or {}
    if mgmt.get("sources"):
        flows.append({"id": "management (ocs_management_networks -> ocs_management_ports)", "hook": "input",
                      "proto": "tcp", "src": _nets(mgmt["sources"]), "dst": None, "sport": None,
                      "dport": _ports(mgmt.get("ports") or ["22"]), "iif": None, "oif": None})
    return flows


def flow_text(flow):
    def addrs(v):
        return "any" if v is None else ",".join(str(n) for n in v)
    ranges = flow["dport"] or []
    ports = "any" if flow["dport"] is None else ",".join("%d" % a if a == b else "%d-%d" % (a, b) for a, b in ranges)
    return "%s (%s %s -> %s port %s)" % (flow["id"], flow["proto"] or "any", addrs(flow["src"]), addrs(flow["dst"]), ports)


# ------------------------------------------------------------------- relations

def _interval_relation(have, want):
    """``have``: the flow's intervals (None = any); ``want``: the rule's (merged). -> relation."""
    if want is None:
        return SOME
    if have is None:
        return SOME
    inside = all(any(w[:-2] == h[:-2] and w[-2] <= h[-2] and h[-1] <= w[-1] for w in want) for h in have)
    if inside:
        return ALL
    touch = any(w[:-2] == h[:-2] and w[-2] <= h[-1] and h[-2] <= w[-1] for w in want for h in have)
    return SOME if touch else NONE


def _flow_addr(flow, field, version=None):
    nets = flow[field]
    if nets is None:
        return None
    return [(n.version, int(n.network_address), int(n.broadcast_address)) for n in nets
            if version is None or n.version == version]


def _addr_relation(flow, key, value):
    version = 4 if key.startswith("ip ") else 6
    have = _flow_addr(flow, "src" if key.endswith("saddr") else "dst")
    if have is not None:
        if not any(h[0] == version for h in have):
            return NONE
        if any(h[0] != version for h in have):
            return SOME if _interval_relation([h for h in have if h[0] == version], value) != NONE else NONE
    return _interval_relation(have, value)


def _port_relation(flow, key, value):
    proto = key.split()[0]
    if proto in ("tcp", "udp") and flow["proto"] and flow["proto"] != proto:
        return NONE
    have = flow["sport" if key.endswith("sport") else "dport"]
    rel = _interval_relation(None if have is None else [tuple(p) for p in have], value)
    if proto in ("tcp", "udp") and flow["proto"] is None and rel != NONE:
        return SOME
    return rel


def _match_relation(flow, key, value):
    """Relation of one normalised nft match (op ==) to the flow set."""
    if value is None or value == ():
        return SOME
    if key in nftlib.ADDR_KEYS:
        return _addr_relation(flow, key, value)
    if key in nftlib.PORT_KEYS:
        return _port_relation(flow, key, value)
    if key in ("meta l4proto", "ip protocol", "ip6 nexthdr"):
        if flow["proto"] is None:
            return SOME
        return ALL if flow["proto"] in value else NONE
    if key in ("meta iifname", "meta oifname"):
        name = flow["iif" if key == "meta iifname" else "oif"]
        if name is None or any("*" in v for v in value):
            return SOME
        return ALL if name in value else NONE
    if key == "ct state":
        return ALL if "new" in value else NONE
    return SOME


def _invert(rel):
    return {ALL: NONE, NONE: ALL}.get(rel, SOME)


def rule_relation(rule, flow):
    """Relation of a parsed nft rule (nftables.parse_rule) to the flow set."""
    out = ALL
    for match in rule["matches"]:
        key, op, value = match[:3]
        rel = _match_relation(flow, key, value)
        if op == "!=":
            rel = _invert(rel)
        elif op not in ("==", "in"):
            rel = SOME
        if rel == NONE:
            return NONE
        if rel == SOME:
            out = SOME
    return out


# ---------------------------------------------------------------- base chains

def tables_of(items_by_table):
    """{(family, table): [JSON items]} -> {(family, table): {chain: {"head": chain JSON, "rules": [...]}}}."""
    out = {}
    for key, items in items_by_table.items():
        chains = out.setdefault(key, {})
        for item in items or []:
            if "chain" in item:
                chains.setdefault(item["chain"]["name"], {"rules": []})["head"] = item["chain"]
            elif "rule" in item:
                chains.setdefault(item["rule"]["chain"], {"rules": []})["rules"].append(item["rule"])
    return out


def _verdict(rule):
    verdict = rule["verdict"] or ""
    for stmt in rule["stmts"] + [verdict]:
        if stmt.startswith("reject") or (stmt.startswith("xt ") and '"REJECT"' in stmt):
            return "drop", None
    if verdict in ("accept", "drop", "return"):
        return verdict, None
    if verdict.startswith(("jump ", "goto ")):
        kind, target = verdict.split(" ", 1)
        return kind, target
    return None, None


def _walk(chains, cname, flow, depth=0):
    """-> (verdict accept|drop|None (falls through), decisive rule text, [(may-verdict, rule text)])."""
    maybes = []
    if depth > MAX_DEPTH or cname not in chains:
        return None, None, maybes
    for raw in chains[cname]["rules"]:
        rule = nftlib.parse_rule(raw)
        rel = rule_relation(rule, flow)
        if rel == NONE:
            continue
        kind, target = _verdict(rule)
        text = "chain %s: %s (handle %s)" % (cname, nftlib.render_rule(rule), raw.get("handle"))
        if kind in ("jump", "goto"):
            verdict, sub_text, sub_maybes = _walk(chains, target, flow, depth + 1)
            maybes.extend(sub_maybes)
            if verdict and rel == ALL:
                return verdict, sub_text, maybes
            if verdict:
                maybes.append((verdict, sub_text))
            continue
        if kind == "return" and rel == ALL:
            return None, None, maybes
        if kind in ("accept", "drop"):
            if rel == ALL:
                return kind, text, maybes
            maybes.append((kind, text))
    return None, None, maybes


def chain_findings(items_by_table, flows, owned=("inet", "ocs_edge")):
    """Foreign base chains on the flows' hooks -> {"drops": [msg], "may_drop": [msg], "accepts": [msg]}.

    One message per chain and deciding rule (or policy), listing the flows it decides. A chain's
    default policy accept is not reported (it changes nothing: this table still decides)."""
    found = {"drops": {}, "may_drop": {}, "accepts": {}}
    for (family, table), chains in sorted(tables_of(items_by_table).items()):
        if (family, table) == tuple(owned) or family not in FAMILY_VERSIONS:
            continue
        for cname, chain in sorted(chains.items()):
            head = chain.get("head") or {}
            if not head.get("hook") or head.get("type") == "nat":
                continue
            where = "table %s %s chain %s (hook %s priority %s policy %s)" % (
                family, table, cname, head["hook"], head.get("prio"), head.get("policy", "accept"))
            for flow in flows:
                if head["hook"] in HOOKS.get(flow["hook"], ()) and _family_sees(family, flow):
                    _judge(found, where, head.get("policy", "accept"), _walk(chains, cname, flow), flow)
    return {kind: [_message(key, texts) for key, texts in sorted(by.items())] for kind, by in found.items()}


def _judge(found, where, policy, walked, flow):
    verdict, text, maybes = walked
    if verdict is None and policy == "drop":
        kind = "may_drop" if any(v == "accept" for v, _t in maybes) else "drops"
        found[kind].setdefault((where, "policy drop", kind), []).append(flow_text(flow))
    elif verdict is not None:
        kind = "drops" if verdict == "drop" else "accepts"
        found[kind].setdefault((where, text, kind), []).append(flow_text(flow))
    for v, t in maybes:
        if v == "drop":
            found["may_drop"].setdefault((where, t, "may_drop"), []).append(flow_text(flow))


def _message(key, texts, shown=5):
    where, text, kind = key
    verb = {"drops": "drops", "may_drop": "may drop", "accepts": "accepts"}[kind]
    more = " and %d more" % (len(texts) - shown) if len(texts) > shown else ""
    return "%s: %s %s %d of the policy's flows: %s%s" % (where, text, verb, len(texts),
                                                         "; ".join(texts[:shown]), more)


def _family_sees(family, flow):
    versions = FAMILY_VERSIONS[family]
    for field in ("src", "dst"):
        if flow[field] is not None and not any(n.version in versions for n in flow[field]):
            return False
    return True


# ----------------------------------------------------------------------- NAT

def av_edge_addresses(firewall):
    """The addresses this firewall must not NAT: the A/V Edge's address on its side.

    From the policy's ``no_nat`` (docs/policy-model.md: [{"address", "roles"}], the entries with
    role av_edge are the page's minimum); for a FIREWALL without it (hand-written), derived from
    the PFRULEs of server_role av_edge (or an id/comment naming av_edge): the perimeter-side
    address (the page's local address, the A/V Edge's own). -> sorted list of ip_network."""
    if firewall.get("no_nat") is not None:
        addrs = [e["address"] if isinstance(e, dict) else e for e in firewall["no_nat"]
                 if not isinstance(e, dict) or "av_edge" in (e.get("roles") or [])]
        return sorted(set(_nets(addrs) or []), key=str)
    out = set()
    for rule in firewall.get("rules") or []:
        named = "av_edge" in " ".join(str(rule.get(k) or "") for k in ("server_role", "id", "comment"))
        if not named:
            continue
        for zone, field in (("src_zone", "src"), ("dst_zone", "dst")):
            if rule.get(zone) == "perimeter" and rule.get(field):
                out.update(_nets(rule[field]))
    return sorted(out, key=str)


def _nat_kind(rule, raw):
    """'source' (masquerade/snat), 'destination' (dnat/redirect) or None, and the target address."""
    for expr in raw.get("expr", []):
        if not isinstance(expr, dict) or len(expr) != 1:
            continue
        (name, body), = expr.items()
        if name == "xt" and isinstance(body, dict):
            name = str(body.get("name", "")).lower()
        if name in NAT_SOURCE:
            return "source", None
        if name in NAT_DEST:
            addr = body.get("addr") if isinstance(body, dict) else None
            return "destination", addr if isinstance(addr, str) else None
    return None, None


def _address_flow(net, field):
    flow = {"id": str(net), "hook": None, "proto": None, "src": None, "dst": None, "sport": None,
            "dport": None, "iif": None, "oif": None}
    flow[field] = [net]
    return flow


def nft_nat_findings(items_by_table, addresses):
    """NAT rules of any nft table that would translate one of ``addresses`` -> [message]."""
    out = []
    for (family, table), chains in sorted(tables_of(items_by_table).items()):
        if family not in FAMILY_VERSIONS:
            continue
        for cname, chain in sorted(chains.items()):
            for raw in chain["rules"]:
                rule = nftlib.parse_rule(raw)
                kind, target = _nat_kind(rule, raw)
                if kind is None:
                    continue
                for net in addresses:
                    field = "src" if kind == "source" else "dst"
                    flow = _address_flow(net, field)
                    hits = _family_sees(family, flow) and rule_relation(rule, flow) != NONE
                    if kind == "destination" and target and _same(target, net):
                        hits = True
                    if hits:
                        out.append("table %s %s chain %s: %s (handle %s) would translate the %s address %s "
                                   "of the A/V Edge" % (family, table, cname, nftlib.render_rule(rule),
                                                        raw.get("handle"), field == "src" and "source" or
                                                        "destination", net))
    return out


def _same(addr, net):
    try:
        return ipaddress.ip_address(addr.split(":")[0] if addr.count(":") == 1 else addr) in net
    except ValueError:
        return False


def _ipt_covers(value, net, negated):
    nets = [ipaddress.ip_network(v, strict=False) for v in value.split(",") if v and not v.startswith("?")]
    inside = any(net.subnet_of(n) for n in nets if n.version == net.version)
    overlap = any(net.overlaps(n) for n in nets if n.version == net.version)
    if negated:
        return not inside
    return overlap


def ipt_nat_findings(save_text, addresses):
    """Rules of ``iptables-save -t nat`` that would translate one of ``addresses`` -> [message]."""
    from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables as iptlib
    out = []
    in_nat = False
    for line in save_text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            in_nat = line == "*nat"
            continue
        if not in_nat:
            continue
        parsed = iptlib.parse_rule_line(line)
        if parsed is None:
            continue
        chain, rule = parsed[0], parsed[1]
        matches, target, _comment = rule["key"]
        tname = (target or "").split(" ")[0]
        kind = "src" if tname in ("MASQUERADE", "SNAT") else "dst" if tname in ("DNAT", "REDIRECT") else None
        if kind is None:
            continue
        for net in addresses:
            hits = True
            for key, value in matches:
                if key.lstrip("!") == kind:
                    hits = hits and _ipt_covers(value, net, key.startswith("!"))
            if kind == "dst" and "--to-destination" in (target or ""):
                dest = target.split("--to-destination", 1)[1].split()[0]
                hits = hits or _same(dest.split("-")[0], net)
            if hits:
                out.append("table nat chain %s: -A %s %s would translate the %s address %s of the A/V Edge"
                           % (chain, chain, rule["text"], "source" if kind == "src" else "destination", net))
    return out
