"""What the written config.xml does, evaluated the way pfSense does (pfsense_eval.Config):
the page's "must not act as a NAT" on both firewalls, default deny between the zones,
anti-lockout and management kept, placement options, every outbound NAT mode.

The fixture is pfSense's factory config.xml with a WAN gateway (config.factory.xml): automatic
outbound NAT and the factory "Default allow LAN to any" rules, as shipped.
"""
import copy
import xml.etree.ElementTree as ET
from xml.dom import minidom

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pfsense_eval import Config
from test_pfsense_helpers import FIXTURES, assert_matches_policy, config_bytes, firewall, is_ours, read_nat
from ansible_collections.ocs.edge_firewall.plugins.module_utils import pfsense as pf
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import FirewallError

NOW = 1700000000
LAN_CLIENT = "192.168.1.50"
INTERNET = "192.0.2.99"


def apply(data, fw_dict, **options):
    result = pf.reconcile(pf.parse_config(data), fw_dict, "fw", now=NOW, options=options)
    return result, pf.dump_config(result["root"])


def factory(mode=None, user_rules=()):
    """The factory fixture, outbound NAT switched to ``mode`` with the user's rules given."""
    root = pf.parse_config(config_bytes("factory"))
    outbound = root.find("nat/outbound")
    if mode:
        outbound.find("mode").text = mode
    for source, descr, nonat in user_rules:
        rule = ET.SubElement(outbound, "rule")
        ET.SubElement(ET.SubElement(rule, "source"), "network").text = source
        ET.SubElement(rule, "descr").text = descr
        ET.SubElement(rule, "target").text = ""
        ET.SubElement(rule, "interface").text = "wan"
        if nonat:
            ET.SubElement(rule, "nonat").text = ""
        ET.SubElement(ET.SubElement(rule, "destination"), "any").text = ""
    return pf.dump_config(root)


def _policy_rule(fw_dict, zone, role=None):
    return next(r for r in fw_dict["rules"] if r["src_zone"] == zone and (role is None or r["server_role"] == role)
                and r["dport"] and "-" not in r["dport"][0])


# --------------------------------------------------------------------------- outbound NAT


def test_external_firewall_factory_nat_translates_the_av_edge_until_applied():
    fw = firewall("factory", "fw-ext")
    av = [a["address"] for a in fw["no_nat"] if "av_edge" in a["roles"]]
    before = Config(config_bytes("factory"))
    assert av and all(before.nat("wan", a) == (True, "Auto created rule") for a in av)   # the problem
    result, out = apply(config_bytes("factory"), fw)
    after = Config(out)
    for addr in av:
        assert after.nat("wan", addr)[0] is False, addr
        assert "nonat" in after.nat("wan", addr)[1]
    # every perimeter server the policy names (default scope), the LAN still NATed as before
    assert all(after.nat("wan", a["address"])[0] is False for a in fw["no_nat"])
    assert after.nat("wan", LAN_CLIENT) == (True, "Auto created rule")
    assert after.nat("wan", "203.0.113.99") == (True, "Auto created rule")   # not a policy server
    assert read_nat(out)[0] == "hybrid" and "nat:mode" in result["updated"]
    assert {"nat:central-nonat-internet", "nat:central-nonat-perimeter"} <= set(result["created"])


def test_internal_firewall_does_not_nat_the_av_edge_internal_address():
    fw = firewall("factory", "fw-int")
    av_internal = [a["address"] for a in fw["no_nat"] if "av_edge" in a["roles"]]
    before = Config(config_bytes("factory"))
    # a LAN client talking to the A/V Edge's internal address leaves on wan (the perimeter side,
    # with the gateway): automatic NAT hides it behind the firewall's address
    assert all(before.nat("wan", LAN_CLIENT, a)[0] for a in av_internal)
    _r, out = apply(config_bytes("factory"), fw)
    after = Config(out)
    assert av_internal and all(after.nat("wan", LAN_CLIENT, a)[0] is False for a in av_internal)
    assert after.nat("wan", LAN_CLIENT, INTERNET) == (True, "Auto created rule")


