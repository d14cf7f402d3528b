# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan of a policy change, for review before any firewall is touched.

``build_plan(base, new, options)`` compares two policies (docs/policy-model.md): the seed rules
added, removed and changed by rule id; per firewall, the packet-filter rules that appear or
disappear; and the per-platform artifacts every firewall would get (nft script, iptables-restore
input, pfSense aliases and rules as written to config.xml, Windows parameter sets), rendered by
the same backend code the modules run, with their unified diffs. ``plan_markdown(plan)`` is the
text for a pull-request comment. Pure: no file, no network.
"""
from __future__ import annotations

import difflib
import json
from collections import Counter
from pathlib import Path

import yaml

from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables as ipt
from ansible_collections.ocs.edge_firewall.plugins.module_utils import nftables as nft
from ansible_collections.ocs.edge_firewall.plugins.module_utils import pfsense as pfs
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import FirewallError
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils import windows as win

SCHEMA_VERSION = 1
ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"

# Fields of a RULE compared by id (everything but the id itself).
RULE_FIELDS = ("table", "figure", "row", "server_role", "firewall", "direction", "protocol", "service",
               "local_ports", "local_addresses", "remote_ports", "remote_addresses", "site", "servers")
FIREWALL_FIELDS = ("side", "site", "platform", "mode", "interfaces", "management")

# Platform -> (role whose defaults apply, the role variables the renderer takes).
PLATFORM_OPTIONS = {
    "nftables": ("nftables", ("ocs_nftables_table", "ocs_nftables_input_policy", "ocs_nftables_output_policy",
                              "ocs_nftables_allow_icmp")),
    "iptables": ("iptables", ("ocs_iptables_chain_prefix", "ocs_iptables_input_policy",
                              "ocs_iptables_output_policy", "ocs_iptables_allow_icmp")),
    "pfsense": ("pfsense", ()),
    "windows": ("windows", ("ocs_windows_firewall_group", "ocs_windows_firewall_profiles",
                            "ocs_windows_firewall_rule_prefix")),
}
ARTIFACT_SUFFIX = {"nftables": "nft", "iptables": "rules", "pfsense": "pfsense.xml", "windows": "windows.json"}


class PlanError(ValueError):
    """A base or new policy that is not a policy."""


# ------------------------------------------------------------------ options

def role_defaults(platform):
    """The defaults of the role that enforces ``platform`` (the values a deploy uses)."""
    role, names = PLATFORM_OPTIONS[platform]
    path = ROLES_DIR / role / "defaults" / "main.yml"
    data = yaml.safe_load(path.read_text()) or {}
    return {name: data[name] for name in names if name in data}


def host_options(platform, hostvars):
    """Role defaults of ``platform`` overridden by the host's own variables of that role."""
    opts = role_defaults(platform)
    for name in PLATFORM_OPTIONS[platform][1]:
        if name in (hostvars or {}):
            opts[name] = hostvars[name]
    return opts


# ---------------------------------------------------------------- artifacts

def _nft_artifact(fw, name, o):
    table = o["ocs_nftables_table"]
    desired = nft.desired_table(fw, name, o["ocs_nftables_input_policy"], o["ocs_nftables_output_policy"],
                                o["ocs_nftables_allow_icmp"])
    return nft.render_script(desired, table, header=[
        "Managed by ocs.edge_firewall (module nft_ruleset) for firewall %s." % name,
        "Do not edit: the next run puts table %s %s back as the policy says." % (nft.FAMILY, table)])


def _ipt_artifact(fw, name, o):
    state = ipt.desired_state(fw, name, o["ocs_iptables_chain_prefix"], o["ocs_iptables_input_policy"],
                              o["ocs_iptables_output_policy"], o["ocs_iptables_allow_icmp"])
    return ipt.render_rules(state, header=["Owned chains of ocs.edge_firewall (module iptables_ruleset) "
                                           "for firewall %s, as iptables-restore input." % name])


