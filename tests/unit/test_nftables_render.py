"""nftables backend: render (golden files), validation errors, persistence helpers.

Golden files: tests/golden/nftables/<case>.nft. After an intended change of the rendering,
regenerate them with  OCS_UPDATE_GOLDEN=1 pytest tests/unit/test_nftables_render.py  and
review the git diff.
"""
import pytest

from ansible_collections.ocs.edge_firewall.plugins.module_utils import nftables as N
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import FirewallError
import golden_helper
from golden_helper import GOLDEN_ROOT, HEADER, check_golden, golden_cases

GOLDEN = GOLDEN_ROOT / "nftables"


def hand_written(name):
    return golden_helper.hand_written("nftables", name)


CASES = golden_cases("nftables")


@pytest.mark.parametrize("case,firewall", CASES, ids=[c[0] for c in CASES])
def test_render_matches_golden(case, firewall):
    script = N.render_script(N.desired_table(firewall, case), "ocs_edge", HEADER)
    check_golden(GOLDEN / ("%s.nft" % case), script)


def test_example_inventories_have_nftables_firewalls():
    names = [c[0] for c in CASES]
    assert any(n.startswith("consolidated__fw-int") for n in names)
    assert any("__rp1" in n for n in names), "a host-mode nftables firewall (rp1) is expected in the examples"


@pytest.mark.parametrize("case,firewall", CASES, ids=[c[0] for c in CASES])
def test_every_pfrule_comment_is_rendered_and_base_rules_present(case, firewall):
    table = N.desired_table(firewall, case)
    script = N.render_script(table)
    for rule in firewall["rules"]:
        assert 'comment "%s"' % rule["comment"] in script
    lines = [l.strip() for l in script.splitlines()]
    # every rule line carries a comment
    rule_lines = [l for l in lines if l.endswith('"') and (" accept " in l or " drop " in l)]
    assert rule_lines and all(' comment "' in l for l in rule_lines)
    # the management network always reaches the firewall itself, whatever the mode
    mgmt = [r for r in table["chains"]["input"]["rules"] if r["comment"] == N.BASE_COMMENTS["mgmt"]]
    assert mgmt and table["chains"]["input"]["hook"] == "input"
    for src in firewall["management"]["sources"]:
        assert src in N.render_rule(mgmt[0]) + (N.render_rule(mgmt[1]) if len(mgmt) > 1 else "")
    if firewall["mode"] == "network":
        assert list(table["chains"]) == ["input", "forward"]
        assert table["chains"]["forward"]["policy"] == "drop"
    else:
        assert list(table["chains"]) == ["input", "output"]
        assert table["chains"]["input"]["policy"] == "drop"


def test_script_replaces_only_the_owned_table():
    script = N.render_script(N.desired_table(hand_written("lab_network"), "lab"), "ocs_edge")
    lines = script.splitlines()
    assert "table inet ocs_edge {}" in lines
    assert lines.index("table inet ocs_edge {}") < lines.index("delete table inet ocs_edge") < lines.index("table inet ocs_edge {")
    assert "flush" not in script
    assert [l for l in lines if l.startswith("table ") or l.startswith("delete ")] == [
        "table inet ocs_edge {}", "delete table inet ocs_edge", "table inet ocs_edge {"]


def test_network_rule_text_interfaces_sets_ranges_and_families():
    table = N.desired_table(hand_written("lab_network"), "lab")
    fwd = [N.render_rule(r) for r in table["chains"]["forward"]["rules"]]
    assert fwd[2] == ('iifname "eth1" oifname "eth0" ip saddr { 172.16.1.31, 172.16.1.32 } ip daddr 10.10.1.10 '
                      'tcp dport 5061 accept comment "ocs central-t18-f5-in table 18 figure 5 access_edge SIP/MTLS"')
    # a PFRULE mixing IPv4 and IPv6 sources becomes one rule per family, same comment
    rtp = [t for t in fwd if "t20-f11-out" in t]
    assert rtp == [
        'iifname "eth1" oifname "eth0" ip saddr { 172.16.1.51, 172.16.1.52 } udp sport 50000-59999 accept '
        'comment "ocs central-t20-f11-out table 20 figure 11 av_edge RTP/UDP"',
        'iifname "eth1" oifname "eth0" ip6 saddr 2001:db8:1::51 udp sport 50000-59999 accept '
        'comment "ocs central-t20-f11-out table 20 figure 11 av_edge RTP/UDP"']
    # no ports: the protocol is matched with meta l4proto
    assert any(t.startswith('iifname "eth1" oifname "eth0" ip saddr 172.16.1.5 meta l4proto tcp accept') for t in fwd)
    mgmt = [N.render_rule(r) for r in table["chains"]["input"]["rules"] if r["comment"] == N.BASE_COMMENTS["mgmt"]]
    assert [m.split(" accept")[0] for m in mgmt] == ["ip saddr 10.99.0.0/24 tcp dport { 22, 2222 }",
                                                     "ip6 saddr 2001:db8:99::/64 tcp dport { 22, 2222 }"]