def test_scope_av_edge_is_the_pages_minimum():
    fw = firewall("factory", "fw-ext")
    _r, out = apply(config_bytes("factory"), fw, no_nat_scope="av_edge")
    after = Config(out)
    for entry in fw["no_nat"]:
        assert after.nat("wan", entry["address"])[0] is ("av_edge" not in entry["roles"]), entry


def test_hybrid_keeps_mode_and_user_rules_below_ours():
    user = [("203.0.113.0/24", "DMZ via the ISP's second address", False), ("10.0.0.0/8", "vpn, no nat", True)]
    data = factory("hybrid", user)
    result, out = apply(data, firewall("factory", "fw-ext"))
    mode, rules = read_nat(out)
    assert mode == "hybrid" and "nat:mode" not in result["updated"]
    assert [is_ours(r["descr"]) for r in rules] == [True, True, False, False]
    assert [r["descr"] for r in rules[2:]] == [u[1] for u in user]
    after = Config(out)
    assert after.nat("wan", "203.0.113.51")[0] is False
    assert after.nat("wan", "203.0.113.99") == (True, "DMZ via the ISP's second address")
    assert apply(out, firewall("factory", "fw-ext"))[1] == out


def test_manual_mode_stays_manual_and_ours_go_first():
    """Advanced (manual) outbound NAT: the mode is the user's; the no-NAT rules go above the
    user's rules (first match), which stay in their order."""
    user = [("203.0.113.0/24", "Auto created rule - DMZ to WAN", False), ("192.168.1.0/24", "LAN to WAN", False)]
    data = factory("advanced", user)
    fw = firewall("factory", "fw-ext")
    before = Config(data)
    assert before.nat("wan", "203.0.113.51") == (True, "Auto created rule - DMZ to WAN")
    result, out = apply(data, fw)
    mode, rules = read_nat(out)
    assert mode == "advanced" and "nat:mode" not in result["updated"]
    assert [r["descr"] for r in rules if not is_ours(r["descr"])] == [u[1] for u in user]
    assert [is_ours(r["descr"]) for r in rules] == [True, True, False, False]
    after = Config(out)
    assert after.nat("wan", "203.0.113.51")[0] is False
    assert after.nat("wan", LAN_CLIENT) == (True, "LAN to WAN")
    again, same = apply(out, fw)
    assert same == out and not again["changed"]


def test_automatic_with_dormant_user_rules_is_refused():
    data = factory(None, [("203.0.113.0/24", "old manual rule", False)])
    with pytest.raises(pf.PfSenseError, match="would also activate 1 rule.*old manual rule"):
        apply(data, firewall("factory", "fw-ext"))


def test_disabled_outbound_nat_needs_nothing():
    data = factory("disabled")
    result, out = apply(data, firewall("factory", "fw-ext"))
    assert read_nat(out) == ("disabled", []) and any("disabled" in w for w in result["warnings"])
    assert Config(out).nat("wan", "203.0.113.51")[0] is False


def test_no_nat_false_leaves_nat_alone():
    result, out = apply(config_bytes("factory"), firewall("factory", "fw-ext"), no_nat=False)
    assert read_nat(out) == ("automatic", [])
    assert not any(c.startswith("nat:") for c in result["created"] + result["updated"])


# --------------------------------------------------------------------------- default deny


