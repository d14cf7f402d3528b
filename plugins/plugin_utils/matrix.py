# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The policy as a Markdown port matrix, for review in a pull request."""
from __future__ import annotations


def _any(values):
    return "any" if values is None else ", ".join(values)


def _rule_id(rule):
    """The id, marked when the rule is not one of the page's rows."""
    if rule.get("extra"):
        return "%s (extra)" % rule["id"]
    if rule.get("note"):
        return "%s (page note, opt-in)" % rule["id"]
    return rule["id"]


def port_matrix(policy):
    dep = policy.get("deployment", {})
    lines = [
        "# OCS 2007 edge firewall policy: %s" % policy["topology"],
        "",
        "Seed: Microsoft \"Step 2.3. Configure Firewalls\", tables 9-26 (data/seed_tables.yml).",
        "Director: %s; next hop: %s; sites: %s." % (
            dep.get("director") or "none", dep.get("next_hop") or "none",
            ", ".join("%s (%s)" % kv for kv in dep.get("sites", {}).items())),
        "",
        "Direction as the page defines it: internal firewall outbound = internal network -> edge "
        "server; external firewall inbound = Internet -> edge server.",
        "",
        "## Rules",
        "",
        "| id | table | figure | role | firewall | direction | protocol | service "
        "| local addresses | local ports | remote addresses | remote ports |",
        "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in policy["rules"]:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            _rule_id(r), r["table"] if r["table"] is not None else "-",
            r["figure"] if r["figure"] is not None else ("note" if r.get("note") else "-"),
            r["server_role"] or "-", r["firewall"], r["direction"],
            r["protocol"], r["service"], _any(r["local_addresses"]), _any(r["local_ports"]),
            _any(r["remote_addresses"]), _any(r["remote_ports"])))
    for name, fw in policy["firewalls"].items():
        lines += [
            "",
            "## %s: %s firewall, %s, site %s (%s mode)" % (
                name, fw["side"], fw["platform"], fw["site"], fw["mode"]),
            "",
            "| # | rule | chain | protocol | source | sport | destination | dport | zones |",
            "| ---: | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for i, p in enumerate(fw["rules"], 1):
            lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s -> %s |" % (
                i, _rule_id(p), p["chain"], p["protocol"], _any(p["src"]), _any(p["sport"]),
                _any(p["dst"]), _any(p["dport"]), p["src_zone"], p["dst_zone"]))
        mgmt = fw.get("management") or {}
        if mgmt.get("sources"):
            lines.append("")
            lines.append("Management (always allowed to the firewall itself): %s, TCP %s." % (
                ", ".join(mgmt["sources"]), ", ".join(mgmt["ports"])))
    reasons = [r for r in policy["rules"] if r.get("extra") or r.get("note")]
    if reasons:
        lines += ["", "## Rules beyond the page's rows", ""]
        lines += ["- %s: %s" % (r["id"], r["reason"].replace("|", "/")) for r in reasons]
    if policy.get("warnings"):
        lines += ["", "## Warnings", ""] + ["- %s" % w for w in policy["warnings"]]
    return "\n".join(lines) + "\n"
