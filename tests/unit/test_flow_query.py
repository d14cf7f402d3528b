"""The flow query (plugins/plugin_utils/flowquery.py, filter edge_flow_query, playbook
query_flow.yml) against the policy of every example inventory.

- every rule of every network firewall, at every concrete address and at both ends of its
  port ranges: the flow is allowed, by that rule, with its table, figure and the page's words;
- ports next to a rule's single port and the reverse of one-way rules: denied, and the
  rule shows among the nearest rules with the right relation;
- the question of issue #16, and a denied one, asked through the real ansible-playbook by
  collection name.
"""
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.ocs.edge_firewall.plugins.filter.edge_flow_query import edge_flow_query
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils import flowquery
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy, load_catalog
from inventory_loader import TOPOLOGIES, load_hostvars

REPO = Path(__file__).resolve().parents[2]
INTERNET = "192.0.2.77"      # TEST-NET-1: in no example inventory
INTERNAL = "10.250.0.9"      # private, in no example inventory: the internal network
# "any" in a zone: a client there. Only the page's 443 note opens internal -> any perimeter
# address, for intranet users going on to the Internet: its client is an Internet address.
CLIENT = {"internet": INTERNET, "internal": INTERNAL, "perimeter": INTERNET}


@pytest.fixture(scope="module", params=TOPOLOGIES + ("extras",))
def policy(request):
    """Every example inventory, and the fixture with every opt-in rule."""
    if request.param == "extras":
        return build_policy(load_hostvars(REPO / "tests" / "fixtures" / "extras_inventory"))
    return build_policy(load_hostvars(REPO / "inventories" / request.param))


def _host(addr):
    """An address to probe for a rule's address or network."""
    net = ipaddress.ip_network(addr, strict=False)
    return str(net.network_address + (1 if net.num_addresses > 1 else 0))


def _network_rules(policy):
    for name, fw in sorted(policy["firewalls"].items()):
        if fw["mode"] == "network":
            for r in fw["rules"]:
                yield name, fw, r


def _port_samples(spec):
    if spec is None:
        return [41000]
    return sorted({p for lo, hi in flowquery.parse_ports(spec) for p in (lo, hi)})


def test_every_rule_allows_its_flows_by_its_id(policy):
    rows = {(r["table"], r["row"]): r for r in load_catalog()["rows"]}
    checked = 0
    for name, fw, r in _network_rules(policy):
        for s in map(_host, r["src"] or [CLIENT[r["src_zone"]]]):
            for d in map(_host, r["dst"] or [CLIENT[r["dst_zone"]]]):
                for dp in _port_samples(r["dport"]):
                    sp = _port_samples(r["sport"])[0] if r["sport"] else None
                    a = edge_flow_query(policy, s, d, r["protocol"], dp, sp)
                    assert a["allowed"], (r["id"], s, d, dp, a["text"])
                    assert r["id"] in a["rules"], (r["id"], a["rules"])
                    hop = next(h for h in a["hops"] if h["firewall"] == name)
                    assert hop["allowed"] and r["id"] in hop["rules"]
                    info = a["rule_info"][r["id"]]
                    assert (info["table"], info["figure"]) == (r["table"], r["figure"])
                    if r["figure"] is None:     # opt-in rule: its reason instead of the page's words
                        reason = next(x["reason"] for x in policy["rules"] if x["id"] == r["id"])
                        assert info["reason"] == reason and "page" not in info
                        continue
                    row = rows[(info["table"], info["row"])]
                    assert info["page"]["local_port"] == row["page_local_port"]
                    assert info["page"]["remote_ip"] == row["page_remote_ip"]
                    assert any(r["id"] in line for line in a["text"])
                    checked += 1
    assert checked > 10


def _within(addr, spec):
    return spec is None or any(ipaddress.ip_address(addr) in ipaddress.ip_network(n, strict=False) for n in spec)


def _opened(fw, proto, src, dst, port):
    """Does any rule of the firewall open this flow (independent check)?"""
    for r in fw["rules"]:
        if r["protocol"] == proto and _within(dst, r["dst"]) and _within(src, r["src"]):
            if r["dport"] is None or any(lo <= port <= hi for lo, hi in flowquery.parse_ports(r["dport"])):
                return True
    return False


