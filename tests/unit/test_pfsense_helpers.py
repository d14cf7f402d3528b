"""Shared helpers of the pfSense tests: configs to run against, the policy, an independent oracle."""
import copy
import functools
import html
import os
from pathlib import Path
from xml.dom import minidom

import pytest

from inventory_loader import load_hostvars
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "pfsense"
GOLDEN = REPO / "tests" / "golden" / "pfsense"
# the real samples, beside the repository (../shared); OCS_PFSENSE_SAMPLES points elsewhere
SHARED = Path(os.environ.get("OCS_PFSENSE_SAMPLES") or REPO.parent / "shared" / "data" / "pfsense")
MARKER = "[ocs.edge_firewall]"

# name -> (path, interface override per firewall or None)
_ONLY_WAN_LAN = {"fw-ext": {"internet": "wan", "perimeter": "lan"},
                 "fw-int": {"perimeter": "wan", "internal": "lan"}}
# the factory fixture: the external firewall guards opt1 (DMZ) from wan; the internal one sits
# with its wan (the interface with the gateway) in the perimeter and lan inside
FACTORY = {"fw-ext": {"internet": "wan", "perimeter": "opt1"},
           "fw-int": {"perimeter": "wan", "internal": "lan"}}
CONFIGS = {
    "empty": (FIXTURES / "config.empty.xml", None),
    "factory": (FIXTURES / "config.factory.xml", FACTORY),
    "crowded": (FIXTURES / "config.crowded.xml", None),
    "shared-default": (SHARED / "config.default.xml", _ONLY_WAN_LAN),
    "shared-rule": (SHARED / "pfsensible_rule_config.xml", None),
    "shared-alias": (SHARED / "pfsensible_alias_config.xml", None),
}


def config_params():
    out = []
    for name, (path, _o) in CONFIGS.items():
        marks = []
        if name.startswith("shared-"):
            marks.append(pytest.mark.skipif(not path.is_file(), reason="%s not present" % path))
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def config_bytes(name):
    return CONFIGS[name][0].read_bytes()


@functools.lru_cache(maxsize=None)
def _policy():
    return build_policy(load_hostvars(FIXTURES / "inventory"))


def policy():
    return copy.deepcopy(_policy())


def firewall(config_name, fw):
    result = policy()["firewalls"][fw]
    override = CONFIGS[config_name][1]
    if override:
        result["interfaces"] = dict(override[fw])
    return result


# --------------------------------------------------------------------------- oracle (minidom)

def _text(node, tag):
    found = [c for c in node.childNodes if c.nodeType == c.ELEMENT_NODE and c.tagName == tag]
    if not found:
        return None
    return html.unescape("".join(t.data for t in found[0].childNodes
                                 if t.nodeType in (t.TEXT_NODE, t.CDATA_SECTION_NODE)))


def _child(node, tag):
    found = [c for c in node.childNodes if c.nodeType == c.ELEMENT_NODE and c.tagName == tag]
    return found[0] if found else None


def _children(node, tag):
    return [c for c in node.childNodes if c.nodeType == c.ELEMENT_NODE and c.tagName == tag]


def read_with_minidom(data):
    """-> (aliases {name: (type, [entries])}, rules [dict]) of the whole file, in document order."""
    doc = minidom.parseString(data)
    root = doc.documentElement
    aliases = {}
    aliases_el = _child(root, "aliases")
    for alias in _children(aliases_el, "alias") if aliases_el else []:
        aliases[_text(alias, "name")] = (_text(alias, "type"), (_text(alias, "address") or "").split())
    rules = []
    filt = _child(root, "filter")
    for rule in _children(filt, "rule") if filt else []:
        ends = {}
        for side in ("source", "destination"):
            end = _child(rule, side)
            ends[side] = {"any": _child(end, "any") is not None, "address": _text(end, "address"),
                          "port": _text(end, "port")}
        rules.append({"descr": _text(rule, "descr") or "", "interface": _text(rule, "interface"),
                      "type": _text(rule, "type"), "ipprotocol": _text(rule, "ipprotocol"),
                      "protocol": _text(rule, "protocol"), "statetype": _text(rule, "statetype"),
                      "tracker": _text(rule, "tracker"), "floating": _child(rule, "floating") is not None,
                      "disabled": _child(rule, "disabled") is not None,
                      "source": ends["source"], "destination": ends["destination"], "node": rule})
    return aliases, rules


def _resolve_addresses(end, aliases):
    if end["any"]:
        return None
    name = end["address"]
    if name in aliases:
        atype, entries = aliases[name]
        assert atype in ("host", "network"), name
        return sorted(e[:-3] if e.endswith("/32") else e for e in entries)
    return [name]


