"""Verify a stand-in's config.xml against the exported policy of its firewall (molecule verify).

    python check_config.py CONFIG.xml FIREWALL.json SEED_CONFIG.xml [SEPARATORS_REFERENCE.xml]

An oracle independent of the module: minidom, not ElementTree. Checks that the file parses,
that every managed rule is the PFRULE of the policy at the same place (interface of src_zone,
protocol, source/destination addresses and ports through the aliases), that trackers are unique,
that the unmanaged rules and aliases of the seed file are all there, in the same order, and
that every unmanaged separator still stands above the same rule. Prints a JSON summary.
"""
import html
import json
import sys
from xml.dom import minidom

MARKER = "[ocs.edge_firewall]"


def ours(descr):
    """Managed: the marker after the rule id (or first, the old form)."""
    descr = descr or ""
    return MARKER in descr.split(" ")[1:] or descr.startswith(MARKER)


def kids(node, tag):
    return [c for c in node.childNodes if c.nodeType == c.ELEMENT_NODE and c.tagName == tag] if node else []


def text(node, tag):
    found = kids(node, tag)
    # as pfSense's parse_xml_config() reads a value: entities decoded (also inside CDATA)
    return html.unescape("".join(t.data for t in found[0].childNodes)) if found else None


def load(path):
    root = minidom.parse(path).documentElement
    filt = kids(root, "filter")[0]
    rules = kids(filt, "rule")
    aliases = {text(a, "name"): (text(a, "type"), (text(a, "address") or "").split())
               for a in kids((kids(root, "aliases") or [None])[0], "alias")}
    return root, filt, rules, aliases


def separators(filt, rules):
    out = {}
    by_if = {}
    for rule in rules:
        by_if.setdefault("floatingrules" if kids(rule, "floating") else text(rule, "interface"), []).append(rule)
    for seps in kids(filt, "separator"):
        for ifsep in [c for c in seps.childNodes if c.nodeType == c.ELEMENT_NODE]:
            on_if = [r for r in by_if.get(ifsep.tagName, [])]
            unmanaged = [r for r in on_if if not ours(text(r, "descr"))]
            for sep in [c for c in ifsep.childNodes if c.nodeType == c.ELEMENT_NODE]:
                if (text(sep, "text") or "").startswith(MARKER):
                    continue
                k = int(text(sep, "row")[2:])
                target = next((r for r in on_if[k:] if r in unmanaged), None)
                out[(ifsep.tagName, text(sep, "text"))] = text(target, "descr") if target else None
    return out


def resolve_address(end, aliases):
    if kids(end, "any"):
        return None
    name = text(end, "address")
    return sorted(aliases[name][1]) if name in aliases else [name]


def resolve_port(end, aliases):
    port = text(end, "port")
    if not port:
        return None
    return sorted(p.replace(":", "-") for p in aliases[port][1]) if port in aliases else [port]


def identity(rule):
    return tuple(text(rule, tag) for tag in ("descr", "interface", "type", "tracker", "protocol"))


def check_nat(root, fw, seed_root):
    """The "do not NAT" rules hold the policy's no_nat addresses on every interface, before the
    user's outbound rules, which are those of the seed in the same order."""
    errors = []
    outbound = (kids((kids(root, "nat") or [None])[0], "outbound") or [None])[0]
    rules = kids(outbound, "rule")
    mine = [r for r in rules if ours(text(r, "descr"))]
    aliases = {text(a, "name"): (text(a, "address") or "").split()
               for a in kids((kids(root, "aliases") or [None])[0], "alias")}
    want = sorted(a["address"] for a in fw.get("no_nat", []))
    if want and text(outbound, "mode") not in ("hybrid", "advanced"):
        errors.append("outbound NAT mode is %s" % text(outbound, "mode"))
    if sorted(text(r, "interface") for r in mine) != sorted(fw["interfaces"].values()):
        errors.append("no-NAT rules on %s" % [text(r, "interface") for r in mine])
    for rule in mine:
        ends = [text(kids(rule, side)[0], "network") for side in ("source", "destination")]
        names = [e for e in ends if e in aliases]
        if not kids(rule, "nonat") or len(names) != 1 or sorted(aliases[names[0]]) != want:
            errors.append("no-NAT rule %s: %s" % (text(rule, "descr"), ends))
    if rules[:len(mine)] != mine:
        errors.append("no-NAT rules are not first among the outbound rules")
    seed_out = (kids((kids(seed_root, "nat") or [None])[0], "outbound") or [None])[0]
    if [text(r, "descr") for r in rules[len(mine):]] != [text(r, "descr") for r in kids(seed_out, "rule")]:
        errors.append("the user's outbound NAT rules changed")
    return errors


