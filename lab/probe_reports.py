"""Reports of a probe run: probe-matrix.md (for people), probe-matrix.xml (JUnit), and the
summary printed on the terminal. Each probe names the rule ids of the policy's answer for its
flow: the same answer `ansible-playbook ocs.edge_firewall.query_flow` gives (see
docs/diagram-and-query.md)."""
import os
import sys
import xml.sax.saxutils as sx


def fmt_port(p):
    return str(p["dport"]) if not p["sport_fixed"] else "%d (from %d)" % (p["dport"], p["sport"])


def _order(p):
    return (p["ok"], p["expect"] != "open", p["rule"], p["dst"], p["dport"])


def query_text(p):
    """The query's answer for the probe's flow, by rule id (allowed) or nearest rules (denied)."""
    a = p.get("answer")
    if not a:
        return ""
    if a["allowed"]:
        return "allowed: " + ", ".join(a["rules"])
    near = ", ".join(a.get("nearest") or []) or "none"
    return "denied (%s); nearest: %s" % (", ".join(a.get("denied_by") or []) or "no firewall path", near)


def _md_head(name, probes, routes, diffs, title_extra):
    npass = sum(p["ok"] for p in probes) + sum(r["ok"] for r in routes)
    md = ["# Probe matrix: %s%s" % (name, title_extra), "",
          "%d of %d checks passed (%d allowed flows, %d denied flows, %d route checks)." % (
              npass, len(probes) + len(routes), sum(p["expect"] == "open" for p in probes),
              sum(p["expect"] == "blocked" for p in probes), len(routes)), "",
          "Allowed flows pass when answered and the server saw the client's own address (no NAT);",
          "denied flows pass when unanswered (a listener is on every probed port).",
          "The query column is the policy's answer for the same flow, as "
          "`ansible-playbook ocs.edge_firewall.query_flow -e src=.. -e dst=.. -e proto=.. -e dport=..` "
          "gives it (the lab's Internet client is private: add `-e src_zone=internet`).", ""]
    if diffs is not None:
        md += ["## Drift detected by packets", "",
               "Probes of the true policy that the drift breaks (%d):" % len(diffs), ""]
        md += ["- %s %s %s:%s -> %s:%s (%s, expected %s)" % (
            p["rule"] or p["label"], p["protocol"], p["src"], p["sport"] or "*", p["dst"], p["dport"],
            p["label"], p["true_expect"]) for p in diffs] + [""]
    return md


def markdown(name, probes, routes, diffs=None, title_extra=""):
    md = _md_head(name, probes, routes, diffs, title_extra)
    md += ["| result | expect | got | rule / reason | proto | client | source | server | destination | port "
           "| query | detail |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in sorted(probes, key=_order):
        md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            "PASS" if p["ok"] else "**FAIL**", p["expect"], p["status"],
            (p["rule"] + " " if p["rule"] else "") + p["label"], p["protocol"], p["client"], p["src"],
            p["server"], p["dst"], fmt_port(p), query_text(p), (p["detail"] or p["why"]).replace("|", "/")))
    md += ["", "## Routes", "", "| result | container | routes |", "| --- | --- | --- |"]
    for r in routes:
        md.append("| %s | %s | %s |" % ("PASS" if r["ok"] else "**FAIL**", r["container"], r["detail"]))
    return "\n".join(md) + "\n"


def junit(name, probes, routes):
    fails = sum(not p["ok"] for p in probes) + sum(not r["ok"] for r in routes)
    x = ['<?xml version="1.0" encoding="UTF-8"?>',
         '<testsuites><testsuite name="%s" tests="%d" failures="%d">' % (
             sx.escape("probe-matrix." + name), len(probes) + len(routes), fails)]
    for p in probes:
        cname = "%s %s %s:%s -> %s %s:%s %s" % (p["expect"], p["client"], p["src"], p["sport"] or "*",
                                                 p["server"], p["dst"], p["dport"], p["protocol"])
        x.append('<testcase classname="%s" name="%s">' % (sx.quoteattr(p["rule"] or p["label"])[1:-1],
                                                          sx.quoteattr(cname + " " + p["label"])[1:-1]))
        if not p["ok"]:
            x.append('<failure message=%s/>' % sx.quoteattr("expected %s, got %s %s" % (p["expect"], p["status"], p["detail"])))
        x.append("</testcase>")
    for r in routes:
        x.append('<testcase classname="routes" name=%s>' % sx.quoteattr(r["container"]))
        if not r["ok"]:
            x.append('<failure message=%s/>' % sx.quoteattr(r["detail"]))
        x.append("</testcase>")
    x.append("</testsuite></testsuites>")
    return "\n".join(x) + "\n", fails


def write_reports(out, name, probes, routes, diffs=None, title_extra=""):
    """probe-matrix.md and probe-matrix.xml into out; returns the number of failed checks."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "probe-matrix.md"), "w") as f:
        f.write(markdown(name, probes, routes, diffs, title_extra))
    xml, fails = junit(name, probes, routes)
    with open(os.path.join(out, "probe-matrix.xml"), "w") as f:
        f.write(xml)
    return fails


def print_summary(probes, routes, stream=sys.stdout):
    w = stream.write
    w("%-7s %-8s %-11s %-34s %-4s %-12s -> %-12s %-16s %s\n" % (
        "result", "expect", "got", "rule / reason", "prot", "client", "server", "destination", "port"))
    for p in sorted(probes, key=_order):
        w("%-7s %-8s %-11s %-34s %-4s %-12s -> %-12s %-16s %s\n" % (
            "PASS" if p["ok"] else "FAIL", p["expect"], p["status"],
            ((p["rule"] + " " if p["rule"] else "") + p["label"])[:34], p["protocol"], p["client"],
            p["server"], p["dst"], fmt_port(p)))
    for r in routes:
        w("%-7s routes of %s: %s\n" % ("PASS" if r["ok"] else "FAIL", r["container"], r["detail"]))
