"""Drift planting: change the live firewalls of a lab by hand (as an operator would), and
what the policy looks like with those changes (for the verifier's own test).

A drift description, per firewall: {"delete": [rule ids], "change_port": {"id", "to"},
"rogue": [{"protocol", "dst", "dport"}]}: delete the rules with a given id, change the port
of another, add a rogue allow rule.
"""
import copy
import json
import re

from probe_matrix import build_matrix
from probe_oracle import Lab, Policy
from probe_runner import check, podman


def apply_drift(policy, drift):
    """The policy as the drifted firewalls enforce it (for the evaluator)."""
    p = copy.deepcopy(policy)
    for fwname, d in drift.items():
        fw = p["firewalls"][fwname]
        rules = []
        for r in fw["rules"]:
            if r["id"] in d.get("delete", []):
                continue
            ch = d.get("change_port")
            if ch and r["id"] == ch["id"]:
                r = dict(r, dport=[str(ch["to"])])
            rules.append(r)
        for rogue in d.get("rogue", []):
            rules.append(dict(rogue, id="rogue", chain="forward", sport=rogue.get("sport"),
                              src=rogue.get("src"), dst=rogue.get("dst")))
        fw["rules"] = rules
    return p


def expect_drift(policy, lab, probes, drift):
    """Re-expect the probes under the drifted policy; the probes whose expectation changed
    (each with true_expect: what the true policy expects)."""
    ev = Policy(apply_drift(policy, drift), Lab(lab))
    diffs = []
    for p in probes:
        allowed = ev.allowed(p["protocol"], p["src"], p["sport"], p["dst"], p["dport"])[0]
        now = "open" if allowed else "blocked"
        if now != p["expect"]:
            p["true_expect"] = p["expect"]
            p["expect"] = now
            diffs.append(p)
    return diffs


# ----------------------------------------------------------------------------- on the firewalls

def _nft_rule_lines(ctr, chain):
    out = podman("exec", ctr, "nft", "-a", "list", "chain", "inet", "ocs_edge", chain)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout.splitlines()


def _nft_handles(lines, rid):
    return [re.search(r"# handle (\d+)", ln).group(1) for ln in lines if ('comment "ocs %s ' % rid) in ln]


def drift_nftables(fwname, ctr, d):
    """nftables: table inet ocs_edge, rules found by the id in their comment."""
    lines = _nft_rule_lines(ctr, "forward")
    for rid in d.get("delete", []):
        hs = _nft_handles(lines, rid)
        if not hs:
            raise RuntimeError("%s: no rule %s to delete" % (fwname, rid))
        for h in hs:
            check(podman("exec", ctr, "nft", "delete", "rule", "inet", "ocs_edge", "forward", "handle", h))
    ch = d.get("change_port")
    if ch:
        for ln in lines:
            if ('comment "ocs %s ' % ch["id"]) in ln:
                h = re.search(r"# handle (\d+)", ln).group(1)
                body = re.sub(r"\s*# handle \d+$", "", ln).strip()
                body = re.sub(r"dport \S+", "dport %d" % ch["to"], body, count=1)
                check(podman("exec", ctr, "nft", "replace", "rule", "inet", "ocs_edge", "forward",
                             "handle", h, body))
    for rg in d.get("rogue", []):
        rule = "%s ip daddr %s %s dport %s accept comment \"rogue: added by hand\"" % (
            "", ",".join(rg["dst"]) if len(rg["dst"]) == 1 else "{ %s }" % ", ".join(rg["dst"]),
            rg["protocol"], ",".join(rg["dport"]))
        check(podman("exec", ctr, "nft", "insert", "rule", "inet", "ocs_edge", "forward", rule.strip()))


def _ipt(ctr, rule_spec):
    check(podman("exec", ctr, "sh", "-c", "iptables " + rule_spec))


