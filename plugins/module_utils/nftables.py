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

import ipaddress
import json
import os
import re
import tempfile

from ansible_collections.ocs.edge_firewall.plugins.module_utils.backend import (
    Backend, Changes, FileChange, numbered, read_text, rule_changes,
)
from ansible_collections.ocs.edge_firewall.plugins.module_utils.platforms import PLATFORMS
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import (
    BASE_COMMENTS as _COMMON_COMMENTS, POLICIES, FirewallError, merge, parse_firewall, uncovered, where,
)

FAMILY = "inet"
COMMENT_MAX = PLATFORMS["nftables"].comment_max
TABLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")   # whole string (fullmatch)
ADDR_KEYS = ("ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr")
PORT_KEYS = ("tcp sport", "tcp dport", "udp sport", "udp dport", "th sport", "th dport")
FLAG_KEYS = ("ct state", "ct status")          # rendered a,b (bitmask match, op "in")

BASE_COMMENTS = dict(_COMMON_COMMENTS, nd="ocs base: icmpv6 neighbour discovery and echo-request")
ICMPV6_TYPES = ("echo-request", "nd-neighbor-solicit", "nd-neighbor-advert",
                "nd-router-solicit", "nd-router-advert")


class NftError(FirewallError):
    """A rule set that cannot be rendered/applied; the message names firewall and parameter."""


# --------------------------------------------------------------------------- values

def _addr_interval(text):
    net = ipaddress.ip_network(text, strict=False)
    return net.version, int(net.network_address), int(net.broadcast_address)


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

def _addresses(nets):
    """Parsed addresses (rules.Rule) -> {4: [networks], 6: [networks]} or None (any)."""
    if nets is None:
        return None
    result = {}
    for version in (4, 6):
        kept = uncovered([n for n in nets if n.version == version])
        if kept:
            result[version] = kept
    return result


def _ports(intervals):
    """Parsed ports -> (merged intervals, display texts 'N'/'N-M') or None (any)."""
    if intervals is None:
        return None
    return merge(intervals), tuple(_port_text(p) for p in sorted(set(intervals)))


def _net_intervals(nets):
    return merge(_addr_interval(str(n)) for n in nets)


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
                       "(IPv4 to IPv6 cannot match one packet)" % where(name, path))
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


def _rule(rid, chain, matches, verdict, comment):
    return {"id": rid, "chain": chain, "matches": list(matches), "stmts": [], "verdict": verdict,
            "comment": comment}


def _base(key, chain, matches, verdict="accept"):
    return _rule("base:%s" % key, chain, matches, verdict, BASE_COMMENTS[key])


def _chain(hook, policy):
    return {"type": "filter", "hook": hook, "prio": 0, "policy": policy, "rules": []}


def _base_rules(chain, management, allow_icmp, name):
    """Loopback, conntrack, management and ICMP rules of an input chain."""
    rules = [
        _base("lo", chain, [("meta iifname", "==", ("lo",))]),
        _base("est", chain, [("ct state", "in", ("established", "related"))]),
        _base("inv", chain, [("ct state", "in", ("invalid",))], "drop"),
    ]
    rules.extend(_management_rules(chain, management, name))
    if allow_icmp:
        rules.append(_base("echo", chain, [("icmp type", "==", ("echo-request",))]))
    # IPv6 does not work at all without neighbour discovery; always allowed on input.
    rules.append(_base("nd", chain, [("icmpv6 type", "==", tuple(sorted(ICMPV6_TYPES if allow_icmp
                                                                          else ICMPV6_TYPES[1:])))]))
    return rules


def _management_rules(chain, management, name):
    ports, ports_text = _ports(management["ports"])
    out = []
    for fam, src, _dst in _family_pairs(_addresses(management["sources"]), None, name, "management.sources"):
        out.append(_base("mgmt", chain, _addr_matches(fam, src, None) + [("tcp dport", "==", ports, ports_text)]))
    return out