def _pfsense_artifact(fw, name, _o):
    """The managed aliases, filter and NAT rules as pfsense_ruleset writes them into config.xml,
    computed by the module's own reconcile on a default config (GUI on https, SSH on) that holds
    only the firewall's interfaces: trackers as on a config with no other tracker; the ports of
    the firewall's own GUI/SSH come from the live config.xml at apply time. Stamps left out."""
    ifaces = "".join("<%s><if>if%d</if></%s>" % (i, n, i)
                     for n, i in enumerate(sorted(set((fw.get("interfaces") or {}).values()))))
    root = pfs.parse_config(("<?xml version=\"1.0\"?><pfsense><version>23.3</version><system><webgui><protocol>https</protocol>"
                             "</webgui><ssh><enable>enabled</enable></ssh></system><interfaces>%s</interfaces>"
                             "<aliases></aliases><filter></filter><nat></nat></pfsense>" % ifaces).encode("utf-8"))
    new = pfs.reconcile(root, fw, name, now=0)["root"]
    out = []
    for title, section, tag, managed in (("aliases", "aliases", "alias", pfs.is_managed_alias),
                                         ("filter rules", "filter", "rule", pfs.is_managed_rule),
                                         ("NAT rules", "nat", "rule", pfs.is_managed_rule)):
        elems = [e for e in (new.find(section) if new.find(section) is not None else []) if e.tag == tag and managed(e)]
        if elems:
            out.append("<!-- %s of firewall %s -->\n" % (title, name))
        for elem in elems:
            for stamp in elem.findall("created") + elem.findall("updated"):
                elem.remove(stamp)
            out.append(pfs.dump_element(elem))
    return "".join(out)


def _windows_artifact(fw, name, o):
    sets = win.desired(fw, name=name, group=o["ocs_windows_firewall_group"],
                       profiles=o["ocs_windows_firewall_profiles"],
                       prefix=o["ocs_windows_firewall_rule_prefix"])
    # one parameter set per line: a diff line names the rule it changes
    return "[\n" + ",\n".join(json.dumps(s, sort_keys=False) for s in sets) + "\n]\n"


RENDERERS = {"nftables": _nft_artifact, "iptables": _ipt_artifact, "pfsense": _pfsense_artifact,
             "windows": _windows_artifact}
RENDER_ERRORS = (FirewallError, pfs.PfSenseError, win.WindowsFirewallError)


def render_artifact(firewall, name, hostvars=None):
    """-> {"platform", "file", "text", "error"}: what the backend of ``firewall`` would load.
    A firewall its backend refuses gets ``error`` (the message the deploy would fail with)."""
    platform = firewall.get("platform")
    if platform not in RENDERERS:
        return {"platform": platform, "file": "%s.txt" % name, "text": "",
                "error": "firewall %s: platform %r has no renderer" % (name, platform)}
    entry = {"platform": platform, "file": "%s.%s" % (name, ARTIFACT_SUFFIX[platform]), "text": "", "error": None}
    try:
        entry["text"] = RENDERERS[platform](firewall, name, host_options(platform, hostvars))
    except RENDER_ERRORS as exc:
        entry["error"] = str(exc)
    return entry


def render_all(policy, options=None):
    """Every firewall of ``policy`` -> its artifact; ``options``: host -> that host's variables."""
    options = options or {}
    return {host: render_artifact(fw, host, options.get(host))
            for host, fw in sorted((policy.get("firewalls") or {}).items())}


def unified(before, after, path):
    """Unified diff of two artifact texts ('' when equal); ``path`` names both sides."""
    lines = difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                 "base/%s" % path, "new/%s" % path)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# -------------------------------------------------------------- policy diff

def _check_policy(policy, what):
    if not isinstance(policy, dict) or not isinstance(policy.get("rules"), list) \
            or not isinstance(policy.get("firewalls"), dict):
        raise PlanError("%s: not a policy (a dict with rules and firewalls, docs/policy-model.md)" % what)


def rule_changes(base_rules, new_rules):
    """Seed rules by id -> {"added": [RULE], "removed": [RULE], "changed": [{id, table, figure, fields}]}."""
    base = {r["id"]: r for r in base_rules}
    new = {r["id"]: r for r in new_rules}
    changed = []
    for rule in new_rules:
        old = base.get(rule["id"])
        if old is None:
            continue
        fields = {f: {"before": old.get(f), "after": rule.get(f)} for f in RULE_FIELDS if old.get(f) != rule.get(f)}
        if fields:
            changed.append({"id": rule["id"], "table": rule.get("table"), "figure": rule.get("figure"),
                            "fields": fields})
    return {"added": [r for r in new_rules if r["id"] not in base],
            "removed": [r for r in base_rules if r["id"] not in new],
            "changed": changed}


def _any(values, port=False):
    if values is None:
        return " port any" if port else "any"
    return (" port " if port else "") + ",".join(str(v) for v in values)


