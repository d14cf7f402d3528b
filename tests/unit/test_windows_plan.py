"""Windows backend: normalising what Windows reports and planning create/update/remove.
Pure Python; current states are data (COM form as the role's reader returns it, the
Get-NetFirewallRule form, the module's parameter form)."""
import copy
import importlib.util
import json

import pytest

from inventory_loader import REPO, example

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.windows import (
    DEFAULT_GROUP,
    PROFILES,
    WindowsFirewallError,
    desired as desired_rules,
    norm_action,
    norm_addresses,
    norm_direction,
    norm_enabled,
    norm_ports,
    norm_profiles,
    norm_protocol,
    normalise,
    compare,
)

SHADOW = REPO / "tests" / "fixtures" / "shadow_collections" / "ansible_collections"
FIXTURES = REPO / "tests" / "fixtures" / "windows"


def _shadow():
    spec = importlib.util.spec_from_file_location(
        "shadow_win_firewall_rule", SHADOW / "community" / "windows" / "plugins" / "action" / "win_firewall_rule.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


to_com = _shadow().to_com


@pytest.fixture(scope="module")
def desired():
    fw = build_policy(example("single_site"))["firewalls"]["ae1"]
    return desired_rules(fw, name="ae1")


def com_state(desired):
    return [to_com(p) for p in desired]


# ------------------------------------------------------------------ normalisation


@pytest.mark.parametrize("raw,want", [
    (1, "in"), ("1", "in"), ("in", "in"), ("Inbound", "in"), ({"String": "Inbound", "Value": 1}, "in"),
    (2, "out"), ("Outbound", "out"), ("OUT", "out"),
])
def test_direction(raw, want):
    assert norm_direction(raw) == want


@pytest.mark.parametrize("raw,want", [
    (1, "allow"), ("allow", "allow"), ("Allow", "allow"), (2, "allow"), ({"String": "Allow", "Value": 2}, "allow"),
    (0, "block"), ("Block", "block"), (4, "block"),
])
def test_action(raw, want):
    assert norm_action(raw) == want


@pytest.mark.parametrize("raw,want", [
    (True, True), ("True", True), (1, True), ({"String": "True", "Value": 1}, True),
    (False, False), ("False", False), (2, False), (0, False),
])
def test_enabled(raw, want):
    assert norm_enabled(raw) is want


@pytest.mark.parametrize("raw,want", [
    (6, "tcp"), ("6", "tcp"), ("TCP", "tcp"), ("tcp", "tcp"), (17, "udp"), ("UDP", "udp"),
    (256, "any"), ("Any", "any"), (None, "any"), (58, "icmpv6"),
])
def test_protocol(raw, want):
    assert norm_protocol(raw) == want


@pytest.mark.parametrize("raw,want", [
    (0x7FFFFFFF, PROFILES), (2147483647, PROFILES), (7, PROFILES), (0, PROFILES), ("Any", PROFILES),
    (["domain", "private", "public"], PROFILES), ("Domain, Private, Public", PROFILES),
    ({"String": "Any", "Value": 0}, PROFILES),
    (1, ("domain",)), (3, ("domain", "private")), (4, ("public",)), ("Public", ("public",)),
    ("Domain, Public", ("domain", "public")), (["public", "domain"], ("domain", "public")),
])
def test_profiles(raw, want):
    assert norm_profiles(raw) == tuple(want)


@pytest.mark.parametrize("raw,want", [
    ("*", None), ("Any", None), ("any", None), (None, None), ("", None), ([], None), (["Any"], None),
    ("5061", ("5061",)), (5061, ("5061",)), (["5061"], ("5061",)), ("443,80", ("80", "443")),
    (["443", "80"], ("80", "443")), ("50000-59999", ("50000-59999",)), ("5061-5061", ("5061",)),
    ("RPC", ("rpc",)),
])
def test_ports(raw, want):
    assert norm_ports(raw) == want


@pytest.mark.parametrize("raw,want", [
    ("*", None), ("Any", None), (None, None), ([], None),
    ("172.16.1.10/255.255.255.255", ("172.16.1.10",)), ("172.16.1.10", ("172.16.1.10",)),
    ("172.16.1.10/32", ("172.16.1.10",)), (["172.16.1.10"], ("172.16.1.10",)),
    ("10.99.0.0/255.255.255.0", ("10.99.0.0/24",)), ("10.99.0.0/24", ("10.99.0.0/24",)),
    ("10.0.0.2/255.255.255.255,10.0.0.1/255.255.255.255", ("10.0.0.1", "10.0.0.2")),
    ("10.0.0.1-10.0.0.9", ("10.0.0.1-10.0.0.9",)), ("10.0.0.1-10.0.0.1", ("10.0.0.1",)),
    ("2001:db8::1/128", ("2001:db8::1",)), ("2001:DB8::1", ("2001:db8::1",)),
    ("LocalSubnet", ("localsubnet",)),
])
def test_addresses(raw, want):
    assert norm_addresses(raw) == want


def test_three_shapes_normalise_alike(desired):
    netsec = json.loads((FIXTURES / "single_site__ae1.netsecurity.json").read_text())["rules"][:5]
    for params, com, ns in zip(desired, com_state(desired), netsec):
        assert normalise(params) == normalise(com) == normalise(ns), params["name"]


# ------------------------------------------------------------------ plan


def test_empty_group_creates_everything(desired):
    result = compare(desired, [])
    assert result["to_create"] == desired
    assert result["to_update"] == [] and result["to_remove"] == [] and result["unchanged"] == []
    assert [c["action"] for c in result["changes"]] == ["create"] * len(desired)
    assert result["changed"] is True


@pytest.mark.parametrize("shape", ["com", "params", "netsecurity", "reader_result"])
def test_exact_match_plans_nothing(desired, shape):
    current = {
        "com": com_state(desired),
        "params": copy.deepcopy(desired),
        "netsecurity": json.loads((FIXTURES / "single_site__ae1.netsecurity.json").read_text())["rules"],
        "reader_result": {"group": DEFAULT_GROUP, "total": 400, "rules": com_state(desired)},
    }[shape]
    result = compare(desired, current)
    assert result["changed"] is False
    assert result["to_create"] == result["to_update"] == result["to_remove"] == result["changes"] == []
    assert result["unchanged"] == [p["name"] for p in desired]


def test_reported_forms_and_order_are_not_drift(desired):
    current = com_state(desired)
    current.reverse()
    current[0]["RemoteAddresses"] = "*"
    current[1]["Profiles"] = 7
    current[2]["Name"] = current[2]["Name"].upper()          # Windows compares names case-insensitively
    current[3]["Grouping"] = DEFAULT_GROUP.lower()
    assert compare(desired, current)["changed"] is False


def test_stale_rule_is_removed(desired):
    current = com_state(desired)
    stale = to_com(dict(desired[0], name="OCS edge central-t99-f1-in", localport="8080"))
    result = compare(desired, current + [stale])
    assert result["to_remove"] == [{"name": "OCS edge central-t99-f1-in", "state": "absent"}]
    assert result["to_create"] == result["to_update"] == []
    assert [(c["name"], c["action"]) for c in result["changes"]] == [("OCS edge central-t99-f1-in", "remove")]


def test_result_shape_is_the_backend_contract(desired):
    """created / updated / removed by rule id (docs/backend-contract.md), warnings, diff."""
    current = com_state(desired)
    next(r for r in current if r["Name"] == "OCS edge central-t14-f4-in")["LocalPorts"] = "8443"
    gone = current.pop(0)
    current.append(to_com(dict(desired[0], name="OCS edge central-t99-f1-in")))
    current.append(to_com(dict(desired[0], name="Hand made")))
    result = compare(desired, current)
    assert result["created"] == [desired[0]["name"][len("OCS edge "):]] and gone["Name"] == desired[0]["name"]
    assert result["updated"] == ["central-t14-f4-in"]
    assert result["removed"] == ["rule:Hand made", "central-t99-f1-in"]
    assert result["warnings"] == [] and result["changed"] is True
    diff = result["diff"][0]
    assert "localport=8443" in diff["before"] and "Hand made" in diff["before"] and "Hand made" not in diff["after"]
    quiet = compare(desired, com_state(desired))
    assert (quiet["created"], quiet["updated"], quiet["removed"]) == ([], [], []) and "diff" not in quiet


def test_changed_port_is_put_back(desired):
    current = com_state(desired)
    target = next(r for r in current if r["Name"] == "OCS edge central-t14-f4-in")
    target["LocalPorts"] = "8443"
    result = compare(desired, current)
    assert result["to_update"] == [p for p in desired if p["name"] == "OCS edge central-t14-f4-in"]
    assert result["to_create"] == result["to_remove"] == []
    assert result["changes"] == [{"name": "OCS edge central-t14-f4-in", "action": "update",
                                  "fields": {"localport": {"before": "8443", "after": "443"}}}]


@pytest.mark.parametrize("prop,value,field", [
    ("RemoteAddresses", "0.0.0.0/0.0.0.0", "remoteip"),
    ("LocalAddresses", "172.16.1.99/255.255.255.255", "localip"),
    ("RemotePorts", "5062", "remoteport"),
    ("Enabled", False, "enabled"),
    ("Action", 0, "action"),
    ("Direction", 1, "direction"),
    ("Profiles", 3, "profiles"),
    ("Description", "edited by hand", "description"),
    ("ApplicationName", "C:\\evil.exe", "program"),
    ("ServiceName", "w3svc", "service"),
])
def test_each_owned_value_is_put_back(desired, prop, value, field):
    current = com_state(desired)
    current[0][prop] = value
    result = compare(desired, current)
    assert [p["name"] for p in result["to_update"]] == [desired[0]["name"]]
    assert list(result["changes"][0]["fields"]) == [field]


def test_protocol_change_recreates(desired):
    current = com_state(desired)
    current[0]["Protocol"] = 17
    result = compare(desired, current)
    assert result["to_remove"] == [{"name": desired[0]["name"], "state": "absent"}]
    assert result["to_create"] == [desired[0]] and result["to_update"] == []
    assert result["changes"][0]["action"] == "recreate"


def test_duplicate_in_group_recreates(desired):
    current = com_state(desired) + [to_com(desired[1])]
    result = compare(desired, current)
    assert result["to_remove"] == [{"name": desired[1]["name"], "state": "absent"}]
    assert result["to_create"] == [desired[1]]
    assert result["changes"][0]["fields"] == {"count": {"before": 2, "after": 1}}


def test_rule_outside_the_group_is_never_touched(desired):
    current = com_state(desired)
    rdp = json.loads((FIXTURES / "single_site__ae1.netsecurity.json").read_text())["rules"][-1]
    other = to_com(dict(desired[0], name="Contoso SIP", group="Contoso"))
    result = compare(desired, current + [rdp, other])
    assert result["changed"] is False
    everything = json.dumps(result)
    assert "Remote Desktop" not in everything and "Contoso" not in everything


@pytest.mark.parametrize("clash", ["OCS edge central-t14-f4-in", "ocs EDGE central-t14-f4-in"])
def test_name_collision_outside_the_group_is_refused(desired, clash):
    current = com_state(desired) + [to_com(dict(desired[0], name=clash, group="Someone else"))]
    with pytest.raises(WindowsFirewallError) as err:
        compare(desired, current, name="ae1")
    msg = str(err.value)
    assert msg.startswith("host ae1: Windows Firewall rule(s) outside group")
    assert "'Someone else'" in msg and "nothing was changed" in msg


def test_collision_with_a_stale_name_is_refused(desired):
    stale = to_com(dict(desired[0], name="OCS edge old"))
    outside = to_com(dict(desired[0], name="OCS edge old", group="Other"))
    with pytest.raises(WindowsFirewallError):
        compare(desired, com_state(desired) + [stale, outside])


def test_state_absent_removes_the_whole_group_only(desired):
    rdp = json.loads((FIXTURES / "single_site__ae1.netsecurity.json").read_text())["rules"][-1]
    result = compare([], com_state(desired) + [rdp])
    assert sorted(r["name"] for r in result["to_remove"]) == sorted(p["name"] for p in desired)
    assert result["to_create"] == result["to_update"] == []


def test_bad_current_state_is_reported():
    with pytest.raises(WindowsFirewallError, match="ocs_windows_firewall_current_rules\\): must be a list"):
        compare([], "nope", name="ae1")
    with pytest.raises(WindowsFirewallError, match="host ae1: current rules"):
        compare([], {"unexpected": 1}, name="ae1")
    with pytest.raises(WindowsFirewallError, match="an entry has no name"):
        compare([], [{"Grouping": DEFAULT_GROUP}], name="ae1")


def test_null_entries_are_no_rules(desired):
    assert compare(desired, [None] + com_state(desired))["changed"] is False
    assert compare(desired, {"rules": [None]})["to_create"] == desired


def test_description_case_only_is_not_drift_like_the_module(desired):
    current = com_state(desired)
    current[0]["Description"] = current[0]["Description"].upper()
    assert compare(desired, current)["changed"] is False