def pfrule_rules(rule, index, mode, interfaces, name):
    """One parsed rule (rules.Rule) -> normalised rule(s) (two when it mixes IPv4 and IPv6)."""
    path = "rules[%d] (%s)" % (index, rule.id)
    sport, dport = _ports(rule.sport), _ports(rule.dport)
    head = []
    if mode == "network":
        for zone, meta in ((rule.src_zone, "meta iifname"), (rule.dst_zone, "meta oifname")):
            if zone and interfaces.get(zone):
                head.append((meta, "==", (interfaces[zone],)))
    tail = []
    if sport is None and dport is None:
        tail.append(("meta l4proto", "==", (rule.protocol,)))
    if sport is not None:
        tail.append(("%s sport" % rule.protocol, "==") + sport)
    if dport is not None:
        tail.append(("%s dport" % rule.protocol, "==") + dport)
    return [_rule(rule.id, rule.chain, head + _addr_matches(fam, s, d) + tail, "accept", rule.comment)
            for fam, s, d in _family_pairs(_addresses(rule.src), _addresses(rule.dst), name, path)]


def _policies(name, input_policy, output_policy):
    for pol, var in ((input_policy, "input_policy"), (output_policy, "output_policy")):
        if pol not in POLICIES:
            raise NftError("%s: %r is not accept or drop" % (where(name, var), pol))


def desired_table(firewall, name=None, input_policy="drop", output_policy="accept", allow_icmp=True):
    """FIREWALL dict -> normalised table {"chains": {name: chain}, "objects": []}.

    network mode: chain input (policy ``input_policy``; lo, established, management, ICMP) and
    chain forward (policy drop; established accepted, invalid dropped, one rule per PFRULE).
    host mode: chain input (policy drop; as above + PFRULEs of chain input) and chain output
    (policy ``output_policy``; lo + established, then PFRULEs of chain output).
    """
    _policies(name, input_policy, output_policy)
    fw = parse_firewall(firewall, name, "nftables")
    chains = {}
    if fw.mode == "network":
        chains["input"] = _chain("input", input_policy)
        chains["input"]["rules"] = _base_rules("input", fw.management, allow_icmp, name)
        chains["forward"] = _chain("forward", "drop")
        chains["forward"]["rules"] = [
            _base("est", "forward", [("ct state", "in", ("established", "related"))]),
            _base("inv", "forward", [("ct state", "in", ("invalid",))], "drop"),
        ]
    else:
        chains["input"] = _chain("input", "drop")
        chains["input"]["rules"] = _base_rules("input", fw.management, allow_icmp, name)
        chains["output"] = _chain("output", output_policy)
        chains["output"]["rules"] = [
            _base("lo", "output", [("meta oifname", "==", ("lo",))]),
            _base("est", "output", [("ct state", "in", ("established", "related"))]),
        ]
    for i, rule in enumerate(fw.rules):
        for native in pfrule_rules(rule, i, fw.mode, fw.interfaces, name):
            chains[native["chain"]]["rules"].append(native)
    return {"chains": chains, "objects": []}


# ------------------------------------------------------------------------ render

def chain_header(chain):
    if chain.get("hook") is None:
        return None
    return "type %s hook %s priority %s; policy %s;" % (
        chain["type"], chain["hook"], "filter" if chain["prio"] == 0 else chain["prio"], chain["policy"])


def render_script(table_state, table="ocs_edge", header=None):
    """The nft script that replaces table inet <table> atomically (and loads when it is absent)."""
    if not isinstance(table, str) or not TABLE_RE.fullmatch(table):
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
    for i, (cname, chain) in enumerate(table_state["chains"].items()):
        lines += ([""] if i else []) + _chain_lines(cname, chain)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _chain_lines(cname, chain):
    head = chain_header(chain)
    return (["\tchain %s {" % cname] + (["\t\t%s" % head] if head else [])
            + ["\t\t%s" % render_rule(rule) for rule in chain["rules"]] + ["\t}"])


def render_listing(table_state, table="ocs_edge"):
    """Readable, canonical listing of a normalised table (for --diff); '' when absent."""
    if table_state is None:
        return ""
    lines = ["table %s %s {" % (FAMILY, table)]
    for cname, chain in table_state["chains"].items():
        lines += _chain_lines(cname, chain)
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
        return merge(ivs)
    if key in PORT_KEYS:
        ivs = []
        for e in elems:
            if isinstance(e, dict) and "range" in e:
                ivs.append((int(e["range"][0]), int(e["range"][1])))
            elif isinstance(e, int):
                ivs.append((e, e))
            else:
                return None
        return merge(ivs)
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

