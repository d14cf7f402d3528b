"""The backend contract's shared parts: the one parser (rules.py), the platform table
(platforms.py) and what the deploy playbook and policy engine take from it."""
import copy
import ipaddress

import pytest
import yaml

from inventory_loader import REPO, example

from ansible_collections.ocs.edge_firewall.plugins.filter.edge_policy import edge_platform
from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables, nftables
from ansible_collections.ocs.edge_firewall.plugins.module_utils.backend import Changes, rule_changes
from ansible_collections.ocs.edge_firewall.plugins.module_utils.platforms import PLATFORMS
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import (
    FirewallError, Rule, parse_firewall, parse_rule,
)
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import PolicyError, build_policy
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.windows import WindowsFirewallError

PFRULE = {"id": "central-t14-f5-in", "protocol": "tcp", "src": ["172.16.1.10"], "dst": ["10.10.1.0/24"],
          "sport": None, "dport": ["5061", "50000-59999"], "src_zone": "perimeter", "dst_zone": "internal",
          "chain": "forward", "comment": "ocs central-t14-f5-in", "table": 14}


def test_parse_rule_gives_a_typed_rule():
    rule = parse_rule(PFRULE, 0, "fw", "network")
    assert isinstance(rule, Rule) and rule.id == "central-t14-f5-in" and rule.protocol == "tcp"
    assert rule.src == (ipaddress.ip_network("172.16.1.10/32"),) and rule.dst == (ipaddress.ip_network("10.10.1.0/24"),)
    assert rule.sport is None and rule.dport == ((5061, 5061), (50000, 59999))
    assert (rule.src_zone, rule.dst_zone, rule.chain) == ("perimeter", "internal", "forward")
    assert rule.extra == {"table": 14}


@pytest.mark.parametrize("change,message", [
    ({"id": "central-t14-f5-in\n"}, "rules[0].id: 'central-t14-f5-in\\n' is not a rule id"),
    ({"src_zone": "perimeter\n"}, ".src_zone: 'perimeter\\n' is not a zone name"),
    ({"dport": ["5061\n"]}, ".dport[0]: '5061\\n' is not a port"),
    ({"dport": [True]}, ".dport[0]: True is not a port"),
    ({"dport": [{"port": 1}]}, ".dport[0]: {'port': 1} is not a port"),
    ({"src": [10]}, ".src[0]: 10 is not an IP address or network (a string)"),
    ({"src": {"a": 1}}, ".src must be null (any) or a non-empty list"),
    ({"protocol": ["tcp"]}, ".protocol: ['tcp'] is not supported (tcp or udp)"),
    ({"chain": "input"}, ".chain: 'input' is not valid in network mode"),
])
def test_wrong_values_and_types_are_named_errors(change, message):
    with pytest.raises(FirewallError) as err:
        parse_rule(dict(PFRULE, **change), 0, "fw", "network")
    assert str(err.value).startswith("firewall fw: rules[0]") and message in str(err.value)


def test_not_a_dict_is_a_named_error():
    with pytest.raises(FirewallError, match=r"firewall fw: rules\[3\] must be a dict \(PFRULE\), got 'x'"):
        parse_rule("x", 3, "fw", "network")


@pytest.mark.parametrize("platform,ifname,ok", [
    ("nftables", "eth0", True), ("nftables", "eth0\n", False), ("nftables", "a" * 16, False),
    ("iptables", "eth+", True), ("iptables", "eth0\n", False), ("pfsense", "opt1", True), ("pfsense", "opt1\n", False),
])
def test_interface_names_match_the_whole_string(platform, ifname, ok):
    mode = PLATFORMS[platform].modes[0]
    fw = {"mode": mode, "interfaces": {"internal": ifname}, "rules": [],
          "management": {"sources": ["10.99.0.0/24"], "ports": ["22"]}}
    if ok:
        assert parse_firewall(fw, "fw", platform).interfaces == {"internal": ifname}
    else:
        with pytest.raises(FirewallError, match="firewall fw: interfaces.internal: interface"):
            parse_firewall(fw, "fw", platform)


