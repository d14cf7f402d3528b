"""The live flow query's readers (module_utils/liveflow.py) and walker (flowquery, live=...).

A firewall whose live rules are exactly what the backend renders for the policy (nftables:
desired_table; iptables: the iptables-restore text of desired_state under the built-in
chains; pfSense: config.xml after reconcile) must answer every flow like the policy, with the
same rule ids, for every example inventory. Drift read back (a rule gone, a rogue rule, a
match the query cannot judge) changes exactly the answers it should.
"""
import copy
import json
from pathlib import Path

import pytest

from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables as ipt
from ansible_collections.ocs.edge_firewall.plugins.module_utils import liveflow
from ansible_collections.ocs.edge_firewall.plugins.module_utils import nftables as nft
from ansible_collections.ocs.edge_firewall.plugins.module_utils import pfsense as pf
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils import flowquery
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
from inventory_loader import TOPOLOGIES, load_hostvars

REPO = Path(__file__).resolve().parents[2]
CLIENT = {"internet": "192.0.2.77", "internal": "10.250.0.9"}


def live_of(name, fw):
    """What the firewall would enforce right after a deploy, read back by liveflow."""
    if fw["platform"] == "nftables":
        return liveflow.nft_flow_rules(nft.desired_table(fw, name), nft.render_rule)
    if fw["platform"] == "iptables":
        decl, jumps, rules = ipt.owned_lines(ipt.desired_state(fw, name))
        text = "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
                         + decl + jumps + rules + ["COMMIT"])
        return liveflow.ipt_flow_rules(text, ipt.parse_rule_line)
    if fw["platform"] == "pfsense":
        root = pf.parse_config((REPO / "tests" / "fixtures" / "pfsense" / "config.crowded.xml").read_bytes())
        return liveflow.pfsense_flow_rules(pf.reconcile(root, fw, name)["root"])
    return None


def _flows(policy):
    """(firewall, rule, flow args) for every network rule at every concrete address."""
    for name, fw in sorted(policy["firewalls"].items()):
        if fw["mode"] != "network":
            continue
        for r in fw["rules"]:
            for s in r["src"] or [CLIENT[r["src_zone"]]]:
                for d in r["dst"] or [CLIENT[r["dst_zone"]]]:
                    for lo, hi in flowquery.parse_ports(r["dport"]) or [(41000, 41000)]:
                        sp = flowquery.parse_ports(r["sport"])[0][0] if r["sport"] else None
                        yield name, r, (r["protocol"], s, d, lo, sp)
                        yield name, r, (r["protocol"], s, d, hi + 1, sp)


def _same_answers(policy, live):
    checked = 0
    for name, r, (proto, s, d, port, sp) in _flows(policy):
        want = flowquery.evaluate(policy, proto, s, d, port, sport=sp)
        got = flowquery.evaluate(policy, proto, s, d, port, sport=sp, live=live)
        assert [h["source"] for h in got["hops"]] == ["live" if h["firewall"] in live else "policy"
                                                      for h in want["hops"]]
        assert (got["allowed"], got["rules"]) == (want["allowed"], want["rules"]), (r["id"], s, d, port, got["text"])
        assert [h["allowed"] for h in got["hops"]] == [h["allowed"] for h in want["hops"]]
        checked += 1
    return checked


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_rules_as_rendered_answer_like_the_policy(topology):
    policy = build_policy(load_hostvars(REPO / "inventories" / topology))
    live = {n: live_of(n, fw) for n, fw in policy["firewalls"].items() if fw["platform"] in ("nftables", "iptables")}
    assert live
    assert _same_answers(policy, live) > 20


def test_pfsense_config_answers_like_the_policy():
    policy = build_policy(load_hostvars(REPO / "molecule" / "pfsense" / "inventory"))
    live = {n: live_of(n, fw) for n, fw in policy["firewalls"].items() if fw["platform"] == "pfsense"}
    assert set(live) == {"fw-ext", "fw-int"}
    assert _same_answers(policy, live) > 20


def test_drift_read_back_changes_exactly_its_flows():
    policy = build_policy(load_hostvars(REPO / "inventories" / "consolidated"))
    fw = policy["firewalls"]["fw-ext"]
    live = live_of("fw-ext", fw)
    fwd = live["chains"][live["hooks"]["forward"]]["rules"]
    gone = "central-t12-f11-in"
    fwd[:] = [r for r in fwd if r["id"] != gone]
    rogue = dict(fwd[-1], id="unmanaged: rogue", protocol="tcp", src=None, dst=["203.0.113.10/32"],
                 sport=None, dport=["8057"], action="accept", text="rogue", iif=None, oif=None)
    fwd.insert(0, rogue)
    for name, r, (proto, s, d, port, sp) in _flows(policy):
        if name != "fw-ext":
            continue
        want = flowquery.evaluate(policy, proto, s, d, port, sport=sp)
        got = flowquery.evaluate(policy, proto, s, d, port, sport=sp, live={"fw-ext": live})
        if r["id"] == gone and want["allowed"]:
            assert not got["allowed"] and "policy drop" in got["hops"][0]["decided_by"]
            assert want["rules"] == [gone] and got["rules"] == []
        else:
            assert got["allowed"] == want["allowed"], (r["id"], port)
    got = flowquery.evaluate(policy, "tcp", "192.0.2.77", "203.0.113.10", 8057, live={"fw-ext": live})
    assert got["hops"][0]["allowed"] and got["hops"][0]["rules"] == ["unmanaged: rogue"]


def test_a_match_the_query_cannot_judge_is_reported_not_taken():
    policy = build_policy(load_hostvars(REPO / "inventories" / "consolidated"))
    live = live_of("fw-ext", policy["firewalls"]["fw-ext"])
    fwd = live["chains"][live["hooks"]["forward"]]["rules"]
    fwd.insert(0, dict(copy.deepcopy(fwd[-1]), id="unmanaged: marked", protocol="tcp", src=None, dst=None,
                       sport=None, dport=["8057"], action="accept", unsupported=["meta mark 0x1"], text="marked",
                       iif=None, oif=None))
    got = flowquery.evaluate(policy, "tcp", "192.0.2.77", "203.0.113.10", 8057, live={"fw-ext": live})
    assert not got["allowed"] and got["hops"][0]["uncertain"] == ["unmanaged: marked: meta mark 0x1"]
    assert any("not judged" in line for line in flowquery.format_answer(got))


def test_real_nft_and_iptables_output_is_read():
    doc = json.loads((REPO / "tests" / "golden" / "nftables" / "lab_network.live.json").read_text())
    live = liveflow.nft_flow_rules(nft.parse_live(doc), nft.render_rule)
    rules = live["chains"][live["hooks"]["forward"]]["rules"]
    assert live["chains"][live["hooks"]["forward"]]["policy"] == "drop"
    assert any(r["id"].startswith("central-") and r["action"] == "accept" and r["protocol"] in ("tcp", "udp")
               for r in rules)
    assert any(r["id"].startswith("base:") and not r["new"] for r in rules)
    save = (REPO / "tests" / "golden" / "iptables" / "lab_network.live.save").read_text()
    live = liveflow.ipt_flow_rules(save, ipt.parse_rule_line)
    fwd = live["chains"]["FORWARD"]["rules"]
    assert any(r["action"].startswith("jump OCS-EDGE") for r in fwd)
    assert any(r["id"].startswith("central-") for c in live["chains"].values() for r in c["rules"])