def drift_iptables(fwname, ctr, d):
    """iptables: the rules with the "ocs <id> " comment."""
    out = check(podman("exec", ctr, "iptables", "-S"))
    rules = out.stdout.splitlines()
    for rid in d.get("delete", []):
        hits = [r for r in rules if ("ocs %s " % rid) in r and r.startswith("-A ")]
        if not hits:
            raise RuntimeError("%s: no rule %s to delete" % (fwname, rid))
        for r in hits:
            _ipt(ctr, r.replace("-A ", "-D ", 1))
    ch = d.get("change_port")
    if ch:
        for r in rules:
            if ("ocs %s " % ch["id"]) in r and r.startswith("-A "):
                _ipt(ctr, r.replace("-A ", "-D ", 1))
                _ipt(ctr, re.sub(r"--dport \S+", "--dport %d" % ch["to"], r, count=1))
    chain = next((r.split()[1] for r in rules if r.startswith("-A ") and "ocs " in r
                  and " -j ACCEPT" in r and "--dport" in r), "FORWARD")
    for rg in d.get("rogue", []):
        check(podman("exec", ctr, "iptables", "-I", chain, "1", "-p", rg["protocol"], "-d", ",".join(rg["dst"]),
                     "--dport", ",".join(rg["dport"]).replace("-", ":"), "-m", "comment",
                     "--comment", "rogue: added by hand", "-j", "ACCEPT"))


def plant(policy, lab, drift):
    """Apply a drift description to the live nftables/iptables firewalls (podman exec)."""
    L = Lab(lab)
    for fwname, d in drift.items():
        ctr = L.ctr[fwname]["name"]
        platform = policy["firewalls"][fwname]["platform"]
        if platform == "nftables":
            drift_nftables(fwname, ctr, d)
        elif platform == "iptables":
            drift_iptables(fwname, ctr, d)
        else:
            raise RuntimeError("%s: platform %s: no drift support" % (fwname, platform))
        print("drift applied to %s (%s): %s" % (fwname, platform, json.dumps(d)))


# ----------------------------------------------------------------------------- the default drift

def _rule_to_delete(fw):
    """External: the A/V RTP/UDP inbound rule; internal: the PSOM 8057 rule (else the first)."""
    rules = fw["rules"]
    if fw["side"] == "external":
        dele = [r for r in rules if r["protocol"] == "udp" and r["dport"] and "-" in r["dport"][0]
                and r["direction"] == "inbound"] or rules[:1]
    else:
        dele = [r for r in rules if r["dport"] == ["8057"]] or rules[:1]
    return dele[0]


def _rogue_for(policy, L, ev, probes, name):
    """The first denied flow through this firewall, to an edge server or VIP preferably,
    that a rogue rule really opens (no host firewall behind it)."""
    cands = [p for p in probes if p["expect"] == "blocked" and not p["sport_fixed"]
             and ev.path_firewall(p["src"], p["dst"]) == name]
    cands.sort(key=lambda p: (L.owner(p["dst"])["kind"] not in ("edge", "loadbalancer"),
                              not p["label"].startswith("Internet to 8057")))
    for neg in cands:
        rogue = {"protocol": neg["protocol"], "dst": [neg["dst"]], "dport": [str(neg["dport"])]}
        ev2 = Policy(apply_drift(policy, {name: {"rogue": [rogue]}}), L)
        if ev2.allowed(neg["protocol"], neg["src"], neg["sport"], neg["dst"], neg["dport"])[0]:
            return rogue
    return None


def default_drift(policy, lab):
    """Drift for every Linux network firewall: delete a required rule, change the port of
    another, add a rogue allow rule that opens one of the matrix's denied flows through it."""
    L = Lab(lab)
    ev = Policy(policy, L)
    probes = build_matrix(policy, lab)
    drift = {}
    for name, fw in sorted(policy["firewalls"].items()):
        if fw["mode"] != "network" or fw["platform"] not in ("nftables", "iptables"):
            continue
        dele = _rule_to_delete(fw)
        change = next((r for r in fw["rules"] if r is not dele and r["dport"] and "-" not in r["dport"][0]
                       and r["id"] != dele["id"]), None)
        d = {"delete": [dele["id"]]}
        if change:
            d["change_port"] = {"id": change["id"], "to": int(change["dport"][0]) + 1}
        rogue = _rogue_for(policy, L, ev, probes, name)
        if rogue:
            d["rogue"] = [rogue]
        drift[name] = d
    return drift


def drift_detected(diffs, drift):
    """What of the drift the packets did not show (empty: every change was seen)."""
    rules = {p["rule"] for p in diffs}
    missing = []
    for fw, d in drift.items():
        for rid in d.get("delete", []) + ([d["change_port"]["id"]] if d.get("change_port") else []):
            if rid not in rules:
                missing.append("%s: change of rule %s not seen by any probe" % (fw, rid))
        for rg in d.get("rogue", []):
            if not any(p["true_expect"] == "blocked" and p["dst"] in rg["dst"] for p in diffs):
                missing.append("%s: rogue rule %s not seen by any probe" % (fw, json.dumps(rg)))
    return missing
