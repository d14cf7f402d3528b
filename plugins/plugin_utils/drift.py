# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drift report: what a check-mode run found on every firewall, as JSON, JUnit XML and Markdown.

Input per firewall (what playbooks/drift.yml records for each host):
``{"platform", "state": "checked" | "unreachable" | "failed", "result": module result, "message"}``
where a module result has the shape every backend returns: ``changed``, ``created``, ``updated``,
``removed`` (lists of strings), ``diff`` (a {before, after, ...} dict or a list of them), ``warnings``.
A firewall is ``in_sync`` (nothing would change), ``drifted``, ``unreachable``, ``failed`` or
``not_checked`` (not in the run, e.g. limited out). Pure: no file, no network.
"""
from __future__ import annotations

import difflib
from xml.sax.saxutils import escape, quoteattr

SCHEMA_VERSION = 1
STATUSES = ("in_sync", "drifted", "unreachable", "failed", "not_checked")
TITLES = {"drift": "Drift report", "verify": "Post-apply verification", "check": "Check against the live firewalls"}


def _strings(values):
    return [str(v) for v in (values or [])]


def diff_text(diff):
    """A module's ``diff`` (dict or list of dicts with before/after) -> one unified diff text."""
    parts = diff if isinstance(diff, list) else [diff] if isinstance(diff, dict) else []
    out = []
    for part in parts:
        before, after = part.get("before") or "", part.get("after") or ""
        if not isinstance(before, str) or not isinstance(after, str) or before == after:
            continue
        lines = difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                     str(part.get("before_header") or "live"), str(part.get("after_header") or "desired"))
        out.extend(line if line.endswith("\n") else line + "\n" for line in lines)
    return "".join(out)


def windows_result(plan):
    """A Windows plan without the contract's lists (changes only) in the common result shape."""
    names = {a: [c["name"] for c in plan["changes"] if c["action"] in acts]
             for a, acts in (("created", ("create",)), ("updated", ("update", "recreate")), ("removed", ("remove",)))}
    sides = {"before": [], "after": []}
    for change in plan["changes"]:
        for field, ba in sorted((change.get("fields") or {}).items()):
            for side in sides:
                if ba.get(side) is not None:
                    sides[side].append("%s: %s=%s\n" % (change["name"], field, ba[side]))
    return dict(names, changed=bool(plan.get("changed")), warnings=[],
                diff={"before": "".join(sides["before"]), "after": "".join(sides["after"]),
                      "before_header": "live rules of the group", "after_header": "as the policy says"})


def firewall_entry(name, check):
    """One firewall's line of the report from what the run recorded for it (None: not in the run)."""
    check = check or {}
    entry = {"firewall": name, "platform": check.get("platform"), "status": "not_checked", "created": [],
             "updated": [], "removed": [], "diff": "", "warnings": [], "message": str(check.get("message") or "")}
    state = check.get("state")
    if state in ("unreachable", "failed"):
        entry["status"] = state
        return entry
    if state != "checked":
        return entry
    result = check.get("result") or {}
    if "changes" in result and "created" not in result:
        result = windows_result(result)
    for key in ("created", "updated", "removed", "warnings"):
        entry[key] = _strings(result.get(key))
    entry["diff"] = diff_text(result.get("diff"))
    drifted = bool(result.get("changed")) or bool(entry["created"] or entry["updated"] or entry["removed"])
    entry["status"] = "drifted" if drifted else "in_sync"
    return entry


def build_report(checks, firewalls, kind="drift"):
    """``checks``: host -> recorded check; ``firewalls``: the policy's firewall names -> the report."""
    entries = [firewall_entry(name, checks.get(name)) for name in sorted(firewalls)]
    summary = {s: sum(1 for e in entries if e["status"] == s) for s in STATUSES}
    worst = next((s for s in ("failed", "unreachable", "drifted", "in_sync") if summary[s]), "not_checked")
    return {"schema_version": SCHEMA_VERSION, "kind": kind, "status": worst, "summary": summary,
            "firewalls": entries}


def report_junit(report):
    """JUnit XML: one test case per firewall; drift is a failure, unreachable/failed an error."""
    s = report["summary"]
    suite = "ocs.edge_firewall %s" % report["kind"]
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<testsuites name=%s tests="%d" failures="%d" errors="%d" skipped="%d">' % (
               quoteattr(suite), len(report["firewalls"]), s["drifted"], s["unreachable"] + s["failed"], s["not_checked"]),
           '  <testsuite name=%s tests="%d" failures="%d" errors="%d" skipped="%d">' % (
               quoteattr(suite), len(report["firewalls"]), s["drifted"], s["unreachable"] + s["failed"], s["not_checked"])]
    for e in report["firewalls"]:
        classname = quoteattr("ocs.edge_firewall.%s.%s" % (report["kind"], e["platform"]))
        out.append('    <testcase classname=%s name=%s>' % (classname, quoteattr(e["firewall"])))
        if e["status"] == "drifted":
            out.append('      <failure type="drift" message=%s>%s</failure>' % (quoteattr(_counts(e)), escape(_details(e))))
        elif e["status"] in ("unreachable", "failed"):
            out.append('      <error type=%s message=%s>%s</error>'
                       % (quoteattr(e["status"]), quoteattr(e["message"][:500]), escape(e["message"])))
        elif e["status"] == "not_checked":
            out.append('      <skipped message="not in this run"/>')
        out.append('    </testcase>')
    out += ['  </testsuite>', '</testsuites>']
    return "\n".join(out) + "\n"


def _counts(e):
    return "%s: %d created, %d updated, %d removed" % (e["firewall"], len(e["created"]), len(e["updated"]), len(e["removed"]))


def _details(e):
    lines = ["%s %s" % (verb, item) for verb, key in (("created:", "created"), ("updated:", "updated"),
                                                      ("removed:", "removed")) for item in e[key]]
    return "\n".join(lines) + ("\n\n" + e["diff"] if e["diff"] else "") + "\n"


def report_markdown(report):
    """The report as Markdown: one line per firewall, then what differs on each drifted one."""
    s = report["summary"]
    out = ["# %s: %s" % (TITLES.get(report["kind"], report["kind"]), report["status"].replace("_", " ")), "",
           "%d in sync, %d drifted, %d unreachable, %d failed, %d not checked." % (
               s["in_sync"], s["drifted"], s["unreachable"], s["failed"], s["not_checked"]), "",
           "| firewall | platform | status | created | updated | removed |", "| --- | --- | --- | ---: | ---: | ---: |"]
    out += ["| %s | %s | %s | %d | %d | %d |"
            % (e["firewall"], e["platform"], e["status"].replace("_", " "), len(e["created"]), len(e["updated"]),
               len(e["removed"]))
            for e in report["firewalls"]]
    for e in report["firewalls"]:
        if e["status"] in ("unreachable", "failed"):
            out += ["", "## %s: %s" % (e["firewall"], e["status"]), "", "```", e["message"].strip(), "```"]
        if e["status"] != "drifted":
            continue
        out += ["", "## %s: drifted" % e["firewall"], ""]
        out += ["- %s `%s`" % (verb, item) for verb, key in (("created:", "created"), ("updated:", "updated"),
                                                             ("removed:", "removed")) for item in e[key]]
        if e["diff"]:
            out += ["", "```diff", e["diff"].rstrip("\n"), "```"]
    return "\n".join(out) + "\n"
