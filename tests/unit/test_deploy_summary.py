"""plugins/plugin_utils/deploy_summary.py: the end of a deploy, from the checks, the applies and
the verification as the deploy playbook records them (drift.build_report for the two reports)."""
import pytest

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.deploy_summary import deploy_summary, summary_markdown
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.drift import build_report

FIREWALLS = ["fw-a", "fw-b", "fw-c"]
DRIFTED = {"platform": "nftables", "state": "checked",
           "result": {"changed": True, "created": ["central-t10-f1-in"], "updated": [], "removed": [], "diff": []}}
IN_SYNC = {"platform": "iptables", "state": "checked",
           "result": {"changed": False, "created": [], "updated": [], "removed": [], "diff": []}}
DOWN = {"platform": "nftables", "state": "unreachable", "message": "ssh: connect to host 10.77.9.9 port 22: Network is unreachable"}
APPLIED = {"platform": "nftables", "state": "applied", "guard": None, "created": ["central-t10-f1-in"]}
UNCHANGED = {"platform": "iptables", "state": "unchanged", "guard": None}


def summary(checks, applies, verified=(), allow_partial=False):
    pre = build_report(checks, FIREWALLS, "check")
    verify = build_report({name: IN_SYNC for name in verified}, FIREWALLS, "verify") if verified else None
    return deploy_summary(pre, applies, verify, allow_partial)


def outcomes(result):
    return {e["firewall"]: e["outcome"] for e in result["firewalls"]}


def test_an_unreachable_firewall_stops_the_run_before_any_change():
    result = summary({"fw-a": DRIFTED, "fw-b": IN_SYNC, "fw-c": DOWN}, {})
    assert result["status"] == "stopped" and result["ok"] is False
    assert outcomes(result) == {"fw-a": "not_applied", "fw-b": "not_applied", "fw-c": "not_reached"}
    assert summary_markdown(result).startswith("# Deploy: nothing was changed")


@pytest.mark.parametrize("allow_partial", [True, False])
def test_changed_and_not_reached_is_partial(allow_partial):
    result = summary({"fw-a": DRIFTED, "fw-b": IN_SYNC, "fw-c": DOWN}, {"fw-a": APPLIED, "fw-b": UNCHANGED},
                     verified=["fw-a"], allow_partial=allow_partial)
    assert result["status"] == "partial" and result["ok"] is False
    assert outcomes(result) == {"fw-a": "applied", "fw-b": "unchanged", "fw-c": "not_reached"}
    assert "PARTIAL" in summary_markdown(result)


def test_a_rerun_with_partial_allowed_is_still_partial():
    """The others were applied by an earlier run and are in sync; one is still unreachable: the
    deployment is partial (docs/gitops.md: with ocs_allow_partial the summary says PARTIAL)."""
    result = summary({"fw-a": IN_SYNC, "fw-b": IN_SYNC, "fw-c": DOWN}, {"fw-a": UNCHANGED, "fw-b": UNCHANGED},
                     allow_partial=True)
    assert result["status"] == "partial" and result["ok"] is False
    assert outcomes(result) == {"fw-a": "unchanged", "fw-b": "unchanged", "fw-c": "not_reached"}
    assert "PARTIAL" in summary_markdown(result)


def test_nothing_good_is_failed_even_with_partial_allowed():
    failed = {"platform": "nftables", "state": "failed", "guard": None, "message": "nft: syntax error"}
    result = summary({"fw-a": DRIFTED, "fw-b": IN_SYNC, "fw-c": DOWN}, {"fw-a": failed, "fw-b": failed},
                     allow_partial=True)
    assert result["status"] == "failed"


def test_every_firewall_applied_or_unchanged_and_converged_is_complete():
    result = summary({"fw-a": DRIFTED, "fw-b": IN_SYNC, "fw-c": IN_SYNC},
                     {"fw-a": APPLIED, "fw-b": UNCHANGED, "fw-c": UNCHANGED}, verified=["fw-a"])
    assert result["status"] == "complete" and result["ok"] is True