def test_factory_lan_rule_no_longer_reaches_the_perimeter():
    fw = firewall("factory", "fw-int")
    av_internal = next(a["address"] for a in fw["no_nat"] if "av_edge" in a["roles"])
    before = Config(config_bytes("factory"))
    assert before.filter("lan", LAN_CLIENT, av_internal, dport=8080) == ("pass", "Default allow LAN to any rule")
    _r, out = apply(config_bytes("factory"), fw)
    assert_matches_policy(out, fw)
    after = Config(out)
    verdict, why = after.filter("lan", LAN_CLIENT, av_internal, dport=8080)
    assert verdict == "block" and why.startswith("central-deny-internal-perimeter-hosts ")
    verdict, why = after.filter("lan", LAN_CLIENT, "198.51.100.7", dport=80)    # the perimeter network
    assert verdict == "block" and why.startswith("central-deny-internal-perimeter ")
    # what the policy allows passes, by its own rule
    rule = _policy_rule(fw, "internal")
    verdict, why = after.filter("lan", rule["src"][0] if rule["src"] else LAN_CLIENT, rule["dst"][0],
                                rule["protocol"], int(rule["dport"][0]))
    assert verdict == "pass" and why.startswith(rule["id"] + " ")
    # the rest of the LAN's traffic (the Internet) is the user's: the factory rule still decides
    assert after.filter("lan", LAN_CLIENT, INTERNET) == ("pass", "Default allow LAN to any rule")


def test_perimeter_cannot_open_connections_inward_beyond_the_policy():
    fw = firewall("factory", "fw-int")
    _r, out = apply(config_bytes("factory"), fw)
    after = Config(out)
    verdict, why = after.filter("wan", "172.16.1.51", "10.10.1.10", dport=445)
    assert verdict == "block" and why.startswith("central-deny-perimeter-internal ")
    rule = _policy_rule(fw, "perimeter")
    verdict, why = after.filter("wan", rule["src"][0], rule["dst"][0] if rule["dst"] else "10.10.1.10",
                                rule["protocol"], int(rule["dport"][0]))
    assert verdict == "pass" and why.startswith(rule["id"] + " ")
    # the firewall itself is not in the block's destination (! (self)): pfSense's own default decides
    assert after.filter("wan", "172.16.1.51", "198.51.100.2", dport=443) == ("block", "Default deny rule IPv4")


def test_anti_lockout_and_management_keep_working():
    fw = firewall("factory", "fw-int")
    _r, out = apply(config_bytes("factory"), fw)
    after = Config(out)
    # anti-lockout is loaded before every user rule: the LAN address' GUI stays reachable
    assert after.filter("lan", LAN_CLIENT, "192.168.1.1", dport=443) == ("pass", "anti-lockout rule")
    # the firewall's perimeter-side address is in the blocked perimeter network: the management
    # networks (ocs_management_networks) still reach it, on the management and GUI ports
    mgmt = fw["management"]["sources"][0].split("/")[0].rsplit(".", 1)[0] + ".5"
    for port in (22, 443):
        verdict, why = after.filter("lan", mgmt, "198.51.100.2", dport=port)
        assert verdict == "pass" and why.startswith("central-mgmt-internal "), port
    assert after.filter("lan", LAN_CLIENT, "198.51.100.2", dport=22)[0] == "block"


def test_default_deny_off_is_pass_only():
    fw = firewall("factory", "fw-int")
    result, out = apply(config_bytes("factory"), fw, default_deny=False)
    assert not any("-deny-" in c or "-mgmt-" in c for c in result["created"])
    after = Config(out)
    assert after.filter("lan", LAN_CLIENT, "172.16.1.51", dport=8080) == ("pass", "Default allow LAN to any rule")


def test_external_firewall_blocks_internet_to_perimeter_beyond_the_policy():
    fw = firewall("factory", "fw-ext")
    _r, out = apply(config_bytes("factory"), fw)
    after = Config(out)
    verdict, why = after.filter("wan", INTERNET, "203.0.113.51", dport=22)
    assert verdict == "block" and why.startswith("central-deny-internet-perimeter")
    verdict, why = after.filter("opt1", "203.0.113.51", INTERNET, dport=25)
    assert verdict == "block" and why.startswith("central-deny-perimeter-internet ")


# --------------------------------------------------------------------------- placement