CHAIN_ATTRS = ("type", "hook", "prio", "policy")


def _label(chain, rule):
    return "rule:%s: %s" % (chain, render_rule(rule))


def compare(desired, live, table="ocs_edge"):
    """-> Changes: rule ids, chain:<name>, <kind>:<name> of other objects, table:inet <table>."""
    changes = Changes()
    if live is None:
        changes.add(created=["table:%s %s" % (FAMILY, table)])
        live = {"chains": {}, "objects": []}
    for cname, chain in desired["chains"].items():
        lchain = live["chains"].get(cname)
        if lchain is None:
            changes.add(created=["chain:%s" % cname])
        elif any(chain[a] != lchain.get(a) for a in CHAIN_ATTRS):
            changes.add(updated=["chain:%s" % cname])
    changes.add(removed=["chain:%s" % c for c in live["chains"] if c not in desired["chains"]])
    changes.add(**rule_changes(
        dict((c, ch["rules"]) for c, ch in desired["chains"].items()),
        dict((c, ch["rules"]) for c, ch in live["chains"].items()), rule_key, _label).as_dict())
    for obj in live.get("objects", []):
        if obj.startswith("table flags"):
            changes.add(updated=["table:%s %s" % (FAMILY, table)])
        else:
            changes.add(removed=[obj.replace(" ", ":", 1)])
    return changes


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
                           % (what, rc, (err or out).strip(), numbered(script)))
        return out

    def check(self, script):
        return self._with_file(script, ["-c"], "validation (nft -c -f)")

    def apply(self, script):
        return self._with_file(script, [], "apply (nft -f)")

    def delete_table(self, table):
        return self._call(["delete", "table", FAMILY, table], "deleting table %s %s" % (FAMILY, table))



# ---------------------------------------------------------------------- backend

class NftBackend(Backend):
    """The nftables implementation of the backend contract (backend.py): owns table inet <table>."""

    platform = "nftables"

    def __init__(self, name, nft, table="ocs_edge", input_policy="drop", output_policy="accept",
                 allow_icmp=True, persist_path="", persist_conf=""):
        super(NftBackend, self).__init__(name)
        if not isinstance(table, str) or not TABLE_RE.fullmatch(table):
            raise NftError("%s: %r is not a valid nft table name" % (where(name, "table"), table))
        self.nft, self.table = nft, table
        self.policies = (input_policy, output_policy, allow_icmp)
        self.persist_path, self.persist_conf = persist_path, persist_conf
        self.owned = "table:%s %s" % (FAMILY, table)

    def desired(self, firewall):
        return desired_table(firewall, self.name, *self.policies)

    def read_live(self):
        return self.nft.read_table(self.table)

    def compare(self, desired, live):
        return compare(desired, live, self.table)

    def render(self, state):
        return render_listing(state, self.table)

    def script(self, desired):
        return render_script(desired, self.table, header=[
            "Managed by ocs.edge_firewall (module nft_ruleset) for firewall %s." % self.name,
            "Do not edit: the next run puts table %s %s back as the policy says." % (FAMILY, self.table),
        ])

    def validate(self, desired, live):
        self.nft.check(self.script(desired))

    def apply(self, desired, live):
        self.nft.apply(self.script(desired))

    def persist(self, desired):
        """The persisted script and the include line in the boot file (desired None: neither)."""
        if not self.persist_path:
            return []
        script = None if desired is None else self.script(desired)
        files = [FileChange(self.persist_path, read_text(self.persist_path), script)]
        if self.persist_conf:
            old = read_text(self.persist_conf)
            if desired is not None:
                new = conf_with_include(old, self.persist_path, self.table)
            else:
                new = None if old is None else conf_without_include(old, self.persist_path, self.table)
            files.append(FileChange(self.persist_conf, old, new, 0o755))
        return [f for f in files if f.old != f.new]

    def remove(self, live):
        self.nft.delete_table(self.table)

    def extras(self, desired, live):
        out = {"table": "%s %s" % (FAMILY, self.table), "persist_path": self.persist_path or ""}
        if desired is not None:
            out["script"] = self.script(desired)
        return out