def test_every_backend_error_is_a_firewall_error():
    for cls in (nftables.NftError, iptables.IptError, WindowsFirewallError):
        assert issubclass(cls, FirewallError) and not issubclass(cls, ValueError)


def test_rule_changes_groups_by_id_and_sees_order():
    desired = {"c": [{"id": "a", "comment": "A", "k": 1}, {"id": "b", "comment": "B", "k": 2}]}
    live = {"c": [{"comment": "B", "k": 2}, {"comment": "A", "k": 1}]}

    def key(rule):
        return rule["k"]

    def label(chain, rule):
        return "rule:%s: %s" % (chain, rule["k"])

    assert rule_changes(desired, live, key, label).as_dict() == {"created": [], "updated": ["chain:c"], "removed": []}
    live = {"c": [{"comment": "A", "k": 9}, {"comment": None, "k": 7}, {"comment": "A", "k": 1}]}
    assert rule_changes(desired, live, key, label).as_dict() == {
        "created": ["b"], "updated": ["a"], "removed": ["rule:c: 7"]}
    assert not Changes().changed and Changes(removed=["x"]).changed


# ------------------------------------------------------------------ the platform table

def test_every_platform_has_its_role_and_the_playbook_includes_it_by_name():
    for name, spec in PLATFORMS.items():
        assert spec.role == name, "roles are named after their platform"
        assert (REPO / "roles" / name / "tasks" / "main.yml").is_file(), name
    # the deploy checks (tasks/check_firewall.yml) and applies (tasks/apply_firewall.yml) through
    # the role named after the platform: no map, no playbook_dir guard
    for tasks in ("check_firewall.yml", "apply_firewall.yml"):
        text = (REPO / "playbooks" / "tasks" / tasks).read_text()
        blocks = [t for t in yaml.safe_load(text) if "block" in t]
        names = [t["ansible.builtin.include_role"]["name"] for b in blocks for t in b["block"]
                 if "ansible.builtin.include_role" in t]
        assert "ocs.edge_firewall.{{ ocs_firewall.platform }}" in names, tasks
    text = "".join(p.read_text() for p in (REPO / "playbooks").rglob("*.yml"))
    assert "playbook_dir" not in text and "not implemented" not in text


def test_edge_platform_filter():
    assert edge_platform("nftables")["become"] is True and edge_platform("windows")["become"] is False
    assert edge_platform("iptables")["families"] == [4]
    with pytest.raises(Exception, match="edge_platform: 'opnsense' is not one of nftables, iptables, pfsense, windows"):
        edge_platform("opnsense")


@pytest.mark.parametrize("host,var,value,message", [
    ("fw-int", "ocs_firewall_platform", "opnsense",
     "host fw-int: ocs_firewall_platform: 'opnsense' is not one of nftables, iptables, pfsense"),
    ("fw-int", "ocs_firewall_platform", "windows",
     "host fw-int: ocs_firewall_platform: 'windows' is not one of nftables, iptables, pfsense "
     "(Windows Firewall is a host firewall"),
    ("ae1", "ocs_host_firewall", "opnsense",
     "host ae1: ocs_host_firewall: 'opnsense' is not one of nftables, iptables, windows"),
])
def test_unknown_platform_fails_in_the_policy_naming_host_and_variable(host, var, value, message):
    hv = copy.deepcopy(example("single_site"))
    hv[host][var] = value
    with pytest.raises(PolicyError) as err:
        build_policy(hv)
    assert message in str(err.value)


def test_pfsense_needs_interfaces_from_the_table():
    hv = copy.deepcopy(example("single_site"))
    hv["fw-int"]["ocs_firewall_platform"] = "pfsense"
    hv["fw-int"].pop("ocs_firewall_interfaces", None)
    with pytest.raises(PolicyError, match="host fw-int: ocs_firewall_interfaces: is required on pfSense"):
        build_policy(hv)
