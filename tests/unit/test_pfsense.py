"""pfSense backend library: apply, untouched unmanaged items, idempotence, every drift kind.

Runs on the project's own fixtures (tests/fixtures/pfsense) and, when ../shared/data/pfsense
exists next to the repository, on the real samples there (skipped otherwise).
"""
import copy
import os
import re
import xml.etree.ElementTree as ET
from xml.dom import minidom

import pytest

from test_pfsense_helpers import (CONFIGS, GOLDEN, MARKER, assert_matches_policy, config_bytes,
                                  config_params, firewall, read_with_minidom)
from ansible_collections.ocs.edge_firewall.plugins.module_utils import pfsense as pf
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import FirewallError

NOW = 1700000000
FIREWALLS = ("fw-ext", "fw-int")


def apply(data, fw_dict, now=NOW, state="present"):
    result = pf.reconcile(pf.parse_config(data), fw_dict, "fw", now=now, state=state)
    return result, pf.dump_config(result["root"])


def _unmanaged_rules(data):
    root = pf.parse_config(data)
    return [pf.dump_element(r) for r in root.find("filter").findall("rule") if not pf.is_managed_rule(r)]


def _unmanaged_aliases(data):
    root = pf.parse_config(data)
    aliases = root.find("aliases")
    return [pf.dump_element(a) for a in (aliases.findall("alias") if aliases is not None else [])
            if not pf.is_managed_alias(a)]


def _outside(data):
    """Everything except <filter>, <aliases> and <nat>."""
    root = pf.parse_config(data)
    return [pf.dump_element(c) for c in root if c.tag not in ("filter", "aliases", "nat")]


def _user_nat(data):
    """Everything of <nat> that is not the collection's (port forwards, 1:1, the user's outbound
    rules in their order), without the outbound mode."""
    root = pf.parse_config(data)
    nat = root.find("nat")
    if nat is None:
        return []
    out = [pf.dump_element(c) for c in nat if c.tag != "outbound"]
    outbound = nat.find("outbound")
    for rule in (outbound.findall("rule") if outbound is not None else []):
        if not pf.is_managed_descr(rule.findtext("descr") or ""):
            out.append(pf.dump_element(rule))
    return out


def _separator_targets(data):
    """(iface, sep name, text) -> the rule element text its row points at (None: after the last rule)."""
    root = pf.parse_config(data)
    filt = root.find("filter")
    seps = filt.find("separator")
    if seps is None:
        return {}
    by_if = {}
    for rule in filt.findall("rule"):
        key = "floatingrules" if rule.find("floating") is not None else rule.findtext("interface")
        by_if.setdefault(key, []).append(rule)
    out = {}
    for ifsep in seps:
        for sep in ifsep:
            text = sep.findtext("text") or ""
            if text.startswith(MARKER):
                continue
            k = int(re.match(r"fr(\d+)", sep.findtext("row")).group(1))
            rules = by_if.get(ifsep.tag, [])
            out[(ifsep.tag, sep.tag, text)] = pf.dump_element(rules[k]) if k < len(rules) else None
    return out


# --------------------------------------------------------------------------- apply


@pytest.mark.parametrize("fw", FIREWALLS)
@pytest.mark.parametrize("config", config_params())
def test_apply_matches_policy_and_leaves_the_rest(config, fw):
    before = config_bytes(config)
    fw_dict = firewall(config, fw)
    result, after = apply(before, fw_dict)
    assert result["changed"]
    assert result["created"] and not result["removed"]
    # parses with a second, independent parser; rules/aliases are the policy's
    minidom.parseString(after)
    managed = assert_matches_policy(after, fw_dict)
    assert len(managed) == len(fw_dict["rules"]) > 0
    # nothing unmanaged touched: same content, same order; the rest of the file identical
    assert _unmanaged_rules(after) == _unmanaged_rules(before)
    assert _unmanaged_aliases(after) == _unmanaged_aliases(before)
    assert _outside(after) == _outside(before)
    assert _user_nat(after) == _user_nat(before)
    # unmanaged separators still above the same rule
    assert _separator_targets(after) == _separator_targets(before)
    # managed separator heads each block
    root = pf.parse_config(after)
    for iface in set(fw_dict["interfaces"][r["src_zone"]] for r in fw_dict["rules"]):
        ours = [s for s in root.find("filter/separator/%s" % iface) if s.findtext("text").startswith(MARKER)]
        assert len(ours) == 1 and ours[0].findtext("row") == "fr0" and ours[0].findtext("if") == iface