def pfrule_text(pfrule):
    """One packet-filter rule as one readable line, starting with its rule id."""
    return "%s: %s from %s%s to %s%s (%s, %s -> %s)" % (
        pfrule.get("id"), pfrule.get("protocol"), _any(pfrule.get("src")),
        "" if pfrule.get("sport") is None else _any(pfrule.get("sport"), True),
        _any(pfrule.get("dst")), _any(pfrule.get("dport"), True),
        pfrule.get("chain"), pfrule.get("src_zone"), pfrule.get("dst_zone"))


def pfrule_changes(base_fw, new_fw):
    """Packet-filter rules that appear / disappear on one firewall (a changed rule is both)."""
    before = Counter(pfrule_text(r) for r in (base_fw or {}).get("rules") or [])
    after = Counter(pfrule_text(r) for r in (new_fw or {}).get("rules") or [])
    appear = [t for t in (pfrule_text(r) for r in (new_fw or {}).get("rules") or []) if (after - before)[t]]
    disappear = [t for t in (pfrule_text(r) for r in (base_fw or {}).get("rules") or []) if (before - after)[t]]
    return {"appear": list(dict.fromkeys(appear)), "disappear": list(dict.fromkeys(disappear))}


def _firewall_change(host, base_fw, new_fw, base_art, new_art):
    """The change of one firewall, or None when its policy and its artifact are the same."""
    fields = {f: {"before": (base_fw or {}).get(f), "after": (new_fw or {}).get(f)}
              for f in FIREWALL_FIELDS if (base_fw or {}).get(f) != (new_fw or {}).get(f)}
    pfrules = pfrule_changes(base_fw, new_fw)
    before_text = base_art["text"] if base_art else ""
    after_text = new_art["text"] if new_art else ""
    art = new_art or base_art
    diff = unified(before_text, after_text, art["file"])
    error = new_art["error"] if new_art else None
    if not (fields or pfrules["appear"] or pfrules["disappear"] or diff or error):
        return None
    status = "added" if base_fw is None else "removed" if new_fw is None else "changed"
    fw = new_fw or base_fw
    return {"status": status, "platform": fw.get("platform"), "side": fw.get("side"), "site": fw.get("site"),
            "fields": fields, "pfrules": pfrules, "artifact": art["file"], "diff": diff, "error": error}


def build_plan(base, new, options=None, base_label="base", new_label="new"):
    """The plan from policy ``base`` to policy ``new``; ``options``: host -> its role variables
    (both sides are rendered with them: the plan shows policy changes, not option changes)."""
    _check_policy(base, "base (%s)" % base_label)
    _check_policy(new, "new (%s)" % new_label)
    base_art, new_art = render_all(base, options), render_all(new, options)
    firewalls = {}
    for host in sorted(set(base["firewalls"]) | set(new["firewalls"])):
        change = _firewall_change(host, base["firewalls"].get(host), new["firewalls"].get(host),
                                  base_art.get(host), new_art.get(host))
        if change:
            firewalls[host] = change
    rules = rule_changes(base["rules"], new["rules"])
    deployment = {k: {"before": (base.get("deployment") or {}).get(k), "after": v}
                  for k, v in (new.get("deployment") or {}).items() if (base.get("deployment") or {}).get(k) != v}
    if base.get("topology") != new.get("topology"):
        deployment["topology"] = {"before": base.get("topology"), "after": new.get("topology")}
    changed = bool(firewalls or deployment or any(rules.values()))
    return {"schema_version": SCHEMA_VERSION, "changed": changed, "base": base_label, "new": new_label,
            "topology": new.get("topology"), "deployment": deployment, "rules": rules, "firewalls": firewalls,
            "summary": _summary(rules, firewalls), "warnings": list(new.get("warnings") or []),
            "artifacts": {h: {"file": a["file"], "platform": a["platform"], "text": a["text"], "error": a["error"]}
                          for h, a in new_art.items()}}


def _summary(rules, firewalls):
    return {"rules_added": len(rules["added"]), "rules_removed": len(rules["removed"]),
            "rules_changed": len(rules["changed"]), "firewalls_changed": len(firewalls),
            "pfrules_appear": sum(len(f["pfrules"]["appear"]) for f in firewalls.values()),
            "pfrules_disappear": sum(len(f["pfrules"]["disappear"]) for f in firewalls.values()),
            "errors": sorted("%s: %s" % (h, f["error"]) for h, f in firewalls.items() if f["error"])}
