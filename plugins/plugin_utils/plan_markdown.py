# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A plan (plugin_utils/plan.py ``build_plan``) as Markdown, for a pull-request comment.

Deterministic: the same plan gives the same text (docs/gitops.md is generated from it).
"""
from __future__ import annotations

import json

RULE_COLUMNS = ("id", "table", "figure", "server_role", "firewall", "direction", "protocol", "service",
                "local_addresses", "local_ports", "remote_addresses", "remote_ports")


def _cell(value):
    if value is None:
        return "any"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value).replace("|", "\\|")


def _rule_table(rules):
    out = ["| " + " | ".join(c.replace("_", " ") for c in RULE_COLUMNS) + " |",
           "| " + " | ".join("---" for column in RULE_COLUMNS) + " |"]
    out += ["| " + " | ".join(("`%s`" % r["id"]) if c == "id" else _cell(r.get(c)) for c in RULE_COLUMNS) + " |"
            for r in rules]
    return out


def _changed_table(changed):
    out = ["| id | table | figure | field | before | after |", "| --- | ---: | ---: | --- | --- | --- |"]
    for c in changed:
        for field, ba in c["fields"].items():
            out.append("| `%s` | %s | %s | %s | %s | %s |"
                       % (c["id"], c["table"], c["figure"], field, _cell(ba["before"]), _cell(ba["after"])))
    return out


def _headline(plan):
    s = plan["summary"]
    if not plan["changed"]:
        return ["**No changes.** The inventory gives the same policy and the same rule set on every "
                "firewall as the base (%s)." % plan["base"]]
    return ["Base: %s. New: %s." % (plan["base"], plan["new"]), "",
            "**Seed rules: %d added, %d removed, %d changed. Firewalls changing: %d "
            "(%d packet-filter rules appear, %d disappear).**"
            % (s["rules_added"], s["rules_removed"], s["rules_changed"], s["firewalls_changed"],
               s["pfrules_appear"], s["pfrules_disappear"])]


def _policy_section(plan):
    out = []
    if plan["deployment"]:
        out += ["", "## Deployment", "", "| setting | before | after |", "| --- | --- | --- |"]
        out += ["| %s | %s | %s |" % (k, _cell(v["before"]), _cell(v["after"]))
                for k, v in sorted(plan["deployment"].items())]
    rules = plan["rules"]
    for title, key in (("Seed rules added", "added"), ("Seed rules removed", "removed")):
        if rules[key]:
            out += ["", "## %s" % title, ""] + _rule_table(rules[key])
    if rules["changed"]:
        out += ["", "## Seed rules changed", ""] + _changed_table(rules["changed"])
    return out


def _firewall_section(host, fw):
    out = ["", "### %s (%s, %s firewall, site %s): %s" % (host, fw["platform"], fw["side"], fw["site"], fw["status"])]
    if fw["status"] == "removed":
        out += ["", "Not in the new policy: the deploy no longer manages it, and its rules stay in force "
                "until they are removed (the role's state absent)."]
    if fw["error"]:
        out += ["", "**The backend refuses this rule set; the deploy would fail on %s:** %s" % (host, fw["error"])]
    for field, ba in sorted(fw["fields"].items()):
        if fw["status"] == "changed":
            out += ["", "- %s: %s -> %s" % (field, _cell(ba["before"]), _cell(ba["after"]))]
    for title, key in (("Packet-filter rules that appear", "appear"), ("Packet-filter rules that disappear", "disappear")):
        if fw["pfrules"][key]:
            out += ["", "%s:" % title, ""] + ["- `%s`" % t for t in fw["pfrules"][key]]
    if fw["diff"]:
        out += ["", "<details><summary>%s: diff of the rendered artifact against the base</summary>" % fw["artifact"],
                "", "```diff", fw["diff"].rstrip("\n"), "```", "", "</details>"]
    return out


def plan_markdown(plan):
    """The plan as Markdown: headline, deployment and seed-rule changes, then per firewall the
    packet-filter rules that appear/disappear and the diff of its rendered artifact."""
    out = ["# Firewall change plan: %s" % plan["topology"], ""] + _headline(plan)
    if plan["summary"]["errors"]:
        out += ["", "**Errors (the deploy would stop before any firewall is touched):**", ""]
        out += ["- %s" % e for e in plan["summary"]["errors"]]
    out += _policy_section(plan)
    if plan["firewalls"]:
        out += ["", "## Firewalls", "", "| firewall | platform | side | status | rules appear | rules disappear |",
                "| --- | --- | --- | --- | ---: | ---: |"]
        out += ["| %s | %s | %s | %s | %d | %d |" % (h, f["platform"], f["side"], f["status"],
                                                     len(f["pfrules"]["appear"]), len(f["pfrules"]["disappear"]))
                for h, f in plan["firewalls"].items()]
        for host, fw in plan["firewalls"].items():
            out += _firewall_section(host, fw)
    if plan["warnings"]:
        out += ["", "## Warnings of the new policy", ""] + ["- %s" % w for w in plan["warnings"]]
    return "\n".join(out) + "\n"
