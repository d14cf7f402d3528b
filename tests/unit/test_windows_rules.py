"""Windows backend: FIREWALL -> win_firewall_rule parameter sets (golden files, seed oracle,
the real module's argument spec, input validation). Pure Python, no Windows involved."""
import copy
import importlib.util
import json
import os
from pathlib import Path

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

import doc_spec
from inventory_loader import REPO, TOPOLOGIES, example

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.windows import (
    DEFAULT_GROUP,
    WindowsFirewallError,
    desired,
)

GOLDEN = REPO / "tests" / "golden" / "windows"


def real_module_path(collection="community.windows", module="win_firewall_rule"):
    """The installed module (the `ansible` package's copy), never the tests' shadow."""
    spec = importlib.util.find_spec("ansible_collections." + collection)
    assert spec is not None, "%s is not installed" % collection
    path = Path(list(spec.submodule_search_locations)[0]) / "plugins" / "modules" / ("%s.py" % module)
    assert path.is_file(), path
    assert "shadow" not in str(path)
    return path


def documented_spec():
    """Argument spec built from the installed module's DOCUMENTATION (not copied by hand)."""
    return doc_spec.documented_spec(real_module_path())


def windows_hosts(topology):
    policy = build_policy(example(topology))
    return policy, {n: fw for n, fw in policy["firewalls"].items() if fw["platform"] == "windows"}


CASES = [(t, h) for t in TOPOLOGIES for h in sorted(windows_hosts(t)[1])]


def test_every_topology_has_windows_hosts():
    assert {t for t, _ in CASES} == set(TOPOLOGIES)