def test_next_port_is_denied_with_the_rule_as_nearest(policy):
    checked = 0
    for name, fw, r in _network_rules(policy):
        if not r["dst"] or not r["dport"] or "-" in r["dport"][0] or len(r["dport"]) != 1:
            continue
        d, port = _host(r["dst"][0]), int(r["dport"][0]) + 1
        s = _host((r["src"] or [CLIENT[r["src_zone"]]])[0])
        if _opened(fw, r["protocol"], s, d, port):
            continue
        a = edge_flow_query(policy, s, d, r["protocol"], port)
        assert not a["allowed"] and not a["rules"], (r["id"], a["text"])
        hop = next(h for h in a["hops"] if h["firewall"] == name)
        assert not hop["allowed"]
        near = {(n["rule"], n["relation"]) for n in hop["nearest"]}
        assert (r["id"], "same destination, other port") in near, (r["id"], near)
        assert a["why"].startswith("denied by")
        checked += 1
    assert checked > 3


def test_reverse_of_one_way_rules_is_denied_with_the_rule_as_nearest(policy):
    checked = 0
    for name, fw, r in _network_rules(policy):
        if not r["src"] or not r["dport"] or "-" in r["dport"][0]:
            continue
        s = _host(r["src"][0])
        d = _host((r["dst"] or [CLIENT[r["dst_zone"]]])[0])
        port = int(r["dport"][0])
        if _opened(fw, r["protocol"], d, s, port):
            continue
        a = edge_flow_query(policy, d, s, r["protocol"], port)
        assert not a["allowed"], (r["id"], a["text"])
        near = {(n["rule"], n["relation"]) for h in a["hops"] for n in h["nearest"]}
        assert (r["id"], "the reverse direction") in near, (r["id"], near)
        checked += 1
    assert checked >= 1


def test_internet_never_reaches_the_internal_network(policy):
    director = policy["deployment"]["director"] or policy["deployment"]["next_hop"]
    a = edge_flow_query(policy, INTERNET, director, "tcp", 5061)
    assert not a["allowed"] and [h["side"] for h in a["hops"]] == ["external", "internal"]
    assert not any(h["allowed"] for h in a["hops"]) and a["why"].startswith("denied by")


def test_perimeter_to_perimeter_crosses_no_firewall(policy):
    addrs = sorted({a for s in policy["deployment"]["servers"].values() for a in s["internal"].values()})
    a = edge_flow_query(policy, addrs[0], addrs[-1], "tcp", 443)
    assert not a["allowed"] and a["hops"] == [] and "no firewall" in a["why"]


def test_the_question_of_the_issue():
    policy = build_policy(load_hostvars(REPO / "inventories" / "scaled_single_site"))
    a = edge_flow_query(policy, "198.51.100.7", "203.0.113.30", "tcp", "5061")
    assert a["allowed"] and a["rules"] == ["central-t18-f3-in"]
    assert [h["firewall"] for h in a["hops"]] == ["fw-ext"]
    info = a["rule_info"]["central-t18-f3-in"]
    assert (info["table"], info["figure"], info["service"]) == (18, 3, "SIP/MTLS")
    assert info["page"]["local_port"] == "5061 TCP (SIP/MTLS)"
    denied = edge_flow_query(policy, "198.51.100.7", "203.0.113.30", "tcp", "5062")
    assert not denied["allowed"]
    near = {n["rule"]: n["relation"] for n in denied["hops"][0]["nearest"]}
    assert near["central-t18-f3-in"] == "same destination, other port"
    assert near["central-t18-f4-in"] == "same destination, other port"   # 443, SIP/TLS


def test_bad_questions_name_the_problem():
    policy = build_policy(load_hostvars(REPO / "inventories" / "consolidated"))
    from ansible.errors import AnsibleFilterError
    for args, word in ((("1.2.3", "10.0.0.1", "tcp", 1), "1.2.3"), (("1.2.3.4", "10.0.0.1", "icmp", 1), "icmp"),
                       (("1.2.3.4", "10.0.0.1", "tcp", 70000), "70000")):
        with pytest.raises(AnsibleFilterError, match=word):
            edge_flow_query(policy, *args)


def _playbook(tmp_path, *extra):
    out = tmp_path / ("answer-%d.json" % len(list(tmp_path.iterdir())))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "ocs.edge_firewall.query_flow",
                           "-i", str(REPO / "inventories" / "scaled_single_site"), "-e", "query_out=%s" % out]
                          + [x for e in extra for x in ("-e", e)],
                          capture_output=True, text=True, cwd=str(REPO), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_playbook_by_collection_name(tmp_path):
    ans, out = _playbook(tmp_path, "src=198.51.100.7", "dst=203.0.113.30", "proto=tcp", "dport=5061")
    assert ans["allowed"] and ans["rules"] == ["central-t18-f3-in"]
    assert "ALLOWED" in out and "central-t18-f3-in: table 18 row 3, figure 3" in out
    ans, out = _playbook(tmp_path, "src=198.51.100.7", "dst=203.0.113.30", "proto=udp", "dport=5061")
    assert not ans["allowed"] and "DENIED" in out and "nearest" in out

