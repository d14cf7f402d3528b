# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a Linux firewall enforces, as flow rules the flow query can walk.

The backends read the live state (nftables: ``nft -j list table inet ocs_edge``, parsed by
``nftables.parse_live``; iptables: ``iptables-save -t filter``, parsed line by line by
``iptables.parse_rule_line``); this file turns it into one neutral form:

    {"platform", "hooks": {"forward": chain, "input": chain, "output": chain},
     "chains": {name: {"policy": "accept" | "drop" | None (not a base chain),
                       "rules": [FLOWRULE, ...]}}}

FLOWRULE, in chain order: ``id`` (the policy rule id from an ``ocs <id> ...`` comment, else
``base: ...``/``management``/``unmanaged: <comment or rule text>``), ``protocol`` (``tcp``,
``udp``, ``icmp``, None = any), ``src``/``dst`` (CIDR strings, None = any), ``sport``/``dport``
(``"N"``/``"N-M"`` strings, None = any), ``new`` (False when the rule only matches packets of
existing connections, so never a first packet), ``action`` (``accept``, ``drop``, ``reject``,
``jump <chain>``, ``return``, or the verdict text), ``iif``/``oif`` (``{"names", "negated"}``,
interface matches, judged against the firewall's zone interfaces when the policy names them;
``lo`` never carries a flow between hosts), ``interfaces`` (the same as text), ``unsupported`` (matches the flow query cannot judge; such a rule is
reported, never silently taken as matching) and ``text``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.ocs.edge_firewall.plugins.module_utils.pfsense_xml import is_managed_descr, managed_id

_OCS_ID = re.compile(r"^ocs ([a-z0-9][a-z0-9_.-]*-t\d+-f\d+-(?:in|out))\b")
HOOKS = ("forward", "input", "output")


def rule_id(comment, text):
    """The policy rule id a rule carries in its comment, or what else it is."""
    if comment:
        m = _OCS_ID.match(comment)
        if m:
            return m.group(1)
        if comment.startswith("ocs base:"):
            return "base: " + comment[len("ocs base:"):].strip()
        if comment.startswith("ocs management"):
            return "management"
        return "unmanaged: " + comment
    return "unmanaged: " + text


def _nets(intervals):
    """Merged (version, lo, hi) address intervals -> CIDR strings."""
    out = []
    for iv in intervals:
        version, lo, hi = iv if len(iv) == 3 else (4,) + tuple(iv)
        cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        out += [str(n) for n in ipaddress.summarize_address_range(cls(lo), cls(hi))]
    return out


def _port_strings(intervals):
    return ["%d" % lo if lo == hi else "%d-%d" % (lo, hi) for lo, hi in intervals]


def _flowrule(chain, rid, text):
    return {"id": rid, "chain": chain, "protocol": None, "src": None, "dst": None, "sport": None,
            "dport": None, "new": True, "action": None, "interfaces": [], "iif": None, "oif": None,
            "unsupported": [], "text": text}


# ----------------------------------------------------------------------------- nftables

def _nft_match(r, key, op, value, display=None):
    display = value if display is None else display
    words = key.split()
    if key in ("ip saddr", "ip6 saddr", "ip daddr", "ip6 daddr") and op == "==":
        r["src" if words[1] == "saddr" else "dst"] = _nets(value)
    elif len(words) == 2 and words[0] in ("tcp", "udp", "th") and words[1] in ("sport", "dport") and op == "==":
        if words[0] != "th":
            r["protocol"] = words[0]
        r[words[1]] = _port_strings(value)
    elif key in ("meta l4proto", "ip protocol") and op == "==" and len(value) == 1:
        r["protocol"] = value[0]
    elif key == "ct state" and op in ("==", "in"):
        r["new"] = "new" in value
    elif key == "ct state" and op == "!=":
        r["new"] = "new" not in value
    elif key in ("icmp type", "icmpv6 type"):
        r["protocol"] = "icmp"
    elif key in ("meta iifname", "meta oifname", "iifname", "oifname") and op in ("==", "!="):
        r["interfaces"].append("%s %s %s" % (key, op, ",".join(map(str, display))))
        r["iif" if "iif" in key else "oif"] = {"names": [str(v) for v in value], "negated": op == "!="}
    else:
        r["unsupported"].append("%s %s %s" % (key, op, ",".join(map(str, display))))


def nft_flow_rules(table_state, render_rule):
    """nftables.parse_live() output -> the neutral form (render_rule: nftables.render_rule)."""
    chains, hooks = {}, {}
    for name, chain in (table_state or {}).get("chains", {}).items():
        rules = []
        for rule in chain["rules"]:
            text = render_rule(rule)
            r = _flowrule(name, rule_id(rule.get("comment"), text), text)
            for match in rule["matches"]:
                _nft_match(r, *match)
            r["action"] = rule.get("verdict") or "continue"
            if rule.get("stmts"):
                r["unsupported"] += [s for s in rule["stmts"] if s not in ("counter",) and not s.startswith("log")]
            rules.append(r)
        chains[name] = {"policy": chain.get("policy") if chain.get("hook") else None, "rules": rules}
        if chain.get("hook") in HOOKS:
            hooks.setdefault(chain["hook"], name)
    return {"platform": "nftables", "hooks": hooks, "chains": chains}


# ----------------------------------------------------------------------------- iptables