def _resolve_ports(end, aliases):
    port = end["port"]
    if not port:
        return None
    if port in aliases:
        atype, entries = aliases[port]
        assert atype == "port", port
        return sorted(e.replace(":", "-") for e in entries)
    return [port]


def is_ours(descr):
    """Independent reading of ownership: the marker after the id (or first, the old form)."""
    words = descr.split(" ")
    return MARKER in words[1:] or descr.startswith(MARKER)


def assert_matches_policy(data, fw_dict, placement="top"):
    """Every managed pass rule of the file is the PFRULE of fw_dict at the same place, followed on
    its interface only by the management pass and the default-deny block rules; nothing else is managed."""
    aliases, rules = read_with_minidom(data)
    managed = [r for r in rules if is_ours(r["descr"])]
    expected = {}
    for pfrule in fw_dict["rules"]:
        expected.setdefault(fw_dict["interfaces"][pfrule["src_zone"]], []).append(pfrule)
    got = {}
    for rule in managed:
        assert not rule["floating"]
        got.setdefault(rule["interface"], []).append(rule)
    assert set(expected) <= set(got)
    for iface, mine in got.items():
        pfrules = expected.get(iface, [])
        assert len(mine) >= len(pfrules), iface
        for rule, pfrule in zip(mine, pfrules):
            assert rule["descr"].startswith(pfrule["id"] + " table %s figure %s %s " % (
                pfrule["table"], pfrule["figure"], MARKER)), rule["descr"]
            assert len(rule["descr"]) >= 52 and pfrule["id"] in rule["descr"][:52]
            assert (rule["type"], rule["ipprotocol"], rule["statetype"]) == ("pass", "inet", "keep state")
            assert rule["protocol"] == pfrule["protocol"]
            assert not rule["disabled"]
            assert _resolve_addresses(rule["source"], aliases) == (sorted(pfrule["src"]) if pfrule["src"] else None)
            assert _resolve_addresses(rule["destination"], aliases) == (sorted(pfrule["dst"]) if pfrule["dst"] else None)
            assert _resolve_ports(rule["source"], aliases) == (sorted(pfrule["sport"]) if pfrule["sport"] else None)
            assert _resolve_ports(rule["destination"], aliases) == (sorted(pfrule["dport"]) if pfrule["dport"] else None)
        for rule in mine[len(pfrules):]:   # default deny (and the management pass before it)
            rid = rule["descr"].split(" ")[0]
            assert ("-deny-" in rid and rule["type"] == "block") or ("-mgmt-" in rid and rule["type"] == "pass"), rid
        if placement == "top":
            # the block is at the top of the interface: every managed rule before every unmanaged one
            on_iface = [r for r in rules if r["interface"] == iface and not r["floating"]]
            flags = [is_ours(r["descr"]) for r in on_iface]
            assert flags == sorted(flags, reverse=True), iface
    trackers = [r["tracker"] for r in managed]
    all_trackers = [r["tracker"] for r in rules]
    for tracker in trackers:
        assert all_trackers.count(tracker) == 1, tracker
    used = set()
    for rule in managed:
        for end in (rule["source"], rule["destination"]):
            for value in (end["address"], end["port"]):
                if value in aliases:
                    used.add(value)
    used |= set(nat_aliases(data))
    managed_aliases = set(n for n in aliases if n.startswith("OCS_"))
    assert managed_aliases == used, "managed aliases not used by a managed rule: %s" % (managed_aliases - used)
    for name in managed_aliases:
        assert len(name) < 32 and name.replace("_", "").isalnum()
    return [r for r in managed if r["descr"].split(" ")[0] in set(p["id"] for p in fw_dict["rules"])]


def read_nat(data):
    """-> (mode, [outbound rule dicts in document order]) read with minidom."""
    doc = minidom.parseString(data)
    outbound = _child(_child(doc.documentElement, "nat") or doc.documentElement, "outbound")
    if outbound is None:
        return "automatic", []
    out = []
    for rule in _children(outbound, "rule"):
        src, dst = _child(rule, "source"), _child(rule, "destination")
        out.append({"descr": _text(rule, "descr") or "", "interface": _text(rule, "interface"),
                    "nonat": _child(rule, "nonat") is not None, "disabled": _child(rule, "disabled") is not None,
                    "source": _text(src, "network"), "destination": "any" if _child(dst, "any") else _text(dst, "network"),
                    "target": _text(rule, "target"), "node": rule})
    return _text(outbound, "mode") or "automatic", out


def nat_aliases(data):
    _mode, rules = read_nat(data)
    return [v for r in rules if is_ours(r["descr"]) for v in (r["source"], r["destination"]) if v and v.startswith("OCS_")]