def _with_lan_separator(data, text, row):
    root = pf.parse_config(data)
    filt = root.find("filter")
    seps = filt.find("separator")
    if seps is None:
        seps = ET.SubElement(filt, "separator")
    lan = ET.SubElement(seps, "lan")
    sep = ET.SubElement(lan, "sep0")
    for tag, value in (("row", "fr%d" % row), ("text", text), ("color", "bg-info"), ("if", "lan")):
        ET.SubElement(sep, tag).text = value
    return pf.dump_config(root)


def _lan_descrs(data):
    return [r.findtext("descr") for r in pf.parse_config(data).find("filter").findall("rule")
            if r.findtext("interface") == "lan"]


def test_placement_below_a_named_separator():
    fw = firewall("factory", "fw-int")
    data = _with_lan_separator(config_bytes("factory"), "Edge servers", 1)
    result, out = apply(data, fw, placement="separator", placement_separator="Edge servers")
    descrs = _lan_descrs(out)
    mine = [i for i, d in enumerate(descrs) if is_ours(d)]
    assert descrs[0] == "Default allow LAN to any rule" and mine[0] == 1
    assert mine == list(range(1, 1 + len(mine))) and descrs[-1] == "Default allow LAN IPv6 to any rule"
    seps = pf.parse_config(out).find("filter/separator/lan")
    rows = dict((s.findtext("text"), s.findtext("row")) for s in seps)
    assert rows["Edge servers"] == "fr1" and [r for t, r in rows.items() if t != "Edge servers"] == ["fr1"]
    again, same = apply(out, fw, placement="separator", placement_separator="Edge servers")
    assert same == out and not again["changed"]
    assert any("interface wan has no separator 'Edge servers'" in w for w in result["warnings"])
    with pytest.raises(pf.PfSenseError, match="'nowhere': no managed interface.*'Edge servers'"):
        apply(data, fw, placement="separator", placement_separator="nowhere")


def test_placement_bottom_lets_the_users_rules_decide_first():
    fw = firewall("factory", "fw-int")
    _r, out = apply(config_bytes("factory"), fw, placement="bottom")
    descrs = _lan_descrs(out)
    assert descrs[:2] == ["Default allow LAN to any rule", "Default allow LAN IPv6 to any rule"]
    assert all(is_ours(d) for d in descrs[2:])
    assert_matches_policy(out, fw, placement="bottom")
    assert Config(out).filter("lan", LAN_CLIENT, "172.16.1.51", dport=8080)[0] == "pass"
    # the deny rules always follow the pass rules directly
    ids = [d.split(" ")[0] for d in descrs[2:]]
    first_extra = next(i for i, rid in enumerate(ids) if "-mgmt-" in rid or "-deny-" in rid)
    assert all("-mgmt-" in rid or "-deny-" in rid for rid in ids[first_extra:])
    assert apply(out, fw, placement="bottom")[1] == out


# --------------------------------------------------------------------------- descriptions


def test_old_form_descriptions_are_recognised_and_migrated():
    fw = firewall("empty", "fw-int")
    data = (FIXTURES / "config.oldform.xml").read_bytes()
    old_ids = [pf.managed_id(r.findtext("descr")) for r in pf.parse_config(data).find("filter").findall("rule")
               if r.findtext("descr").startswith(pf.MARKER)]
    assert old_ids and all(rid.startswith("central-t") for rid in old_ids)
    result, out = apply(data, fw)
    assert set(old_ids) <= set(result["updated"]) and not set(old_ids) & set(result["created"] + result["removed"])
    assert not any(r.findtext("descr").startswith(pf.MARKER) for r in pf.parse_config(out).find("filter").findall("rule"))
    assert_matches_policy(out, fw)
    assert apply(out, fw)[1] == out


