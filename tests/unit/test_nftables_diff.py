"""nftables backend: parse live JSON (captured from real nft 1.0.6) and compare with the desired table.

tests/golden/nftables/<case>.live.json is `nft -j list table inet ocs_edge` after loading
tests/golden/nftables/<case>.nft into a network namespace (see
tests/integration/test_nftables_module.py, which proves the same round trip live).
"""
import copy
import json
from pathlib import Path

import pytest

from ansible_collections.ocs.edge_firewall.plugins.module_utils import nftables as N
from ansible_collections.ocs.edge_firewall.plugins.module_utils.backend import unified

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "nftables"


def load(case):
    fw = json.loads((GOLDEN / "inputs" / ("%s.json" % case)).read_text())
    live = json.loads((GOLDEN / ("%s.live.json" % case)).read_text())
    return N.desired_table(fw, case), live


def rule_obj(doc, comment_part, nth=0):
    found = [o["rule"] for o in doc["nftables"] if "rule" in o and comment_part in o["rule"].get("comment", "")]
    return found[nth]


@pytest.mark.parametrize("case", ["lab_network", "lab_host"])
def test_live_json_of_rendered_script_compares_equal(case):
    desired, doc = load(case)
    live = N.parse_live(doc)
    result = N.compare(desired, live)
    assert result.as_dict() == {"created": [], "removed": [], "updated": []} and not result.changed
    # and the canonical listings agree line for line
    assert N.render_listing(live) == N.render_listing(desired)


def test_absent_table_means_everything_created():
    desired, doc = load("lab_network")
    assert N.parse_live({"nftables": [o for o in doc["nftables"] if "metainfo" in o]}) is None
    result = N.compare(desired, None)
    assert result.changed and result.updated == [] and result.removed == []
    assert result.created[:3] == ["table:inet ocs_edge", "chain:input", "chain:forward"]
    assert set(result.created[3:]) == {r["id"] for c in desired["chains"].values() for r in c["rules"]}
    assert "central-t20-f14-out" in result.created and "base:mgmt" in result.created


def test_other_tables_in_the_document_are_ignored():
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    doc["nftables"].append({"table": {"family": "ip", "name": "ocs_edge", "handle": 9}})
    doc["nftables"].append({"chain": {"family": "ip", "table": "ocs_edge", "name": "x", "handle": 1}})
    doc["nftables"].append({"rule": {"family": "inet", "table": "f2b", "chain": "input", "handle": 3,
                                     "expr": [{"drop": None}]}})
    assert not N.compare(desired, N.parse_live(doc)).changed


def test_rule_added_by_hand_is_removed():
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    doc["nftables"].append({"rule": {"family": "inet", "table": "ocs_edge", "chain": "forward", "handle": 99,
                                     "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                                                         "right": 23}}, {"counter": {"packets": 5, "bytes": 300}},
                                              {"accept": None}]}})
    result = N.compare(desired, N.parse_live(doc))
    assert result.changed
    assert result.removed == ["rule:forward: tcp dport 23 counter accept"]
    assert result.created == [] and result.updated == []


def test_rule_deleted_by_hand_is_created():
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    victim = rule_obj(doc, "t20-f14-out")
    doc["nftables"] = [o for o in doc["nftables"] if o.get("rule") is not victim]
    result = N.compare(desired, N.parse_live(doc))
    assert result.removed == [] and result.updated == []
    assert result.created == ["central-t20-f14-out"]


def test_port_changed_by_hand_is_the_rule_updated():
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    rule = rule_obj(doc, "t18-f5-in")
    port = [e for e in rule["expr"] if "match" in e and e["match"]["left"].get("payload", {}).get("field") == "dport"][0]
    port["match"]["right"] = 5062
    result = N.compare(desired, N.parse_live(doc))
    assert result.as_dict() == {"created": [], "removed": [], "updated": ["central-t18-f5-in"]}
    assert "tcp dport 5062" in N.render_listing(N.parse_live(doc)) and "tcp dport 5062" not in N.render_listing(desired)


def test_address_changed_by_hand_is_detected():
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    rule = rule_obj(doc, "t18-f5-in")
    saddr = [e for e in rule["expr"] if "match" in e and e["match"]["left"].get("payload", {}).get("field") == "saddr"][0]
    saddr["match"]["right"] = {"set": ["172.16.1.31", "172.16.1.99"]}
    result = N.compare(desired, N.parse_live(doc))
    assert result.as_dict() == {"created": [], "removed": [], "updated": ["central-t18-f5-in"]}