def _ipt_match(r, name, value):
    neg = name.startswith("!")
    key = name.lstrip("!")
    if key in ("src", "dst") and not neg:
        r[key] = [str(ipaddress.ip_network(v, strict=False)) for v in value.split(",")]
    elif key == "proto" and not neg:
        r["protocol"] = value
    elif key in ("sport", "dport") and not neg and isinstance(value, tuple):
        r[key] = _port_strings(value)
    elif key == "ctstate":
        states = value.split(",")
        r["new"] = ("NEW" not in states) if neg else ("NEW" in states)
    elif key in ("in", "out"):
        r["interfaces"].append("%s%s %s" % ("! " if neg else "", key, value))
        r["iif" if key == "in" else "oif"] = {"names": [value], "negated": neg}
    elif key == "icmp-type" and r["protocol"] == "icmp":
        pass
    else:
        r["unsupported"].append("%s %s" % (name, value))


def _ipt_action(target):
    if not target:
        return "continue"
    word = target.split(" ")[0]
    if word in ("ACCEPT", "DROP", "REJECT", "RETURN"):
        return word.lower()
    if word == "goto":
        return "goto " + target.split(" ")[1]
    return "jump " + word


def ipt_flow_rules(save_text, parse_rule_line, table="filter"):
    """``iptables-save -t filter`` text -> the neutral form, every chain of the filter table
    (the built-in chains in order, with their jumps to the collection's chains; rules another
    tool inserted before the jump count, as they do in the kernel)."""
    chains, in_table = {}, False
    for raw in save_text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            in_table = line[1:] == table
        elif in_table and line.startswith(":"):
            name, policy = line[1:].split()[:2]
            chains[name] = {"policy": policy.lower() if policy != "-" else None, "rules": []}
        elif in_table and line.startswith("-A "):
            chain, rule = parse_rule_line(line)
            matches, target, comment = rule["key"]
            r = _flowrule(chain, rule_id(comment, rule["text"]), rule["text"])
            for name, value in matches:
                _ipt_match(r, name, value)
            r["action"] = _ipt_action(target)
            chains.setdefault(chain, {"policy": None, "rules": []})["rules"].append(r)
    hooks = {h: b for h, b in (("forward", "FORWARD"), ("input", "INPUT"), ("output", "OUTPUT")) if b in chains}
    return {"platform": "iptables", "hooks": hooks, "chains": chains}


# ----------------------------------------------------------------------------- pfSense

def _text(elem, tag):
    found = elem.find(tag)
    return (found.text or "") if found is not None else ""


def _aliases(root):
    out = {}
    aliases = root.find("aliases")
    for alias in (aliases.findall("alias") if aliases is not None else []):
        out[_text(alias, "name")] = (_text(alias, "type"), _text(alias, "address").split())
    return out


def _pf_end(end, aliases, r, which):
    """source/destination of a pfSense rule into r (addresses and ports)."""
    if end is None:
        return
    if end.find("not") is not None:
        r["unsupported"].append("%s: not" % which)
    addr = _text(end, "address")
    if end.find("network") is not None:
        r["unsupported"].append("%s: network %s (interface subnet)" % (which, _text(end, "network")))
    elif addr:
        values = aliases[addr][1] if addr in aliases else [addr]
        try:
            r["src" if which == "source" else "dst"] = [str(ipaddress.ip_network(v, strict=False)) for v in values]
        except ValueError:
            r["unsupported"].append("%s: address %s" % (which, addr))
    port = _text(end, "port")
    if port:
        values = aliases[port][1] if port in aliases else [port]
        r["sport" if which == "source" else "dport"] = [v.replace(":", "-") for v in values]


def _pf_rule(rule, aliases, chain):
    descr = _text(rule, "descr")
    r = _flowrule(chain, "", "%s %s" % (_text(rule, "type"), descr))
    if is_managed_descr(descr):
        r["id"] = managed_id(descr)
    else:
        r["id"] = "unmanaged: " + (descr or "tracker %s" % _text(rule, "tracker"))
    r["action"] = {"pass": "accept", "block": "drop", "reject": "reject"}.get(_text(rule, "type"), _text(rule, "type"))
    proto = _text(rule, "protocol")
    if proto in ("tcp", "udp"):
        r["protocol"] = proto
    elif proto in ("icmp",):
        r["protocol"] = "icmp"
    elif proto and proto != "tcp/udp":
        r["unsupported"].append("protocol %s" % proto)
    if _text(rule, "ipprotocol") == "inet6":
        r["unsupported"].append("IPv6 only")
    _pf_end(rule.find("source"), aliases, r, "source")
    _pf_end(rule.find("destination"), aliases, r, "destination")
    return r


def pfsense_flow_rules(root):
    """pfSense config.xml (pfsense.parse_config root) -> the neutral form: one chain per
    interface (the quick floating rules first, then the interface's rules, in order; what no
    rule passes is blocked), entered by the interface the first packet arrives on."""
    aliases = _aliases(root)
    filt = root.find("filter")
    rules = [x for x in (filt.findall("rule") if filt is not None else []) if x.find("disabled") is None]
    floating = [x for x in rules if x.find("floating") is not None]
    chains, interfaces = {}, sorted({_text(x, "interface") for x in rules if x.find("floating") is None})
    for iface in interfaces:
        mine = [x for x in floating if iface in _text(x, "interface").split(",") and x.find("quick") is not None]
        mine += [x for x in rules if x.find("floating") is None and _text(x, "interface") == iface]
        chains[iface] = {"policy": "drop", "rules": [_pf_rule(x, aliases, iface) for x in mine]}
    return {"platform": "pfsense", "hooks": {}, "interface_chains": {i: i for i in interfaces}, "chains": chains}