@pytest.mark.parametrize("fw_name", ["fw-ext", "fw-int"])
def test_first_52_characters_name_the_rule(fw_name):
    fw = firewall("factory", fw_name)
    _r, out = apply(config_bytes("factory"), fw)
    for rule in pf.parse_config(out).find("filter").findall("rule"):
        descr = rule.findtext("descr")
        if is_ours(descr):
            head = descr[:52]
            rid = descr.split(" ")[0]
            assert head.startswith(rid + " ")
            pfrule = next((r for r in fw["rules"] if r["id"] == rid), None)
            if pfrule:
                assert "table %s figure %s" % (pfrule["table"], pfrule["figure"]) in head, descr


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("where,value", [
    ("comment", "STUN\x01"), ("id", "central-t20\x0b"), ("comment", u"x\ufffe"), ("comment", u"x\ud800")])
def test_characters_xml_cannot_carry_are_refused(where, value):
    fw = firewall("factory", "fw-ext")
    fw["rules"][0][where] = value
    with pytest.raises(pf.XmlCharacterError, match=r"rules\[0\].*%s.*U\+" % where):
        apply(config_bytes("factory"), fw)


def test_hostile_username_and_name_are_refused():
    fw = firewall("factory", "fw-ext")
    root = pf.parse_config(config_bytes("factory"))
    with pytest.raises(pf.XmlCharacterError, match="username.*U\\+0000"):
        pf.reconcile(root, fw, "fw", username="ops\x00")
    with pytest.raises(pf.XmlCharacterError, match="firewall name"):
        pf.reconcile(root, fw, "fw\x1f")


def test_trailing_space_and_cr_in_a_comment_do_not_rewrite_every_run():
    fw = firewall("factory", "fw-ext")
    fw["rules"][0]["comment"] += " \r"
    _r, out = apply(config_bytes("factory"), fw)
    again, same = apply(out, fw)
    assert not again["changed"] and same == out


def test_ids_with_whitespace_are_refused_by_the_contract():
    """A rule id starts the description, which is matched up to its first space: the contract's
    parse (rules.ID_RE) refuses whitespace in ids, trailing included."""
    fw = firewall("factory", "fw-ext")
    for rid in ("central-t17-f1-in ", "central t17"):
        bad = copy.deepcopy(fw)
        bad["rules"][0]["id"] = rid
        with pytest.raises(FirewallError, match=r"rules\[0\]\.id: .* is not a rule id"):
            apply(config_bytes("factory"), bad)


def test_policy_refuses_pfsense_interface_descriptions_and_carries_no_nat():
    from inventory_loader import load_hostvars
    from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import PolicyError, build_policy
    hostvars = load_hostvars(FIXTURES / "inventory")
    policy = build_policy(copy.deepcopy(hostvars))
    ext = policy["firewalls"]["fw-ext"]["no_nat"]
    assert {"address": "203.0.113.50", "roles": ["av_edge"]} in ext
    assert all(a["address"].startswith("203.0.113.") for a in ext)
    assert all(a["address"].startswith("172.16.1.") for a in policy["firewalls"]["fw-int"]["no_nat"])
    hostvars["fw-ext"]["ocs_firewall_interfaces"] = {"internet": "wan", "perimeter": "OPT1"}
    with pytest.raises(PolicyError, match="'OPT1' is not a valid pfSense interface name"):
        build_policy(hostvars)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(comment=st.text(min_size=1, max_size=40), username=st.text(max_size=12))
def test_any_text_is_refused_or_written_parseable_and_stable(comment, username):
    """config.xml stays parseable whatever the input: a value is refused with a named error or
    written so that both parsers read it back and a re-run changes nothing."""
    fw = firewall("empty", "fw-int")
    fw["rules"][0]["comment"] = comment
    root = pf.parse_config(config_bytes("empty"))
    try:
        result = pf.reconcile(root, fw, "fw", now=NOW, username=username or "u")
    except pf.XmlCharacterError:
        assert pf.XML_FORBIDDEN.search(comment + username)
        return
    out = pf.dump_config(result["root"])
    minidom.parseString(out)
    again = pf.reconcile(pf.parse_config(out), fw, "fw", now=NOW + 1, username=username or "u")
    assert not again["changed"] and pf.dump_config(again["root"]) == out
