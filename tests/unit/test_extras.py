"""Opt-ins beyond the page's rows (plugin_utils/extras.py): each changes only what it names."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from inventory_loader import REPO, TOPOLOGIES, example, load_hostvars

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.matrix import port_matrix
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import PolicyError, build_policy

EXTRAS = REPO / "tests" / "fixtures" / "extras_inventory"


def with_all(hostvars, **values):
    """Set deployment-wide variables on every host (as group_vars/all does)."""
    out = copy.deepcopy(hostvars)
    for hv in out.values():
        hv.update(values)
    return out


def errors(hostvars):
    with pytest.raises(PolicyError) as exc:
        build_policy(hostvars)
    return exc.value.errors


def rules_by_id(policy):
    return {r["id"]: r for r in policy["rules"]}


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_examples_have_no_extension_keys(topology):
    policy = build_policy(example(topology))
    assert "director_members" not in policy["deployment"]
    for rule in policy["rules"]:
        assert not {"extra", "note", "reason", "comment"} & set(rule)
        assert rule["figure"] is not None
    for fw in policy["firewalls"].values():
        assert not any(p.get("extra") or p.get("note") for p in fw["rules"])


# ------------------------------------------------------------------ Director pool members

def test_director_members_join_only_the_director_initiated_rule():
    base = example("scaled_single_site")
    plain, pooled = build_policy(base), build_policy(with_all(base, ocs_director_members=["10.10.1.12", "10.10.1.11"]))
    changed = {i for i, r in rules_by_id(pooled).items() if r != rules_by_id(plain)[i]}
    assert changed == {"central-t18-f5-out"}
    assert rules_by_id(pooled)["central-t18-f5-out"]["remote_addresses"] == ["10.10.1.10", "10.10.1.11", "10.10.1.12"]
    assert rules_by_id(pooled)["central-t18-f5-in"]["remote_addresses"] == ["10.10.1.10"]  # edge -> VIP
    fw = pooled["firewalls"]["fw-int"]
    assert next(p for p in fw["rules"] if p["id"] == "central-t18-f5-out")["src"] == ["10.10.1.10", "10.10.1.11", "10.10.1.12"]
    assert pooled["deployment"]["director_members"] == ["10.10.1.11", "10.10.1.12"]


def test_deployment_summary_shows_what_the_rules_carry(monkeypatch):
    """deployment.director_members is the validated list the rules carry, never the inventory's
    raw value sorted again: a validation that keeps or rewrites only some members (here a stand-in
    keeping 10.10.1.11) is what the summary shows. Before, the raw list was re-sorted (and a value
    of another type than the validation accepts would have reached that sort)."""
    from ansible_collections.ocs.edge_firewall.plugins.plugin_utils import extras
    base = with_all(example("scaled_single_site"), ocs_director_members=["10.10.1.12", "10.10.1.11"])
    real = extras.director_members
    monkeypatch.setattr(extras, "director_members",
                        lambda value, *args: [m for m in real(value, *args) if m == "10.10.1.11"])
    policy = build_policy(base)
    assert rules_by_id(policy)["central-t18-f5-out"]["remote_addresses"] == ["10.10.1.10", "10.10.1.11"]
    assert policy["deployment"]["director_members"] == ["10.10.1.11"]


def test_deployment_summary_without_members_is_absent():
    from ansible_collections.ocs.edge_firewall.plugins.plugin_utils import extras
    assert extras.deployment_summary([]) == {}
    members = ["10.10.1.11", "10.10.1.12"]
    summary = extras.deployment_summary(members)
    assert summary == {"director_members": members} and summary["director_members"] is not members


def test_director_members_errors():
    base = example("consolidated")
    assert any("ocs_director_members[0]: '10.10.1.999' is not an IPv4 address" in e
               for e in errors(with_all(base, ocs_director_members=["10.10.1.999"])))
    assert any("ocs_director_members[1]: 10.10.1.10 is listed twice (or is ocs_director itself)" in e
               for e in errors(with_all(base, ocs_director_members=["10.10.1.11", "10.10.1.10"])))
    assert any("ocs_director_members: is set but ocs_director is not" in e
               for e in errors(with_all(base, ocs_director=None, ocs_next_hop="10.10.1.20",
                                        ocs_director_members=["10.10.1.11"])))


# ------------------------------------------------------------------ shared external address

def consolidated_one_address(**ports):
    hv = example("consolidated")
    hv["edge1"]["ocs_external_ip"] = "203.0.113.10"
    if ports:
        hv["edge1"]["ocs_role_ports"] = ports
    return hv


def test_one_address_for_three_roles_on_443_is_an_error_naming_hosts_roles_and_port():
    errs = errors(consolidated_one_address())
    assert any(e.startswith("host edge1: ocs_external_ip: 203.0.113.10 is the external address of roles "
                            "access_edge (443) and web_conferencing_edge (443, hosts edge1), both on port 443/tcp "
                            "(rules central-t10-f4-in, central-t11-f6-in)") for e in errs), errs
    assert any("access_edge (443) and av_edge (443, hosts edge1), both on port 443/tcp" in e for e in errs)
    assert all("ocs_role_ports" in e for e in errs)


def test_role_ports_resolve_the_conflict_and_reach_every_firewall_rule():
    policy = build_policy(consolidated_one_address(web_conferencing_edge=444, av_edge="8443"))
    rules = rules_by_id(policy)
    assert rules["central-t11-f6-in"]["local_ports"] == ["444"]
    assert rules["central-t12-f8-in"]["local_ports"] == ["8443"]
    assert rules["central-t10-f4-in"]["local_ports"] == ["443"]
    assert rules["central-t12-f12-out"]["local_ports"] == ["443"]  # internal row: not moved
    dports = {p["id"]: p["dport"] for p in policy["firewalls"]["fw-ext"]["rules"]}
    assert dports["central-t11-f6-in"] == ["444"] and dports["central-t12-f8-in"] == ["8443"]
    host = {p["id"]: p["dport"] for p in policy["firewalls"]["edge1"]["rules"]}  # Windows host firewall
    assert host["central-t11-f6-in"] == ["444"]
    assert any("central-t12-f8-in: av_edge listens on port 8443/tcp instead of the page's 443" in w
               for w in policy["warnings"])


def test_role_ports_errors():
    errs = errors(consolidated_one_address(web_conferencing_edge=0, reverse_proxy=444, av_edge=True))
    assert "host edge1: ocs_role_ports.web_conferencing_edge: 0 is not a TCP port number" in errs
    assert any(e.startswith("host edge1: ocs_role_ports.reverse_proxy: 'reverse_proxy' is not one of") for e in errs)
    assert "host edge1: ocs_role_ports.av_edge: True is not a TCP port number" in errs


def test_role_ports_must_agree_within_an_array():
    hv = example("scaled_single_site")
    av = sorted(h for h, v in hv.items() if "av_edge" in (v.get("ocs_edge_roles") or []))
    hv[av[0]]["ocs_role_ports"] = {"av_edge": 8443}
    assert any("ocs_role_ports.av_edge: is 443 here but 8443 on %s" % av[0] in e or
               "ocs_role_ports.av_edge: is 8443 here but 443 on" in e for e in errors(hv))


# ------------------------------------------------------------------ the page's 443 note

def test_intranet_443_note_is_opt_in_on_both_firewalls():
    base = example("single_site")
    assert build_policy(with_all(base, ocs_reverse_proxy_intranet_443_outbound=False)) == build_policy(base)
    policy = build_policy(with_all(base, ocs_reverse_proxy_intranet_443_outbound=True,
                                   ocs_intranet_networks=["10.10.0.0/16"]))
    rules = rules_by_id(policy)
    assert rules["central-t13-note443-int"]["note"] and not rules["central-t13-note443-int"]["extra"]
    fw_int = {p["id"]: p for p in policy["firewalls"]["fw-int"]["rules"]}
    fw_ext = {p["id"]: p for p in policy["firewalls"]["fw-ext"]["rules"]}
    p = fw_int["central-t13-note443-int"]
    assert (p["src"], p["dst"], p["dport"], p["src_zone"], p["dst_zone"]) == (["10.10.0.0/16"], None, ["443"], "internal", "perimeter")
    p = fw_ext["central-t13-note443-ext"]
    assert (p["src"], p["dst"], p["dport"], p["src_zone"], p["dst_zone"]) == (["10.10.0.0/16"], None, ["443"], "perimeter", "internet")
    assert p["note"] is True and "note" in p["comment"]


def test_intranet_443_note_errors():
    base = example("single_site")
    assert any("ocs_intranet_networks: is required when ocs_reverse_proxy_intranet_443_outbound is on" in e
               for e in errors(with_all(base, ocs_reverse_proxy_intranet_443_outbound=True)))
    # the policy's strict boolean: Ansible's words are booleans, anything else an error
    assert any("ocs_reverse_proxy_intranet_443_outbound: must be a boolean (true/false), got a string 'maybe'" in e
               for e in errors(with_all(base, ocs_reverse_proxy_intranet_443_outbound="maybe")))
    yes = with_all(base, ocs_reverse_proxy_intranet_443_outbound="yes", ocs_intranet_networks=["10.10.0.0/16"])
    assert "central-t13-note443-int" in rules_by_id(build_policy(yes))
    assert build_policy(with_all(base, ocs_reverse_proxy_intranet_443_outbound="off")) == build_policy(base)


def test_extras_hostile_values_are_named_errors_not_tracebacks():
    """Traceback classes the property suite found: each is now an error naming group_vars/host and the variable."""
    base = example("single_site")
    cases = [
        # mixed key types in one extra rule (sorted() of int and str)
        (dict(ocs_extra_rules=[{"eth0": None, 0: None}]), "ocs_extra_rules[0]: unknown key(s) ['eth0', 0]"),
        # an unhashable site (dict membership)
        (dict(ocs_extra_rules=[{"name": "dns", "site": ["central"], "firewall": "internal", "direction": "inbound",
                                "protocol": "udp", "reason": "r"}]), "ocs_extra_rules[0].site"),
        # names and labels matched whole: a trailing newline is not a name
        (dict(ocs_extra_rules=[{"name": "dns\n", "firewall": "internal", "direction": "inbound",
                                "protocol": "udp", "reason": "r"}]), "ocs_extra_rules[0].name"),
        (dict(ocs_extra_rules=[{"name": "dns", "service": "DNS\n", "firewall": "internal", "direction": "inbound",
                                "protocol": "udp", "reason": "r"}]), "ocs_extra_rules[0].service"),
        # ports: ASCII digits only, no float, no non-ASCII digit
        (dict(ocs_extra_rules=[{"name": "dns", "firewall": "internal", "direction": "inbound", "protocol": "udp",
                                "local_ports": [53.0], "reason": "r"}]), "ocs_extra_rules[0].local_ports[0]"),
        (dict(ocs_extra_rules=[{"name": "dns", "firewall": "internal", "direction": "inbound", "protocol": "udp",
                                "local_ports": ["\uff15\uff13"], "reason": "r"}]), "ocs_extra_rules[0].local_ports[0]"),
        (dict(ocs_extra_rules=[{"name": "dns", "firewall": "internal", "direction": "inbound", "protocol": "udp",
                                "local_ports": ["53\n"], "reason": "r"}]), "ocs_extra_rules[0].local_ports[0]"),
    ]
    for values, expected in cases:
        errs = errors(with_all(base, **values))
        assert any(e.startswith("group_vars: " + expected) for e in errs), (values, errs)
    edge = next(h for h, v in base.items() if "access_edge" in (v.get("ocs_edge_roles") or []))
    for port in (443.0, "\uff14\uff14\uff13", "8443\n", True):
        hv = copy.deepcopy(base)
        hv[edge]["ocs_role_ports"] = {"access_edge": port}
        errs = errors(hv)
        assert any(e.startswith("host %s: ocs_role_ports.access_edge" % edge) for e in errs), (port, errs)


# ------------------------------------------------------------------ extra rules

def test_extra_rules_have_own_ids_and_are_marked_everywhere():
    policy = build_policy(load_hostvars(EXTRAS))
    rules = rules_by_id(policy)
    dns = rules["extra-central-dns"]
    assert dns["extra"] is True and dns["table"] is None and dns["reason"].startswith("the Access Edge resolves")
    p = next(p for p in policy["firewalls"]["fw-ext"]["rules"] if p["id"] == "extra-central-dns")
    assert (p["src"], p["dst"], p["dport"], p["protocol"], p["extra"]) == (["203.0.113.10"], ["198.51.100.53"], ["53"], "udp", True)
    assert p["comment"] == "ocs extra-central-dns extra rule, not on the seed page DNS"
    matrix = port_matrix(policy)
    assert "| extra-central-dns (extra) | - | - | - | external | outbound | udp | DNS |" in matrix
    assert "- extra-central-crl: certificate revocation lists" in matrix
    assert "| central-t9-note443-int (page note, opt-in) | 9 | note |" in matrix


@pytest.mark.parametrize("rule,message", [
    ({"name": "x", "firewall": "external", "direction": "outbound", "protocol": "tcp"}, "ocs_extra_rules[0].reason: is required"),
    ({"name": "Bad Name", "firewall": "external", "direction": "outbound", "protocol": "tcp", "reason": "r"}, "ocs_extra_rules[0].name: 'Bad Name'"),
    ({"name": "x", "firewall": "dmz", "direction": "outbound", "protocol": "tcp", "reason": "r"}, "ocs_extra_rules[0].firewall: 'dmz' is not one of"),
    ({"name": "x", "firewall": "external", "direction": "both", "protocol": "tcp", "reason": "r"}, "ocs_extra_rules[0].direction: 'both' is not one of"),
    ({"name": "x", "firewall": "external", "direction": "outbound", "protocol": "icmp", "reason": "r"}, "ocs_extra_rules[0].protocol: 'icmp'"),
    ({"name": "x", "firewall": "external", "direction": "outbound", "protocol": "tcp", "reason": "r", "remote_ports": ["80-70"]},
     "ocs_extra_rules[0].remote_ports[0]: '80-70' is not a port"),
    ({"name": "x", "firewall": "external", "direction": "outbound", "protocol": "tcp", "reason": "r", "remote_addresses": ["1.2.3.4;x"]},
     "ocs_extra_rules[0].remote_addresses[0]"),
    ({"name": "x", "firewall": "external", "direction": "outbound", "protocol": "tcp", "reason": "r", "site": "nowhere"},
     "ocs_extra_rules[0].site: 'nowhere' is not a site"),
    ({"name": "x", "firewall": "external", "direction": "outbound", "protocol": "tcp", "reason": "r", "action": "drop"},
     "ocs_extra_rules[0]: unknown key(s) ['action']"),
])
def test_extra_rule_errors(rule, message):
    errs = errors(with_all(example("single_site"), ocs_extra_rules=[rule]))
    assert any(e.startswith("group_vars: " + message) for e in errs), errs


def test_extra_rule_with_0_0_0_0_slash_0_is_any():
    """A /0 among the addresses is any; written as any (null), the iptables rule has no -s/-d
    match, which iptables-save would drop from a 0.0.0.0/0 one, so it reads back as written."""
    rule = {"name": "ntp", "firewall": "external", "direction": "outbound", "protocol": "udp", "reason": "r",
            "remote_addresses": ["192.0.2.0/24", "0.0.0.0/0"], "remote_ports": ["123"]}
    policy = build_policy(with_all(example("single_site"), ocs_extra_rules=[rule]))
    assert rules_by_id(policy)["extra-central-ntp"]["remote_addresses"] is None
    pf = next(p for p in policy["firewalls"]["fw-ext"]["rules"] if p["id"] == "extra-central-ntp")
    assert pf["dst"] is None


def test_extra_rule_ids_are_unique():
    rule = {"name": "dns", "firewall": "external", "direction": "outbound", "protocol": "udp", "reason": "r"}
    assert any("rule id extra-central-dns is used twice" in e
               for e in errors(with_all(example("single_site"), ocs_extra_rules=[rule, rule])))


def test_export_playbook_carries_every_opt_in(tmp_path):
    """The real ansible-playbook passes the new variables on: policy.json equals the Python result."""
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/export_policy.yml",
                          "-i", str(EXTRAS), "-e", "ocs_policy_export_dir=%s" % tmp_path],
                         cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    policy = json.loads((tmp_path / "policy.json").read_text())
    assert policy == build_policy(load_hostvars(EXTRAS))
    assert "extra-central-dns (extra)" in (tmp_path / "port-matrix.md").read_text()