@pytest.mark.parametrize("fw", FIREWALLS)
@pytest.mark.parametrize("config", config_params())
def test_rerun_is_byte_identical_and_unchanged(config, fw):
    fw_dict = firewall(config, fw)
    _r, first = apply(config_bytes(config), fw_dict)
    result, second = apply(first, fw_dict, now=NOW + 3600)
    assert not result["changed"]
    assert (result["created"], result["removed"], result["updated"]) == ([], [], [])
    assert second == first
    assert result["before"] == result["after"]


@pytest.mark.parametrize("config", config_params())
def test_both_firewalls_on_one_box_then_absent_restores_the_original(config):
    """state=absent removes every managed item and puts unmanaged separators back where they were."""
    original = pf.dump_config(pf.parse_config(config_bytes(config)))
    _r, applied = apply(config_bytes(config), firewall(config, "fw-int"))
    result, removed = apply(applied, firewall(config, "fw-int"), state="absent")
    assert result["changed"] and result["removed"] and not result["created"]
    # the same file, except that an interface's separator list emptied by the removal stays as
    # an empty element (<opt1></opt1>), as pfSense itself leaves it, and outbound NAT stays
    # hybrid (with no rule of ours left it translates exactly what automatic does)
    assert _without_empty_separators(removed) == _without_empty_separators(original)
    assert pf.outbound_mode(pf.parse_config(removed)) in ("hybrid", pf.outbound_mode(pf.parse_config(original)))


def _without_empty_separators(data):
    root = pf.parse_config(data)
    nat = root.find("nat")
    if nat is not None:
        root.remove(nat)
    filt = root.find("filter")
    seps = filt.find("separator")
    if seps is not None:
        for ifsep in list(seps):
            if not len(ifsep):
                seps.remove(ifsep)
        if not len(seps):
            filt.remove(seps)
    return pf.dump_config(root)


# --------------------------------------------------------------------------- writer format


def test_writer_follows_pfsense_format():
    _r, out = apply(config_bytes("empty"), firewall("empty", "fw-ext"))
    text = out.decode("utf-8")
    assert text.startswith('<?xml version="1.0"?>\n<pfsense>\n\t<version>')
    assert text.endswith("</pfsense>\n")
    assert not re.search(r"^ +<", text, re.M), "indent is tabs only"
    assert "<id></id>" in text and "<tag></tag>" in text and "/>" not in text
    assert re.search(r"<descr><!\[CDATA\[central-t17-f1-in table 17 figure 1 \[ocs\.edge_firewall\] [^]]*\]\]></descr>",
                     text)
    assert "<statetype><![CDATA[keep state]]></statetype>" in text
    # the fixture is already in pfSense format: only the filter/aliases sections differ
    assert _outside(out) == _outside(config_bytes("empty"))


def test_reformat_only_is_not_a_change():
    """A file formatted unlike pfSense but already holding the managed items is left alone."""
    fw_dict = firewall("crowded", "fw-ext")
    _r, applied = apply(config_bytes("crowded"), fw_dict)
    ugly = applied.replace(b"\t", b"  ").replace(b"<any></any>", b"<any/>").replace(b'<?xml version="1.0"?>\n', b"")
    result, _out = apply(ugly, fw_dict)
    assert not result["changed"]


def test_escaping_round_trip_of_unmanaged_values():
    _r, out = apply(config_bytes("crowded"), firewall("crowded", "fw-int"))
    assert b"<descr><![CDATA[LAN &amp; &quot;friends&quot; to any]]></descr>" in out
    root = pf.parse_config(out)
    descrs = [r.findtext("descr") for r in root.find("filter").findall("rule")]
    assert 'LAN & "friends" to any' in descrs