def test_policy_chain_and_objects_drift():
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    for o in doc["nftables"]:
        if "chain" in o and o["chain"]["name"] == "forward":
            o["chain"]["policy"] = "accept"
    doc["nftables"].append({"chain": {"family": "inet", "table": "ocs_edge", "name": "sneaky", "handle": 50}})
    doc["nftables"].append({"set": {"family": "inet", "table": "ocs_edge", "name": "allow", "type": "ipv4_addr", "handle": 51}})
    result = N.compare(desired, N.parse_live(doc))
    assert result.updated == ["chain:forward"]
    assert result.removed == ["chain:sneaky", "set:allow"]


def test_reorder_is_restored():
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    idx = [i for i, o in enumerate(doc["nftables"]) if "rule" in o and o["rule"]["chain"] == "forward"]
    doc["nftables"][idx[-1]], doc["nftables"][idx[-2]] = doc["nftables"][idx[-2]], doc["nftables"][idx[-1]]
    result = N.compare(desired, N.parse_live(doc))
    assert result.created == [] and result.removed == []
    assert result.updated == ["chain:forward"]


@pytest.mark.parametrize("right,equal", [
    ({"prefix": {"addr": "10.99.0.0", "len": 24}}, True),
    ({"set": [{"prefix": {"addr": "10.99.0.0", "len": 25}}, {"prefix": {"addr": "10.99.0.128", "len": 25}}]}, True),
    ({"range": ["10.99.0.0", "10.99.0.255"]}, True),
    ({"set": [{"prefix": {"addr": "10.99.0.0", "len": 24}}]}, True),
    ({"prefix": {"addr": "10.99.0.0", "len": 23}}, False),
    ("10.99.0.1", False),
])
def test_addresses_compare_by_meaning(right, equal):
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    rule = rule_obj(doc, "ocs management", 0)
    rule["expr"][0]["match"]["right"] = right
    assert N.compare(desired, N.parse_live(doc)).changed is (not equal)


@pytest.mark.parametrize("right,equal", [
    ({"set": [22, 2222]}, True),
    ({"set": [{"range": [22, 22]}, 2222]}, True),
    ({"set": [2222, 22, 22]}, True),
    (22, False),
    ({"set": [22, 2223]}, False),
])
def test_ports_compare_by_meaning(right, equal):
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    rule = rule_obj(doc, "ocs management", 0)
    rule["expr"][1]["match"]["right"] = right
    assert N.compare(desired, N.parse_live(doc)).changed is (not equal)


def test_comment_changed_is_detected():
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    rule_obj(doc, "t20-f14-out")["comment"] = "hand edited"
    result = N.compare(desired, N.parse_live(doc))
    assert result.removed == ['rule:forward: iifname "eth0" oifname "eth1" ip daddr { 172.16.1.50, 172.16.1.51, '
                              '172.16.1.52 } udp dport 3478 accept comment "hand edited"']
    assert result.created == ["central-t20-f14-out"]


def test_unknown_expression_is_kept_and_reported_not_dropped():
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    doc["nftables"].append({"rule": {"family": "inet", "table": "ocs_edge", "chain": "input", "handle": 98,
                                     "expr": [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 7}},
                                              {"log": {"prefix": "x "}}, {"jump": {"target": "sneaky"}}]}})
    result = N.compare(desired, N.parse_live(doc))
    assert result.removed == ['rule:input: meta mark 7 log prefix "x " jump sneaky']


def test_unified_diff_lists_the_changed_rule():
    desired, doc = load("lab_network")
    doc = copy.deepcopy(doc)
    doc["nftables"] = [o for o in doc["nftables"] if o.get("rule") is not rule_obj(doc, "t20-f14-out")]
    text = unified(N.render_listing(N.parse_live(doc)), N.render_listing(desired))
    plus = [l for l in text.splitlines() if l.startswith("+") and not l.startswith("+++")]
    minus = [l for l in text.splitlines() if l.startswith("-") and not l.startswith("---")]
    assert len(plus) == 1 and "t20-f14-out" in plus[0] and minus == []
