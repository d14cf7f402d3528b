"""plugins/plugin_utils/plan.py and plan_markdown.py: the review plan of a policy change."""
import copy
import json

import pytest

from inventory_loader import REPO, example, load_hostvars

from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables as ipt
from ansible_collections.ocs.edge_firewall.plugins.module_utils import nftables as nft
from ansible_collections.ocs.edge_firewall.plugins.module_utils import pfsense as pfs
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plan import (
    PlanError,
    build_plan,
    pfrule_text,
    render_artifact,
)
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plan_markdown import plan_markdown
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy


def _policy(topology="scaled_single_site", **deployment_changes):
    hv = copy.deepcopy(example(topology))
    for vars_ in hv.values():
        for key, value in deployment_changes.items():
            if key in vars_:
                vars_[key] = value
    return build_policy(hv)


@pytest.fixture(scope="module")
def base():
    return _policy()


@pytest.fixture(scope="module")
def director_plan(base):
    return build_plan(base, _policy(ocs_director="10.10.1.20"), base_label="main", new_label="pr")


def test_unchanged_inventory_gives_an_empty_plan(base):
    plan = build_plan(base, copy.deepcopy(base))
    assert plan["changed"] is False
    assert plan["firewalls"] == {}
    assert plan["rules"] == {"added": [], "removed": [], "changed": []}
    assert plan["deployment"] == {}
    assert set(plan["artifacts"]) == set(base["firewalls"])      # still rendered, for the record
    assert "**No changes.**" in plan_markdown(plan)
    assert "## Firewalls" not in plan_markdown(plan)


def test_director_change_is_exactly_the_two_director_rules(director_plan):
    rules = director_plan["rules"]
    assert rules["added"] == [] and rules["removed"] == []
    assert [(c["id"], c["table"], c["figure"], sorted(c["fields"])) for c in rules["changed"]] == [
        ("central-t18-f5-in", 18, 5, ["remote_addresses"]), ("central-t18-f5-out", 18, 5, ["remote_addresses"])]
    assert rules["changed"][0]["fields"]["remote_addresses"] == {"before": ["10.10.1.10"], "after": ["10.10.1.20"]}
    assert director_plan["deployment"] == {"director": {"before": "10.10.1.10", "after": "10.10.1.20"}}
    # the internal firewall and the two Access Edge host firewalls change; nothing else
    assert sorted(director_plan["firewalls"]) == ["ae1", "ae2", "fw-int"]
    fw = director_plan["firewalls"]["fw-int"]
    assert fw["status"] == "changed" and fw["platform"] == "nftables"
    assert all("10.10.1.20" in t and t.startswith("central-t18-f5-") for t in fw["pfrules"]["appear"])
    assert all("10.10.1.10" in t for t in fw["pfrules"]["disappear"])
    assert len(fw["pfrules"]["appear"]) == len(fw["pfrules"]["disappear"]) == 2


