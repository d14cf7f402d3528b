# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The end of a deploy: per firewall what happened, and whether the run is complete.

Inputs: the pre-apply check report and the post-apply verification report (plugin_utils/drift.py
``build_report``), and per firewall what the apply recorded (``ocs_firewall_apply``:
{state: applied|unchanged|failed|rolled_back, guard, message}). Outcome per firewall:

- ``applied`` / ``unchanged``: the apply ran (and, when armed, was confirmed);
- ``failed``: its check or its apply failed;
- ``rolled_back``: applied, not confirmed in time, the firewall restored its previous rule set;
- ``not_reached``: unreachable when checked;
- ``not_applied``: reachable, but the run stopped before any change because another firewall
  failed its check (no silent partial deployment);
- ``not_checked``: not in this run (limited out).

The run is ``complete`` when every firewall of the run is applied or unchanged (and converged when
verified), ``partial`` when some were changed and others not (with ``allow_partial``: also when
the others are already as the policy says, as on a re-run), ``stopped`` when nothing was changed
because a check failed, ``failed`` otherwise. Only ``complete`` is a success. Pure.
"""
from __future__ import annotations

OK = ("applied", "unchanged")


def _outcome(pre, applied):
    if pre is None or pre["status"] == "not_checked":
        return "not_checked", ""
    if pre["status"] == "unreachable":
        return "not_reached", pre["message"]
    if applied is None:
        if pre["status"] == "failed":
            return "failed", pre["message"]
        return "not_applied", "not applied: the run stopped before any change (another firewall failed its check)"
    state = applied.get("state")
    if state in OK + ("failed", "rolled_back"):
        return state, str(applied.get("message") or "")
    return "failed", "unknown apply state %r" % (state,)


def deploy_summary(preflight, applies, verify=None, allow_partial=False):
    """-> {"status", "ok", "summary": {outcome: n}, "firewalls": [{firewall, platform, outcome,
    guard, converged, message, created, updated, removed}]}."""
    pre = {e["firewall"]: e for e in preflight["firewalls"]}
    ver = {e["firewall"]: e for e in (verify or {}).get("firewalls", [])}
    entries = []
    for name in sorted(pre):
        applied = applies.get(name)
        outcome, message = _outcome(pre[name], applied)
        v = ver.get(name)
        entries.append({
            "firewall": name, "platform": pre[name]["platform"], "outcome": outcome,
            "guard": (applied or {}).get("guard"), "message": message,
            "converged": None if v is None or v["status"] == "not_checked" else v["status"] == "in_sync",
            "verify_status": None if v is None else v["status"],
            "created": list((applied or {}).get("created") or pre[name]["created"]),
            "updated": list((applied or {}).get("updated") or pre[name]["updated"]),
            "removed": list((applied or {}).get("removed") or pre[name]["removed"])})
    in_run = [e for e in entries if e["outcome"] != "not_checked"]
    counts = {}
    for e in entries:
        counts[e["outcome"]] = counts.get(e["outcome"], 0) + 1
    good = [e for e in in_run if e["outcome"] in OK and e["converged"] is not False]
    changed = [e for e in in_run if e["outcome"] in ("applied", "rolled_back")]
    if len(good) == len(in_run):
        status = "complete"
    elif not changed and not (allow_partial and good):
        status = "stopped" if any(e["outcome"] == "not_applied" for e in in_run) else "failed"
    else:
        status = "partial"
    return {"status": status, "ok": status == "complete", "allow_partial": bool(allow_partial),
            "summary": counts, "firewalls": entries}


def summary_markdown(summary):
    """One table: firewall, platform, outcome, confirmation, converged, what changed, message."""
    head = {"complete": "every firewall is as the policy says",
            "partial": "PARTIAL: some firewalls were changed (or were already as the policy says), others were not",
            "stopped": "nothing was changed: a firewall failed its check before any change",
            "failed": "failed"}[summary["status"]]
    out = ["# Deploy: %s" % head, "",
           ", ".join("%d %s" % (n, k.replace("_", " ")) for k, n in sorted(summary["summary"].items())) + ".", "",
           "| firewall | platform | outcome | confirmation | converged | created | updated | removed | message |",
           "| --- | --- | --- | --- | --- | ---: | ---: | ---: | --- |"]
    for e in summary["firewalls"]:
        conv = "-" if e["converged"] is None else "yes" if e["converged"] else "NO"
        out.append("| %s | %s | %s | %s | %s | %d | %d | %d | %s |" % (
            e["firewall"], e["platform"], e["outcome"].replace("_", " "), e["guard"] or "-", conv,
            len(e["created"]), len(e["updated"]), len(e["removed"]),
            e["message"].replace("|", "\\|").replace("\n", " ")[:300]))
    return "\n".join(out) + "\n"