def main(config, fw_json, seed, sep_reference=None):
    fw = json.load(open(fw_json))
    _root, filt, rules, aliases = load(config)
    _sroot, sfilt, srules, saliases = load(seed)
    errors = []
    managed = [r for r in rules if ours(text(r, "descr"))]
    want = {}
    for pfrule in fw["rules"]:
        want.setdefault(fw["interfaces"][pfrule["src_zone"]], []).append(pfrule)
    got = {}
    for rule in managed:
        got.setdefault(text(rule, "interface"), []).append(rule)
    if not set(want) <= set(got):
        errors.append("interfaces with managed rules: %s, policy: %s" % (sorted(got), sorted(want)))
    for iface, pfrules in want.items():
        rules_here = got.get(iface, [])
        # after the policy's pass rules: the management pass and the default-deny block rules
        for extra in rules_here[len(pfrules):]:
            rid = text(extra, "descr").split(" ")[0]
            if not ("-deny-" in rid and text(extra, "type") == "block" or "-mgmt-" in rid):
                errors.append("%s: unexpected managed rule %s after the policy's rules" % (iface, rid))
        rules_here = rules_here[:len(pfrules)]
        if len(rules_here) != len(pfrules):
            errors.append("%s: %d managed rules, policy has %d" % (iface, len(rules_here), len(pfrules)))
            continue
        for rule, pf in zip(rules_here, pfrules):
            src, dst = kids(rule, "source")[0], kids(rule, "destination")[0]
            seen = {"descr": text(rule, "descr"), "type": text(rule, "type"), "ipprotocol": text(rule, "ipprotocol"),
                    "protocol": text(rule, "protocol"), "src": resolve_address(src, aliases),
                    "dst": resolve_address(dst, aliases), "sport": resolve_port(src, aliases),
                    "dport": resolve_port(dst, aliases)}
            head = "%s table %s figure %s %s " % (pf["id"], pf["table"], pf["figure"], MARKER)
            seen["descr"] = seen["descr"].startswith(head) and seen["descr"][len(head):] in pf["comment"]
            expect = {"descr": True, "type": "pass", "ipprotocol": "inet",
                      "protocol": pf["protocol"], "src": sorted(pf["src"]) if pf["src"] else None,
                      "dst": sorted(pf["dst"]) if pf["dst"] else None,
                      "sport": sorted(pf["sport"]) if pf["sport"] else None,
                      "dport": sorted(pf["dport"]) if pf["dport"] else None}
            if seen != expect:
                errors.append("%s rule %s: %s != policy %s" % (iface, pf["id"], seen, expect))
        on_if = [text(r, "descr") for r in rules if text(r, "interface") == iface and not kids(r, "floating")]
        flags = [ours(d) for d in on_if]
        if flags != sorted(flags, reverse=True):
            errors.append("%s: the managed block is not on top: %s" % (iface, on_if))
    trackers = [text(r, "tracker") for r in rules]
    for rule in managed:
        if trackers.count(text(rule, "tracker")) != 1:
            errors.append("tracker %s is not unique" % text(rule, "tracker"))
    unmanaged_now = [identity(r) for r in rules if not ours(text(r, "descr"))]
    unmanaged_seed = [identity(r) for r in srules]
    if unmanaged_now != unmanaged_seed:
        errors.append("unmanaged rules differ from the seed file: %s != %s" % (unmanaged_now, unmanaged_seed))
    for name, value in saliases.items():
        if aliases.get(name) != value:
            errors.append("unmanaged alias %s changed: %s -> %s" % (name, value, aliases.get(name)))
    extra = set(n for n in aliases if n not in saliases and not n.startswith("OCS_"))
    if extra:
        errors.append("unexpected aliases: %s" % sorted(extra))
    _rroot, rfilt, rrules, _raliases = load(sep_reference or seed)
    if separators(filt, rules) != separators(rfilt, rrules):
        errors.append("separators moved: %s != %s" % (separators(filt, rules), separators(rfilt, rrules)))
    errors += check_nat(_root, fw, _sroot)
    print(json.dumps({"managed_rules": len(managed), "aliases": sorted(n for n in aliases if n.startswith("OCS_")),
                      "errors": errors}, indent=1))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
