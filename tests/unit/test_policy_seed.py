"""Every seed row, for every example topology, against the engine's output.

The oracle reads the page itself (tests/seed_page.py), not the catalog's interpretation
fields, and resolves addresses from the inventory with the page's words.
"""
import copy
import re

import pytest

from inventory_loader import TOPOLOGIES, example
from seed_page import parse_page

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy

PAGE = parse_page()
ROLE = {"Reverse Proxy": "reverse_proxy", "Access Edge Server": "access_edge",
        "Web Conferencing Edge Server": "web_conferencing_edge", "A/V Edge Server": "av_edge"}
TABLES = {
    "consolidated": {"central": [9, 10, 11, 12]},
    "single_site": {"central": [13, 14, 15, 16]},
    "scaled_single_site": {"central": [17, 18, 19, 20]},
    "multi_site": {"central": [17, 18, 19, 20], "remote": [21, 22, 23]},
    "scaled_remote_site": {"central": [17, 18, 19, 20], "remote": [24, 25, 26]},
}


def _ip(hv, key, role):
    value = hv[key]
    return value[role] if isinstance(value, dict) else value


def _ports(text):
    if text == "Any":
        return None
    return [re.match(r"([\d,]+(?:-[\d,]+)?) ", text).group(1).replace(",", "")]


def expected_rules(topology, hostvars):
    """What the page says each firewall must open, for this inventory."""
    anyhost = next(iter(hostvars.values()))
    sites = {}
    for hv in hostvars.values():
        if "ocs_edge_roles" in hv:
            name = hv.get("ocs_site", "central")
            sites[name] = (anyhost.get("ocs_sites") or {}).get(name, {}).get(
                "kind", "central" if name == "central" else "remote")
    director, next_hop = anyhost.get("ocs_director"), anyhost.get("ocs_next_hop")
    arrays = anyhost.get("ocs_arrays") or {}
    out = {}
    for site, kind in sites.items():
        for table in TABLES[topology][kind]:
            role = ROLE[PAGE[table]["title"]]
            members = {h: hv for h, hv in hostvars.items()
                       if role in hv.get("ocs_edge_roles", []) and hv.get("ocs_site", "central") == site}
            if not members:
                continue
            for row in PAGE[table]["rows"]:
                text = row["Local IP"]
                side = "internal" if ("internal IP" in text or "internal load balancer" in text) else "external"
                local = set()
                if "IP address" in text and "VIP address" not in text.split(" and ")[0] or " and the VIP" in text:
                    local |= {_ip(hv, "ocs_%s_ip" % side, role) for hv in members.values()}
                if "VIP" in text:
                    local |= {arrays[hv["ocs_array"]]["%s_vip" % side] for hv in members.values()}
                remote_text = row["Remote IP"]
                if remote_text.startswith("Any"):
                    remote = None
                elif remote_text.startswith("The IP address of the next hop"):
                    remote = [director or next_hop]
                else:  # "If no Director is deployed, you must use any IP address..."
                    remote = [director] if director else None
                word = row["Direction"].split(" ")[0]
                for direction in {"Inbound/Outbound": ["inbound", "outbound"],
                                  "Inbound": ["inbound"], "Outbound": ["outbound"]}[word]:
                    rid = "%s-t%d-f%d-%s" % (site, table, row["figure"], direction[:3].replace("inb", "in"))
                    local_ports, remote_ports = _ports(row["Local Port"]), _ports(row["Remote Port"])
                    if "(federation)" in row["Direction"] and direction == "outbound":
                        # The one recorded deviation (catalog contradictions:
                        # federation_outbound_source_port): out from any port to the partner's 5061.
                        assert local_ports == ["5061"] and remote_ports is None
                        local_ports, remote_ports = None, ["5061"]
                    out[rid] = {
                        "table": table, "figure": row["figure"], "site": site, "server_role": role,
                        "firewall": row["firewall"], "direction": direction,
                        "protocol": ("udp" if "UDP" in row["Local Port"] + row["Remote Port"] else "tcp"),
                        "local_ports": local_ports, "remote_ports": remote_ports,
                        "local_addresses": sorted(local), "remote_addresses": remote,
                    }
    return out


@pytest.fixture(scope="module", params=TOPOLOGIES)
def case(request):
    hostvars = example(request.param)
    return request.param, hostvars, build_policy(hostvars)


def test_every_seed_row_is_a_rule(case):
    topology, hostvars, policy = case
    expected = expected_rules(topology, hostvars)
    got = {r["id"]: r for r in policy["rules"]}
    assert sorted(got) == sorted(expected)
    for rid, want in expected.items():
        have = {k: got[rid][k] for k in want}
        have["local_addresses"] = sorted(have["local_addresses"])
        assert have == want, rid


def test_rule_counts(case):
    topology, _ignored, policy = case
    # 15 seed rows per full site (3 of them both-way), 11 per remote site (2 both-way).
    assert len(policy["rules"]) == {"consolidated": 18, "single_site": 18, "scaled_single_site": 18,
                                    "multi_site": 18 + 13, "scaled_remote_site": 13}[topology]