def test_host_mode_chains_and_policies():
    fw = hand_written("lab_host")
    table = N.desired_table(fw, "rp1")
    assert table["chains"]["output"]["policy"] == "accept"
    assert N.desired_table(fw, "rp1", output_policy="drop")["chains"]["output"]["policy"] == "drop"
    inp = [N.render_rule(r) for r in table["chains"]["input"]["rules"]]
    assert 'ip daddr 203.0.113.5 tcp dport { 80, 443 } accept comment "ocs central-t17-f1-in table 17 figure 1 reverse_proxy HTTP(S)"' in inp
    out = [N.render_rule(r) for r in table["chains"]["output"]["rules"]]
    assert out[-1].startswith("ip saddr 172.16.1.5 tcp dport 443 accept")
    # interfaces are not used in host mode, and forward does not exist
    assert "forward" not in table["chains"]


def _fw(**rule):
    base = {"id": "r1", "protocol": "tcp", "src": None, "dst": ["10.0.0.1"], "sport": None, "dport": ["443"],
            "src_zone": "internal", "dst_zone": "perimeter", "chain": "forward", "comment": "ocs test rule"}
    base.update(rule)
    return {"platform": "nftables", "mode": "network", "interfaces": {},
            "management": {"sources": ["10.99.0.0/24"], "ports": ["22"]}, "rules": [base]}


@pytest.mark.parametrize("rule,needle", [
    ({"dst": ["10.0.0.300"]}, "rules[0] (r1).dst[0]: '10.0.0.300' is not a valid IP address"),
    ({"src": ["10.0.0.5/24"]}, "rules[0] (r1).src[0]: '10.0.0.5/24' is not a valid IP address or network"),
    ({"dport": ["70000"]}, "rules[0] (r1).dport[0]: '70000' is not a port"),
    ({"dport": ["90-80"]}, "rules[0] (r1).dport[0]: '90-80'"),
    ({"protocol": "icmp"}, "rules[0] (r1).protocol: 'icmp' is not supported (tcp or udp)"),
    ({"chain": "input"}, "rules[0] (r1).chain: 'input' is not valid in network mode"),
    ({"comment": "x" * 129}, "comment is 129 bytes, nftables allows at most 128"),
    ({"comment": 'say "hi"'}, "contains a double quote"),
    ({"comment": None}, "every rule needs a comment"),
    ({"src": ["2001:db8::1"], "dst": ["10.0.0.1"]}, "no IP version in common"),
])
def test_invalid_rules_are_errors_naming_firewall_and_parameter(rule, needle):
    with pytest.raises(FirewallError) as err:
        N.desired_table(_fw(**rule), "fw-int")
    assert "firewall fw-int" in str(err.value)
    assert needle in str(err.value)


@pytest.mark.parametrize("change,needle", [
    ({"platform": "iptables"}, "platform is 'iptables'"),
    ({"management": {"sources": [], "ports": ["22"]}}, "management.sources is empty"),
    ({"management": None}, "management is missing"),
    ({"mode": "bridge"}, "mode: 'bridge' is not network or host"),
    ({"interfaces": {"perimeter": "an-interface-name-too-long", "internal": "eth0"}}, "interfaces.perimeter"),
])
def test_invalid_firewalls_are_errors(change, needle):
    fw = _fw()
    fw.update(change)
    with pytest.raises(FirewallError) as err:
        N.desired_table(fw, "fw-int")
    assert needle in str(err.value) and "fw-int" in str(err.value)


def test_bad_table_name_rejected():
    with pytest.raises(N.NftError, match="not a valid nft table name"):
        N.render_script(N.desired_table(_fw(), "x"), "ocs edge; flush ruleset")


def test_duplicate_and_contained_addresses_are_dropped():
    table = N.desired_table(_fw(dst=["10.0.0.1", "10.0.0.0/24", "10.0.0.1", "10.0.1.7"]), "x")
    assert N.render_rule(table["chains"]["forward"]["rules"][-1]).startswith("ip daddr { 10.0.0.0/24, 10.0.1.7 } tcp dport 443")


def test_conf_include_is_idempotent_and_removable():
    debian = "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n}\n"
    once = N.conf_with_include(debian, "/etc/nftables.d/ocs_edge.nft")
    assert once.startswith(debian) and once.count('include "/etc/nftables.d/ocs_edge.nft"') == 1
    assert N.conf_with_include(once, "/etc/nftables.d/ocs_edge.nft") == once
    assert N.conf_without_include(once, "/etc/nftables.d/ocs_edge.nft") == debian
    created = N.conf_with_include(None, "/x.nft")
    assert created.startswith("#!/usr/sbin/nft -f\n") and 'include "/x.nft"' in created