@pytest.mark.parametrize("fw", FIREWALLS)
def test_golden_render_of_the_empty_fixture(fw):
    """The full file written for the empty fixture, for review (OCS_UPDATE_GOLDEN=1 rewrites)."""
    _r, out = apply(config_bytes("empty"), firewall("empty", fw))
    path = GOLDEN / ("empty__%s.xml" % fw)
    if os.environ.get("OCS_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(out)
    assert out == path.read_bytes()


# --------------------------------------------------------------------------- drift


def _managed(root):
    return [r for r in root.find("filter").findall("rule") if pf.is_managed_rule(r)]


def _drift_port(root):
    rule = next(r for r in _managed(root) if r.find("destination/port") is not None)
    rule.find("destination/port").text = "8443"


def _shift_separators(root, iface, index, delta):
    """What the GUI does to the separators of an interface when a rule is added/deleted there."""
    ifsep = root.find("filter/separator/%s" % iface)
    for sep in (list(ifsep) if ifsep is not None else []):
        k = int(sep.findtext("row")[2:])
        if k > index:
            sep.find("row").text = "fr%d" % (k + delta)


def _rule_index(root, rule):
    iface = rule.findtext("interface")
    return [r for r in root.find("filter").findall("rule") if r.findtext("interface") == iface].index(rule)


def _drift_delete_rule(root, gui=True):
    victim = _managed(root)[-1]
    if gui:
        _shift_separators(root, victim.findtext("interface"), _rule_index(root, victim), -1)
    root.find("filter").remove(victim)


def _drift_rogue_rule(root, gui=True):
    first = _managed(root)[0]
    rogue = copy.deepcopy(first)
    rogue.find("descr").text = MARKER + " rogue: telnet from anywhere"
    rogue.find("destination/port").text = "23"
    rogue.find("tracker").text = "1234567890"
    filt = root.find("filter")
    filt.insert(list(filt).index(first) + 1, rogue)
    if gui:
        _shift_separators(root, first.findtext("interface"), _rule_index(root, first), +1)


def _drift_rogue_floating(root):
    rogue = copy.deepcopy(_managed(root)[0])
    rogue.find("descr").text = MARKER + " rogue floating"
    ET.SubElement(rogue, "floating").text = "yes"
    root.find("filter").append(rogue)


def _drift_rogue_floating_on_top(root):
    """A floating rule with the marker put first among the floating rules (separators not shifted)."""
    rogue = copy.deepcopy(_managed(root)[0])
    rogue.find("descr").text = MARKER + " rogue floating on top"
    ET.SubElement(rogue, "floating").text = "yes"
    ET.SubElement(rogue, "quick").text = "yes"
    filt = root.find("filter")
    floating = [r for r in filt.findall("rule") if r.find("floating") is not None]
    filt.insert(list(filt).index(floating[0]) if floating else len(filt), rogue)


def _drift_alias_address(root):
    alias = next(a for a in root.find("aliases") if pf.is_managed_alias(a))
    alias.find("address").text = alias.findtext("address") + " 192.0.2.99"


def _drift_alias_deleted(root):
    aliases = root.find("aliases")
    aliases.remove(next(a for a in aliases if pf.is_managed_alias(a)))


def _drift_rogue_alias(root):
    alias = ET.SubElement(root.find("aliases"), "alias")
    for tag, value in (("name", "OCS_rogue"), ("type", "host"), ("address", "192.0.2.1"), ("descr", ""),
                       ("detail", "")):
        ET.SubElement(alias, tag).text = value


def _drift_disabled_and_log(root):
    rule = _managed(root)[0]
    rule.insert(3, ET.Element("disabled"))
    rule.find("disabled").text = ""
    ET.SubElement(rule, "log").text = ""


def _drift_tracker(root):
    rules = _managed(root)
    rules[-1].find("tracker").text = rules[0].findtext("tracker")


def _drift_unmanaged_rule_above_block(root):
    filt = root.find("filter")
    first = _managed(root)[0]
    new = copy.deepcopy(first)
    new.find("descr").text = "hand-made rule put above the block"
    new.find("tracker").text = "1700000123"
    filt.insert(list(filt).index(first), new)


def _drift_block_reordered(root):
    filt = root.find("filter")
    rules = _managed(root)
    same_if = [r for r in rules if r.findtext("interface") == rules[0].findtext("interface")]
    if len(same_if) > 1:
        filt.remove(same_if[0])
        filt.insert(list(filt).index(same_if[-1]) + 1, same_if[0])


def _drift_separator_removed(root):
    for ifsep in root.find("filter/separator"):
        for sep in list(ifsep):
            if (sep.findtext("text") or "").startswith(MARKER):
                ifsep.remove(sep)


def _drift_descr_changed(root):
    rule = _managed(root)[0]
    rule.find("descr").text = MARKER + " edited by hand"


def _managed_nat(root):
    return [r for r in root.find("nat/outbound").findall("rule") if pf.is_managed_descr(r.findtext("descr"))]


def _drift_nat_rule_deleted(root):
    root.find("nat/outbound").remove(_managed_nat(root)[0])


def _drift_nat_translates_again(root):
    rule = _managed_nat(root)[-1]
    rule.remove(rule.find("nonat"))
    rule.find("target").text = "wanip"


DRIFTS = {
    "port_changed": _drift_port,
    "rule_deleted": _drift_delete_rule,
    "rogue_rule_with_marker": _drift_rogue_rule,
    "rogue_floating_with_marker": _drift_rogue_floating,
    "rogue_floating_on_top": _drift_rogue_floating_on_top,
    "alias_address_added": _drift_alias_address,
    "alias_deleted": _drift_alias_deleted,
    "rogue_alias_with_prefix": _drift_rogue_alias,
    "rule_disabled_and_logged": _drift_disabled_and_log,
    "tracker_duplicated": _drift_tracker,
    "block_reordered": _drift_block_reordered,
    "managed_separator_removed": _drift_separator_removed,
    "descr_changed": _drift_descr_changed,
    "nat_rule_deleted": _drift_nat_rule_deleted,
    "nat_rule_translates_again": _drift_nat_translates_again,
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
@pytest.mark.parametrize("config", config_params())
def test_each_drift_is_reported_and_corrected(config, drift):
    fw_dict = firewall(config, "fw-int")
    _r, good = apply(config_bytes(config), fw_dict)
    root = pf.parse_config(good)
    DRIFTS[drift](root)
    drifted = pf.dump_config(root)
    assert drifted != good
    result, fixed = apply(drifted, fw_dict)
    assert result["changed"]
    assert result["created"] or result["removed"] or result["updated"]
    assert result["before"] != result["after"] or drift in ("managed_separator_removed",)
    assert fixed == good        # same time stamp given: exactly the first result
    assert_matches_policy(fixed, fw_dict)
    again, _same = apply(fixed, fw_dict)
    assert not again["changed"]


@pytest.mark.parametrize("drift", [_drift_delete_rule, _drift_rogue_rule], ids=["rule_deleted", "rogue_rule"])
@pytest.mark.parametrize("config", config_params())
def test_raw_xml_edits_without_separator_bookkeeping_are_corrected(config, drift):
    """Deleting/adding a rule in the file without shifting separators (not what the GUI does):
    the policy is restored and unmanaged rules are untouched; separators keep pointing where the
    edited file had them."""
    fw_dict = firewall(config, "fw-int")
    _r, good = apply(config_bytes(config), fw_dict)
    root = pf.parse_config(good)
    drift(root, gui=False)
    drifted = pf.dump_config(root)
    result, fixed = apply(drifted, fw_dict)
    assert result["changed"]
    assert_matches_policy(fixed, fw_dict)
    assert _unmanaged_rules(fixed) == _unmanaged_rules(good)
    assert _separator_targets(fixed) == _separator_targets(drifted)
    assert not apply(fixed, fw_dict)[0]["changed"]


@pytest.mark.parametrize("config", config_params())
def test_unmanaged_rule_above_the_block_is_kept_and_block_moved_back_on_top(config):
    fw_dict = firewall(config, "fw-int")
    _r, good = apply(config_bytes(config), fw_dict)
    root = pf.parse_config(good)
    _drift_unmanaged_rule_above_block(root)
    drifted = pf.dump_config(root)
    result, fixed = apply(drifted, fw_dict)
    assert result["changed"]
    assert_matches_policy(fixed, fw_dict)
    assert _unmanaged_rules(fixed) == _unmanaged_rules(drifted)
    assert not apply(fixed, fw_dict)[0]["changed"]


@pytest.mark.parametrize("config", config_params())
def test_user_nat_rule_added_above_ours_is_kept_and_ours_go_back_on_top(config):
    fw_dict = firewall(config, "fw-ext")
    _r, good = apply(config_bytes(config), fw_dict)
    root = pf.parse_config(good)
    outbound = root.find("nat/outbound")
    mine = copy.deepcopy(_managed_nat(root)[0])
    mine.find("descr").text = "my own rule, put first"
    outbound.insert(list(outbound).index(_managed_nat(root)[0]), mine)
    drifted = pf.dump_config(root)
    result, fixed = apply(drifted, fw_dict)
    assert result["changed"] and _user_nat(fixed) == _user_nat(drifted)
    descrs = [r.findtext("descr") for r in pf.parse_config(fixed).find("nat/outbound").findall("rule")]
    assert descrs.index("my own rule, put first") == 2 and all(pf.is_managed_descr(d) for d in descrs[:2])
    assert not apply(fixed, fw_dict)[0]["changed"]


def test_changed_rule_gets_a_new_updated_stamp_and_keeps_created():
    fw_dict = firewall("empty", "fw-int")
    _r, good = apply(config_bytes("empty"), fw_dict)
    root = pf.parse_config(good)
    _drift_port(root)
    result, fixed = apply(pf.dump_config(root), fw_dict, now=NOW + 60)
    assert len(result["updated"]) == 1 and result["updated"][0] in [r["id"] for r in fw_dict["rules"]]
    stamps = [(r.findtext("created/time"), r.findtext("updated/time")) for r in _managed(pf.parse_config(fixed))]
    assert ("%d" % NOW, "%d" % (NOW + 60)) in stamps
    assert stamps.count(("%d" % NOW, "%d" % NOW)) == len(stamps) - 1


def test_policy_change_removes_what_is_no_longer_there():
    fw_dict = firewall("crowded", "fw-ext")
    _r, good = apply(config_bytes("crowded"), fw_dict)
    smaller = copy.deepcopy(fw_dict)
    dropped = [r for r in smaller["rules"] if r["dport"] == ["50000-59999"]]
    assert dropped
    smaller["rules"] = [r for r in smaller["rules"] if r not in dropped]
    result, out = apply(good, smaller)
    assert result["changed"]
    assert sorted(r for r in result["removed"] if not r.startswith("alias:")) == sorted(r["id"] for r in dropped)
    assert_matches_policy(out, smaller)
    assert _unmanaged_rules(out) == _unmanaged_rules(config_bytes("crowded"))
    assert _separator_targets(out) == _separator_targets(config_bytes("crowded"))


def test_unmanaged_reference_to_a_removed_alias_is_warned():
    fw_dict = firewall("crowded", "fw-ext")
    _r, good = apply(config_bytes("crowded"), fw_dict)
    root = pf.parse_config(good)
    mine = next(r for r in root.find("filter").findall("rule") if r.findtext("descr") == "ping")
    mine.find("destination").remove(mine.find("destination/network"))
    ET.SubElement(mine.find("destination"), "address").text = "OCS_ports_50000_59999"
    smaller = copy.deepcopy(fw_dict)
    smaller["rules"] = [r for r in smaller["rules"] if "50000-59999" not in (r["dport"] or []) + (r["sport"] or [])]
    result, _out = apply(pf.dump_config(root), smaller)
    assert any("OCS_ports_50000_59999" in w and "not the collection's" in w for w in result["warnings"])
    assert not apply(good, fw_dict)[0]["warnings"]


def test_trackers_are_unique_against_unmanaged_ones_and_stable():
    fw_dict = firewall("crowded", "fw-int")
    taken = pf.tracker_for("lan", fw_dict["rules"][0]["id"])
    root = pf.parse_config(config_bytes("crowded"))
    root.find("filter").findall("rule")[2].find("tracker").text = "%d" % taken
    data = pf.dump_config(root)
    _r, out1 = apply(data, fw_dict)
    _r, out2 = apply(data, fw_dict)
    assert out1 == out2
    _aliases, rules = read_with_minidom(out1)
    trackers = [r["tracker"] for r in rules if r["descr"].startswith(MARKER)]
    assert "%d" % taken not in trackers and len(set(trackers)) == len(trackers)
    assert all(pf.TRACKER_BASE <= int(t) < pf.TRACKER_BASE + pf.TRACKER_SPAN for t in trackers)


# --------------------------------------------------------------------------- errors


def test_missing_zone_interface_is_an_error():
    fw_dict = firewall("empty", "fw-ext")
    del fw_dict["interfaces"]["internet"]
    with pytest.raises(FirewallError, match=r"src_zone: zone 'internet' has no interface"):
        apply(config_bytes("empty"), fw_dict)


def test_interface_not_in_config_is_an_error():
    fw_dict = firewall("empty", "fw-ext")
    fw_dict["interfaces"]["perimeter"] = "opt7"
    with pytest.raises(pf.PfSenseError, match=r"'opt7'.*no such interface.*lan, opt1, wan"):
        apply(config_bytes("empty"), fw_dict)


def test_interface_description_instead_of_id_is_an_error():
    fw_dict = firewall("empty", "fw-ext")
    fw_dict["interfaces"]["perimeter"] = "DMZ"
    with pytest.raises(pf.PfSenseError, match="not a pfSense interface id"):
        apply(config_bytes("empty"), fw_dict)


def test_wrong_platform_and_mode_are_errors():
    fw_dict = firewall("empty", "fw-ext")
    with pytest.raises(FirewallError, match="platform"):
        apply(config_bytes("empty"), dict(fw_dict, platform="nftables"))
    with pytest.raises(FirewallError, match="mode"):
        apply(config_bytes("empty"), dict(fw_dict, mode="host"))


def test_not_a_pfsense_config_is_an_error():
    with pytest.raises(pf.PfSenseError, match="root element"):
        pf.parse_config(b"<opnsense></opnsense>")
    with pytest.raises(pf.PfSenseError, match="does not parse"):
        pf.parse_config(b"<pfsense><filter></pfsense>")


# --------------------------------------------------------------------------- write_config


def test_write_config_backs_up_first_sets_revision_and_removes_cache(tmp_path):
    conf = tmp_path / "config.xml"
    backup = tmp_path / "backup"
    cache = tmp_path / "config.cache"
    conf.write_bytes(config_bytes("crowded"))
    cache.write_text("x")
    old = conf.read_bytes()
    root = pf.parse_config(old)
    plan = pf.reconcile(root, firewall("crowded", "fw-ext"), "fw-ext", now=NOW)
    written = pf.write_config(str(conf), str(backup), str(cache), root, old, plan["root"], NOW, "tester", "desc")
    assert written["backup"] == str(backup / "config-1690000000.xml")   # revision time of the old file
    assert (backup / "config-1690000000.xml").read_bytes() == old
    assert not cache.exists()
    assert oct(conf.stat().st_mode & 0o777) == "0o644"
    new = pf.parse_config(conf.read_bytes())
    assert new.findtext("revision/time") == "%d" % NOW
    assert new.findtext("revision/description") == "tester: desc"
    assert new.findtext("revision/username") == "tester"
    cache_data = pf.php_unserialize((backup / "backup.cache").read_text())
    assert cache_data == {1690000000: {"description": "admin@10.99.0.10 (Local Database): Firewall: Rules - "
                                                      "saved/edited a firewall rule.",
                                       "version": "23.3", "filesize": len(old)}}
    # second write: the previous file is backed up under its own revision time, cache extended
    old2 = conf.read_bytes()
    root2 = pf.parse_config(old2)
    plan2 = pf.reconcile(root2, firewall("crowded", "fw-ext"), "fw-ext", state="absent", now=NOW + 5)
    pf.write_config(str(conf), str(backup), "", root2, old2, plan2["root"], NOW + 5, "tester", "absent")
    assert (backup / ("config-%d.xml" % NOW)).read_bytes() == old2
    assert sorted(pf.php_unserialize((backup / "backup.cache").read_text())) == [1690000000, NOW]


def test_backup_never_overwrites_a_different_backup(tmp_path):
    conf = tmp_path / "config.xml"
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "config-0.xml").write_text("older")
    conf.write_bytes(config_bytes("empty"))
    old = conf.read_bytes()
    root = pf.parse_config(old)
    path, _w = pf.backup_config(str(conf), str(backup), root, old, NOW)
    assert path == str(backup / ("config-%d.xml" % NOW))
    assert (backup / "config-0.xml").read_text() == "older"


def test_unreadable_backup_cache_is_left_alone(tmp_path):
    conf = tmp_path / "config.xml"
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "backup.cache").write_text("garbage")
    conf.write_bytes(config_bytes("empty"))
    old = conf.read_bytes()
    _p, warning = pf.backup_config(str(conf), str(backup), pf.parse_config(old), old, NOW)
    assert "could not be read" in warning
    assert (backup / "backup.cache").read_text() == "garbage"


def test_php_serialize_round_trip():
    value = {1: {"description": 'a "b" é', "version": "23.3", "filesize": 12}, 2: {"x": True}}
    text = pf.php_serialize(value)
    assert text.startswith('a:2:{i:1;a:3:{s:11:"description";s:8:"a "b" é";')
    assert pf.php_unserialize(text) == {1: value[1], 2: {"x": 1}}


def test_configs_used_exist():
    assert CONFIGS["empty"][0].is_file() and CONFIGS["crowded"][0].is_file()