def test_artifact_diff_has_only_the_director_lines(director_plan):
    diff = director_plan["firewalls"]["fw-int"]["diff"]
    minus = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    plus = [line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert len(minus) == len(plus) == 2
    assert all("10.10.1.10" in line and "central-t18-f5-" in line for line in minus)
    assert [m.replace("10.10.1.10", "10.10.1.20")[1:] for m in minus] == [p[1:] for p in plus]
    ae1 = director_plan["firewalls"]["ae1"]["diff"]
    assert ae1.count('"remoteip": "10.10.1.20"') == 2 and "OCS edge central-t18-f5-in" in ae1


def test_markdown_names_rule_ids_tables_figures_and_diffs(director_plan):
    md = plan_markdown(director_plan)
    assert "Seed rules: 0 added, 0 removed, 2 changed. Firewalls changing: 3" in md
    assert "| `central-t18-f5-in` | 18 | 5 | remote_addresses | 10.10.1.10 | 10.10.1.20 |" in md
    assert "### fw-int (nftables, internal firewall, site central): changed" in md
    assert "```diff" in md and "fw-int.nft" in md
    assert md == plan_markdown(json.loads(json.dumps(director_plan)))      # deterministic, JSON round trip


def test_artifacts_are_what_the_backends_render(base):
    plan = build_plan(base, base)
    nft_text = plan["artifacts"]["fw-int"]["text"]
    desired = nft.desired_table(base["firewalls"]["fw-int"], "fw-int")
    assert nft_text.split("\n", 3)[3] == nft.render_script(desired, "ocs_edge", header=["x", "y"]).split("\n", 3)[3]
    ipt_text = plan["artifacts"]["fw-ext"]["text"]
    assert ipt.parse_save(ipt_text) == ipt.parse_save(ipt.render_rules(ipt.desired_state(base["firewalls"]["fw-ext"], "fw-ext")))
    golden = json.loads((REPO / "tests" / "golden" / "windows" / "scaled_single_site__av1.json").read_text())
    assert json.loads(plan["artifacts"]["av1"]["text"]) == golden


def test_pfsense_artifact_is_what_the_module_writes_into_config_xml():
    policy = build_policy(load_hostvars(REPO / "tests" / "fixtures" / "pfsense" / "inventory"))
    config = pfs.parse_config((REPO / "tests" / "fixtures" / "pfsense" / "config.empty.xml").read_bytes())
    for host in ("fw-ext", "fw-int"):
        fw = policy["firewalls"][host]
        art = render_artifact(fw, host)
        assert art["error"] is None and art["file"] == "%s.pfsense.xml" % host
        root = pfs.reconcile(config, fw, host, now=0)["root"]
        written = [pfs.dump_element(a) for a in root.find("aliases") if pfs.is_managed_alias(a)]
        for rule in root.find("filter").findall("rule"):
            if pfs.is_managed_rule(rule):
                for stamp in rule.findall("created") + rule.findall("updated"):
                    rule.remove(stamp)
                written.append(pfs.dump_element(rule))
        assert written == list(_xml_chunks(art["text"]))


def _xml_chunks(text):
    """Top-level elements of a pfSense artifact (comments dropped)."""
    chunks, cur = [], []
    for line in text.splitlines(True):
        if line.startswith("<!--"):
            continue
        cur.append(line)
        if not line.startswith("\t"):
            if line.startswith("</") or line.rstrip().endswith("/>") or line.count("<") == 2:
                chunks.append("".join(cur))
                cur = []
    return chunks


def test_added_and_removed_firewall(base):
    new = copy.deepcopy(base)
    new["firewalls"]["fw-new"] = copy.deepcopy(base["firewalls"]["fw-int"])
    del new["firewalls"]["fw-ext"]
    plan = build_plan(base, new)
    added, removed = plan["firewalls"]["fw-new"], plan["firewalls"]["fw-ext"]
    assert added["status"] == "added" and len(added["pfrules"]["appear"]) == len(base["firewalls"]["fw-int"]["rules"])
    assert removed["status"] == "removed" and removed["pfrules"]["appear"] == []
    assert len(removed["pfrules"]["disappear"]) == len(base["firewalls"]["fw-ext"]["rules"])
    lines = removed["diff"].splitlines()
    gone = [line for line in lines[3:] if line.startswith("-")]
    assert lines[:3] == ["--- base/fw-ext.rules", "+++ new/fw-ext.rules", "@@ -1,%d +0,0 @@" % len(gone)]
    assert len(gone) == len(lines) - 3 and len(gone) > len(base["firewalls"]["fw-ext"]["rules"])
    assert not [line for line in removed["diff"].splitlines()[2:] if line.startswith("+")]
    assert "no longer manages it" in plan_markdown(plan)


def test_removed_server_removes_its_rules(base):
    hv = copy.deepcopy(example("scaled_single_site"))
    del hv["rp1"]
    plan = build_plan(base, build_policy(hv))
    assert {r["id"] for r in plan["rules"]["removed"]} == {r["id"] for r in base["rules"] if r["server_role"] == "reverse_proxy"}
    assert plan["firewalls"]["rp1"]["status"] == "removed"
    assert all(t.startswith("central-t17-") for t in plan["firewalls"]["fw-int"]["pfrules"]["disappear"])


def test_role_variables_of_the_host_are_used(base):
    plan = build_plan(base, base, options={"fw-int": {"ocs_nftables_table": "edge2"}})
    assert "table inet edge2 {" in plan["artifacts"]["fw-int"]["text"]
    assert "table inet ocs_edge" in plan["artifacts"]["fw-ext"]["text"] or plan["artifacts"]["fw-ext"]["platform"] == "iptables"


def test_a_rule_set_the_backend_refuses_is_an_error_of_the_plan(base):
    new = copy.deepcopy(base)
    new["firewalls"]["fw-ext"]["rules"][0]["dst"] = ["2001:db8::5"]      # iptables is IPv4 only
    plan = build_plan(base, new)
    assert plan["firewalls"]["fw-ext"]["error"] and "fw-ext" in plan["summary"]["errors"][0]
    assert "IPv6" in plan["summary"]["errors"][0] or "2001:db8::5" in plan["summary"]["errors"][0]
    assert "The backend refuses this rule set" in plan_markdown(plan)


def test_not_a_policy_is_refused(base):
    with pytest.raises(PlanError, match="base \\(old.json\\): not a policy"):
        build_plan({"rules": "x"}, base, base_label="old.json")


def test_pfrule_text_reads_any_and_ports():
    text = pfrule_text({"id": "central-t20-f14-out", "protocol": "udp", "src": None, "dst": ["172.16.1.50"],
                        "sport": None, "dport": ["3478"], "chain": "forward", "src_zone": "internal",
                        "dst_zone": "perimeter"})
    assert text == "central-t20-f14-out: udp from any to 172.16.1.50 port 3478 (forward, internal -> perimeter)"