def test_network_firewalls_carry_their_side_and_site(case):
    """Flows as the page defines direction: local port/IP belong to the perimeter server."""
    _ignored, hostvars, policy = case
    rules = {r["id"]: r for r in policy["rules"]}
    for name, fw in policy["firewalls"].items():
        if fw["mode"] != "network":
            continue
        assert fw["side"] == hostvars[name]["ocs_firewall_side"]
        want = sorted(i for i, r in rules.items() if r["firewall"] == fw["side"] and r["site"] == fw["site"])
        assert sorted(p["id"] for p in fw["rules"]) == want
        for p in fw["rules"]:
            r = rules[p["id"]]
            key = (r["firewall"], r["direction"])
            server = (r["local_addresses"], r["local_ports"])
            peer = (r["remote_addresses"], r["remote_ports"])
            if key in (("internal", "outbound"), ("external", "inbound")):  # peer -> server
                assert ((p["src"], p["sport"]), (p["dst"], p["dport"])) == (peer, server), p["id"]
                assert p["dst_zone"] == "perimeter"
            else:  # server -> peer
                assert ((p["src"], p["sport"]), (p["dst"], p["dport"])) == (server, peer), p["id"]
                assert p["src_zone"] == "perimeter"
            assert p["chain"] == "forward"
            assert "table %d figure %d" % (r["table"], r["figure"]) in p["comment"]


def test_host_firewalls_see_flows_from_the_host(case):
    _ignored, hostvars, policy = case
    for name, fw in policy["firewalls"].items():
        if fw["mode"] != "host":
            continue
        hv = hostvars[name]
        own = set()
        for key in ("ocs_internal_ip", "ocs_external_ip"):
            own |= set(hv[key].values()) if isinstance(hv[key], dict) else {hv[key]}
        assert fw["rules"], name
        for p in fw["rules"]:
            mine = p["dst"] if p["chain"] == "input" else p["src"]
            assert len(mine) == 1 and mine[0] in own, (name, p)


def test_spot_checks():
    """A few rows worked out by hand from the page."""
    def rule(topology, rid):
        return next(r for r in build_policy(example(topology))["rules"] if r["id"] == rid)

    # Table 20 figure 14: internal IP of each A/V Edge *and* the internal VIP.
    assert rule("scaled_single_site", "central-t20-f14-out")["local_addresses"] == [
        "172.16.1.50", "172.16.1.51", "172.16.1.52"]
    # Table 20 figure 12: the internal VIP only.
    assert rule("scaled_single_site", "central-t20-f12-out")["local_addresses"] == ["172.16.1.50"]
    # Table 20 figure 9: RTP to each member's own external address, never the VIP.
    assert rule("scaled_single_site", "central-t20-f9-out")["local_addresses"] == ["203.0.113.51", "203.0.113.52"]
    # Table 14 figure 5 without a Director: inbound to the next hop, outbound from Any.
    assert rule("single_site", "central-t14-f5-in")["remote_addresses"] == ["10.10.1.20"]
    assert rule("single_site", "central-t14-f5-out")["remote_addresses"] is None
    # Consolidated: one external address per role.
    assert rule("consolidated", "central-t10-f3-in")["local_addresses"] == ["203.0.113.10"]
    assert rule("consolidated", "central-t11-f6-in")["local_addresses"] == ["203.0.113.11"]
    assert rule("consolidated", "central-t12-f11-out")["local_addresses"] == ["203.0.113.12"]
    # Federation (figure 3): inbound to 5061 as the page; outbound from any port to the
    # partner's 5061 (the recorded deviation), on the external firewall, from the external VIP.
    policy = build_policy(example("scaled_single_site"))
    fed = {p["id"]: p for p in policy["firewalls"]["fw-ext"]["rules"] if p["figure"] == 3}
    assert {k: fed["central-t18-f3-in"][k] for k in ("src", "sport", "dst", "dport")} == {
        "src": None, "sport": None, "dst": ["203.0.113.30"], "dport": ["5061"]}
    assert {k: fed["central-t18-f3-out"][k] for k in ("src", "sport", "dst", "dport", "dst_zone")} == {
        "src": ["203.0.113.30"], "sport": None, "dst": None, "dport": ["5061"], "dst_zone": "internet"}
    # Remote site of multi_site: tables 21-23 at branch1.
    assert rule("multi_site", "branch1-t23-f9-in")["local_addresses"] == ["198.51.100.13"]


def test_host_rule_for_a_vip_row_uses_the_members_own_address():
    fw = build_policy(example("scaled_single_site"))["firewalls"]["av1"]
    p = next(p for p in fw["rules"] if p["id"] == "central-t20-f12-out")
    assert (p["chain"], p["src"], p["dst"], p["dport"]) == ("input", None, ["172.16.1.51"], ["443"])
    out = next(p for p in fw["rules"] if p["id"] == "central-t20-f11-out")
    assert (out["chain"], out["src"], out["sport"], out["dst"]) == ("output", ["203.0.113.51"], ["50000-59999"], None)


def test_policy_is_stable_and_ids_unique(case):
    topology, hostvars, policy = case
    ids = [r["id"] for r in policy["rules"]]
    assert len(ids) == len(set(ids))
    assert build_policy(copy.deepcopy(hostvars)) == policy
