"""plugins/plugin_utils/drift.py: the per-firewall report of a check-mode run."""
import xml.etree.ElementTree as ET

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.drift import (
    build_report,
    diff_text,
    report_junit,
    report_markdown,
)
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.windows import compare as windows_plan

IN_SYNC = {"platform": "nftables", "state": "checked",
           "result": {"changed": False, "created": [], "updated": [], "removed": [], "diff": {"before": "a\n", "after": "a\n"}}}
DRIFTED = {"platform": "iptables", "state": "checked",
           "result": {"changed": True, "created": ["OCS-EDGE-FWD: central-t20-f14-out"], "updated": [],
                      "removed": ["OCS-EDGE-FWD: -p tcp --dport 23 -j ACCEPT"],
                      "diff": [{"before": "x\nrogue 23\n", "after": "x\ncentral-t20-f14-out\n",
                                "before_header": "live", "after_header": "desired"}]}}


def _report(kind="drift"):
    unreachable = {"platform": "pfsense", "state": "unreachable",
                   "message": "ssh: connect to host 192.0.2.9 port 22: timed out"}
    checks = {"fw-a": IN_SYNC, "fw-b": DRIFTED, "fw-c": unreachable,
              "fw-d": {"platform": "nftables", "state": "failed", "message": "nft: syntax error"}}
    return build_report(checks, ["fw-a", "fw-b", "fw-c", "fw-d", "fw-e"], kind)


def test_each_firewall_gets_its_status_and_the_worst_wins():
    rep = _report()
    assert {e["firewall"]: e["status"] for e in rep["firewalls"]} == {
        "fw-a": "in_sync", "fw-b": "drifted", "fw-c": "unreachable", "fw-d": "failed", "fw-e": "not_checked"}
    assert rep["status"] == "failed"
    assert rep["summary"] == {"in_sync": 1, "drifted": 1, "unreachable": 1, "failed": 1, "not_checked": 1}
    assert build_report({"fw-a": IN_SYNC}, ["fw-a", "fw-e"])["status"] == "in_sync"
    assert build_report({"fw-a": IN_SYNC, "fw-b": DRIFTED}, ["fw-a", "fw-b"])["status"] == "drifted"


def test_drift_keeps_the_items_and_the_readable_diff():
    entry = _report()["firewalls"][1]
    assert entry["created"] == ["OCS-EDGE-FWD: central-t20-f14-out"]
    assert "-rogue 23\n+central-t20-f14-out\n" in entry["diff"] and entry["diff"].startswith("--- live\n+++ desired\n")
    assert diff_text({"before": "same\n", "after": "same\n"}) == ""


def test_junit_has_one_case_per_firewall_drift_is_a_failure():
    root = ET.fromstring(report_junit(_report()))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("5", "1", "2", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases["fw-a"]) == []
    assert "rogue 23" in cases["fw-b"].find("failure").text
    assert cases["fw-b"].find("failure").get("message") == "fw-b: 1 created, 0 updated, 1 removed"
    assert cases["fw-c"].find("error").get("type") == "unreachable"
    assert cases["fw-e"].find("skipped") is not None


def test_markdown_lists_every_firewall_and_details_the_drifted_one():
    md = report_markdown(_report("verify"))
    assert md.startswith("# Post-apply verification: failed\n")
    assert "| fw-b | iptables | drifted | 1 | 0 | 1 |" in md
    assert "- removed: `OCS-EDGE-FWD: -p tcp --dport 23 -j ACCEPT`" in md and "```diff" in md
    assert "## fw-c: unreachable" in md and "timed out" in md


def test_windows_plan_becomes_the_common_shape():
    desired = [{"name": "OCS edge central-t18-f5-in", "group": "G", "description": "d", "direction": "in",
                "action": "allow", "enabled": True, "protocol": "tcp", "localip": "172.16.1.31", "localport": "5061",
                "remoteip": "any", "remoteport": "any", "profiles": ["domain"], "program": "any", "service": "any",
                "state": "present"}]
    current = [dict(desired[0], localport="5062", Grouping="G")]
    plan = windows_plan(desired, current, group="G", name="ae1")
    old = {k: v for k, v in plan.items() if k not in ("created", "updated", "removed", "diff", "warnings")}
    rep = build_report({"ae1": {"platform": "windows", "state": "checked", "result": old}}, ["ae1"])
    entry = rep["firewalls"][0]
    assert entry["status"] == "drifted" and entry["updated"] == ["OCS edge central-t18-f5-in"]
    assert "-OCS edge central-t18-f5-in: localport=5062" in entry["diff"]
    assert "+OCS edge central-t18-f5-in: localport=5061" in entry["diff"]
    # the contract's shape (what the role reports now) is taken as it is: ids
    rep = build_report({"ae1": {"platform": "windows", "state": "checked", "result": plan}}, ["ae1"])
    assert rep["firewalls"][0]["updated"] == plan["updated"] and rep["firewalls"][0]["status"] == "drifted"