@pytest.mark.parametrize("topology,host", CASES, ids=["%s__%s" % c for c in CASES])
def test_golden(topology, host):
    """The exact parameter sets per Windows host. Regenerate: OCS_UPDATE_GOLDEN=1 pytest ..."""
    _, fws = windows_hosts(topology)
    got = desired(fws[host], name=host)
    path = GOLDEN / ("%s__%s.json" % (topology, host))
    text = json.dumps(got, indent=1, sort_keys=False) + "\n"
    if os.environ.get("OCS_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.is_file(), "missing golden file %s (run with OCS_UPDATE_GOLDEN=1 and review it)" % path
    assert json.loads(path.read_text()) == got


def test_no_stale_golden_files():
    expected = {"%s__%s.json" % c for c in CASES}
    assert {p.name for p in GOLDEN.glob("*.json")} == expected


def _own(value, role):
    return value[role] if isinstance(value, dict) else value


@pytest.mark.parametrize("topology,host", CASES, ids=["%s__%s" % c for c in CASES])
def test_seed_oracle(topology, host):
    """Each seed rule that concerns the server, seen from the server, from the inventory's own
    addresses (not the engine's host cut-down): the issue's mapping, row by row, and nothing else."""
    hostvars = example(topology)
    policy, fws = windows_hosts(topology)
    got = {p["name"]: p for p in desired(fws[host], name=host)}
    hv = hostvars[host]
    expected = {}
    for rule in policy["rules"]:
        if host not in rule["servers"]:
            continue
        side = rule["firewall"]
        # page: internal firewall "outbound" = internal network -> edge (server receives),
        # "inbound" = edge -> internal (server initiates); external "inbound" = Internet -> edge.
        initiates = (side, rule["direction"]) in (("internal", "inbound"), ("external", "outbound"))
        own = _own(hv["ocs_internal_ip"] if side == "internal" else hv["ocs_external_ip"], rule["server_role"])
        expected["OCS edge " + rule["id"]] = {
            "direction": "out" if initiates else "in",
            "protocol": rule["protocol"],
            "localip": own,
            "localport": ",".join(rule["local_ports"]) if rule["local_ports"] else "any",
            "remoteip": ",".join(rule["remote_addresses"]) if rule["remote_addresses"] else "any",
            "remoteport": ",".join(rule["remote_ports"]) if rule["remote_ports"] else "any",
            "table_figure": "seed table %d figure %d" % (rule["table"], rule["figure"]),
        }
    assert set(got) == set(expected)
    for name, exp in expected.items():
        params = got[name]
        assert exp.pop("table_figure") in params["description"]
        assert {k: params[k] for k in exp} == exp, name
        assert params["group"] == DEFAULT_GROUP and params["action"] == "allow" and params["enabled"] is True
        assert params["profiles"] == ["domain", "private", "public"]


def test_issue_examples_single_site():
    """The flows the issue names, on single_site (no Director, next hop 10.10.1.20)."""
    policy, fws = windows_hosts("single_site")
    ae = {p["name"]: p for p in desired(fws["ae1"], name="ae1")}
    rp = {p["name"]: p for p in desired(fws["rp1"], name="rp1")}
    nexthop = policy["deployment"]["director"] or policy["deployment"]["next_hop"]
    # edge -> next hop 5061: an outbound rule with that remote port and remote address
    out = ae["OCS edge central-t14-f5-in"]
    assert (out["direction"], out["localip"], out["remoteip"], out["remoteport"], out["localport"]) == \
        ("out", "172.16.1.10", nexthop, "5061", "any")
    # internal network -> edge 5061: inbound on the internal address (remote: the Director, or
    # any when there is none - the seed's "Director or any" - single_site has only a next hop)
    inn = ae["OCS edge central-t14-f5-out"]
    assert policy["deployment"]["director"] is None
    assert (inn["direction"], inn["localip"], inn["localport"], inn["remoteip"]) == \
        ("in", "172.16.1.10", "5061", "any")
    # Internet -> edge 443: inbound on the external address
    ext = ae["OCS edge central-t14-f4-in"]
    assert (ext["direction"], ext["localip"], ext["localport"], ext["remoteip"]) == ("in", "203.0.113.10", "443", "any")
    # reverse proxy -> internal 443: outbound, remote port 443
    rpo = rp["OCS edge central-t13-f2-in"]
    assert (rpo["direction"], rpo["localip"], rpo["remoteport"], rpo["remoteip"]) == ("out", "172.16.1.5", "443", "any")
    # an Inbound/Outbound row gives both
    assert {ae["OCS edge central-t14-f3-in"]["direction"], ae["OCS edge central-t14-f3-out"]["direction"]} == {"in", "out"}


def test_consolidated_uses_the_per_role_external_address():
    _, fws = windows_hosts("consolidated")
    rules = desired(fws["edge1"], name="edge1")
    by_role = {}
    for p in rules:
        if p["localip"].startswith("203."):
            role = p["description"].split(": ")[1].split(" ")[0]
            by_role.setdefault(role, set()).add(p["localip"])
    assert by_role == {"access_edge": {"203.0.113.10"}, "web_conferencing_edge": {"203.0.113.11"},
                       "av_edge": {"203.0.113.12"}}


def test_array_members_get_their_own_address_not_the_vip():
    _, fws = windows_hosts("scaled_single_site")
    for host, own_int in (("av1", "172.16.1.51"), ("av2", "172.16.1.52")):
        for p in desired(fws[host], name=host):
            assert p["localip"] in (own_int, own_int.replace("172.16.1", "203.0.113")), (host, p)


def test_argument_spec_is_the_real_modules():
    spec = documented_spec()
    assert {"name", "group", "direction", "localip", "remoteport", "profiles", "state"} <= set(spec)
    assert spec["direction"]["choices"] == ["in", "out"]
    # the validator is live: a wrong value and an unknown option are refused
    bad = ArgumentSpecValidator(spec).validate({"name": "x", "direction": "inbound", "bogus": 1})
    assert len(bad.error_messages) == 2, bad.error_messages


@pytest.mark.parametrize("topology,host", CASES, ids=["%s__%s" % c for c in CASES])
def test_every_parameter_set_validates_against_win_firewall_rule(topology, host):
    validator = ArgumentSpecValidator(documented_spec())
    _, fws = windows_hosts(topology)
    sets = desired(fws[host], name=host)
    sets += [{"name": p["name"], "state": "absent"} for p in sets]      # what the role sends to remove
    for params in sets:
        result = validator.validate(copy.deepcopy(params))
        assert not result.error_messages, (params["name"], result.error_messages)
        # nothing was coerced: the role sends exactly these values
        assert {k: result.validated_parameters[k] for k in params} == params


# ---------------------------------------------------------------- input validation (point 5)

def _fw(**changes):
    _, fws = windows_hosts("single_site")
    fw = copy.deepcopy(fws["ae1"])
    fw.update(changes)
    return fw


@pytest.mark.parametrize("field,value,message", [
    ("dst", None, "host ae1: rule central-t14-f5-out: local address (dst): the host's own address is missing"),
    ("dst", [], "firewall ae1: rules[1] (central-t14-f5-out).dst must be null (any) or a non-empty list"),
    ("dst", ["172.16.1.10;drop"], "dst[0]: '172.16.1.10;drop' is not a valid IP address"),
    ("dport", ["70000"], "(central-t14-f5-out).dport[0]: '70000' is not a port"),
    ("chain", "forward", "chain: 'forward' is not valid in host mode (expected input or output)"),
    ("protocol", "icmp", "protocol: 'icmp' is not supported (tcp or udp)"),
])
def test_bad_rule_is_refused_naming_host_and_rule(field, value, message):
    fw = _fw()
    rule = next(r for r in fw["rules"] if r["id"] == "central-t14-f5-out")
    rule[field] = value
    with pytest.raises(WindowsFirewallError, match=None) as err:
        desired(fw, name="ae1")
    assert message in str(err.value)


def test_outbound_rule_without_own_source_is_refused():
    fw = _fw()
    rule = next(r for r in fw["rules"] if r["chain"] == "output")
    rule["src"] = None
    with pytest.raises(WindowsFirewallError) as err:
        desired(fw, name="ae1")
    assert "host ae1: rule %s: local address (src): the host's own address is missing" % rule["id"] in str(err.value)


@pytest.mark.parametrize("changes,message", [
    ({"platform": "nftables"}, "firewall ae1: firewall.platform: platform is 'nftables'; this module only enforces windows"),
    ({"mode": "network"}, "firewall ae1: mode: 'network' is not host"),
    ({"rules": "x"}, "firewall ae1: rules must be a list of PFRULE dicts"),
])
def test_wrong_firewall_is_refused(changes, message):
    with pytest.raises(WindowsFirewallError) as err:
        desired(_fw(**changes), name="ae1")
    assert message in str(err.value)


@pytest.mark.parametrize("profiles,ok", [
    (["public"], ["public"]),
    (["Public", "domain", "public"], ["domain", "public"]),
    ("private,domain", ["domain", "private"]),
    ([], None), (["office"], None), (None, None),
])
def test_profiles_variable(profiles, ok):
    if ok is None:
        with pytest.raises(WindowsFirewallError) as err:
            desired(_fw(), name="ae1", profiles=profiles)
        assert "host ae1: ocs_windows_firewall_profiles:" in str(err.value)
    else:
        assert {tuple(p["profiles"]) for p in desired(_fw(), name="ae1", profiles=profiles)} == {tuple(ok)}


def test_names_are_stable_and_prefixed():
    rules = desired(_fw(), name="ae1", prefix="Contoso OCS")
    assert [p["name"] for p in rules] == ["Contoso OCS " + r["id"] for r in _fw()["rules"]]
    with pytest.raises(WindowsFirewallError):
        desired(_fw(), name="ae1", prefix="bad;prefix")


def test_missing_address_fails_in_the_policy_before_any_firewall():
    """Point 5 for inventories: the policy engine (deploy play 1) names host and variable."""
    from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import PolicyError
    hv = example("scaled_single_site")
    del hv["av2"]["ocs_external_ip"]
    with pytest.raises(PolicyError) as err:
        build_policy(hv)
    assert "host av2: ocs_external_ip: is required for roles av_edge" in str(err.value)
