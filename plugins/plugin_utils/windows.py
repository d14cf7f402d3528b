# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Windows Firewall backend, controller side: FIREWALL -> win_firewall_rule parameters, and the plan.

The controller-side steps of the backend contract (docs/backend-contract.md), exposed as
filters (plugins/filter/windows_firewall.py); the role ocs.edge_firewall.windows reads the host
(read_live) and applies the plan (apply):

* ``desired(firewall)``: a host FIREWALL dict (docs/policy-model.md, ``mode: host``,
  ``platform: windows``) -> the list of parameter dicts for
  ``community.windows.win_firewall_rule``, one per packet-filter rule, seen from the host:
  chain ``input`` (the remote party initiates) -> ``direction: in``, local = ``dst``/``dport``,
  remote = ``src``/``sport``; chain ``output`` (this host initiates) -> ``direction: out``,
  local = ``src``/``sport``, remote = ``dst``/``dport``.
* ``compare(desired, current)``: the desired parameter dicts + the rules Windows reports for the
  collection's group -> what to create, update and remove. Values are compared by meaning,
  after normalising every form Windows reports them in (COM ``HNetCfg.FwPolicy2`` as read by the
  role, which is also what win_firewall_rule compares, and the NetSecurity
  ``Get-NetFirewallRule`` form), so that a re-run against an unchanged host plans nothing. The
  plan carries the contract's result shape too (created / updated / removed rule ids,
  warnings, diff).

Nothing here talks to Windows; the role (roles/windows) does one read and then only the
module calls the plan asks for.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import FirewallError, parse_firewall

DEFAULT_GROUP = "OCS 2007 Edge (ocs.edge_firewall)"
DEFAULT_PREFIX = "OCS edge"
PROFILES = ("domain", "private", "public")

# Parameters of win_firewall_rule this collection owns on every rule of its group, in the
# order they are sent. Everything else (interface types, edge traversal, ICMP) keeps the
# module's/Windows' defaults and is not compared.
COMPARED = ("description", "direction", "action", "enabled", "protocol", "localip", "localport",
            "remoteip", "remoteport", "profiles", "program", "service")
# A change of these cannot be done in place safely by win_firewall_rule (it sets the ports
# before the protocol); the rule is removed and created again.
RECREATE_ON = ("protocol",)

_PORT = re.compile(r"^[0-9]{1,5}(-[0-9]{1,5})?$")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._()/-]*$")


class WindowsFirewallError(FirewallError):
    """Input problem; the message names the host and what is wrong."""


# --------------------------------------------------------------------------- desired rules


def rule_name(rule_id, prefix=DEFAULT_PREFIX):
    """Stable Windows display name of the rule made from policy rule ``rule_id``."""
    return "%s %s" % (prefix, rule_id) if prefix else str(rule_id)


def _profiles_param(profiles, where):
    if isinstance(profiles, str):
        profiles = [p.strip() for p in profiles.split(",")]
    if not isinstance(profiles, (list, tuple)) or not profiles:
        raise WindowsFirewallError("%s: ocs_windows_firewall_profiles: must be a non-empty list of %s, got %r"
                                   % (where, ", ".join(PROFILES), profiles))
    out = []
    for p in profiles:
        p = str(p).strip().lower()
        if p not in PROFILES:
            raise WindowsFirewallError("%s: ocs_windows_firewall_profiles: %r is not one of %s"
                                       % (where, p, ", ".join(PROFILES)))
        if p not in out:
            out.append(p)
    return [p for p in PROFILES if p in out]


def _ports_param(ports):
    """Parsed ports -> win_firewall_rule's text ("any", "5061", "50000-59999,3478")."""
    if ports is None:
        return "any"
    return ",".join("%d" % lo if lo == hi else "%d-%d" % (lo, hi) for lo, hi in ports)


def _addresses_param(nets, where, what, required):
    """Parsed networks -> win_firewall_rule's text (hosts as plain addresses, networks as CIDR)."""
    if nets is None:
        if required:
            raise WindowsFirewallError(
                "%s: %s: the host's own address is missing (null means any); a host firewall rule must be "
                "bound to the server's ocs_internal_ip / ocs_external_ip" % (where, what))
        return "any"
    return ",".join(str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in nets)


def _description(rule, group):
    side = "external" if "internet" in (rule.src_zone, rule.dst_zone) else "internal"
    extra = rule.extra
    return ("OCS 2007 edge, seed table %s figure %s: %s %s, %s firewall %s (%s). "
            "Managed by ocs.edge_firewall in group '%s'; manual changes are reverted."
            % (extra.get("table"), extra.get("figure"), extra.get("server_role"), extra.get("service"),
               side, extra.get("direction"), rule.id, group))


def _settings(group, prefix, profiles, where):
    """The role's variables -> the profile list (validated)."""
    if not group or not isinstance(group, str):
        raise WindowsFirewallError("%s: ocs_windows_firewall_group: must be a non-empty string" % where)
    if prefix and not _NAME_OK.fullmatch(prefix):
        raise WindowsFirewallError("%s: ocs_windows_firewall_rule_prefix: %r has characters a rule name "
                                   "should not have" % (where, prefix))
    return _profiles_param(profiles, where)


def _rule_params(rule, group, profiles, prefix, where):
    """One parsed host rule -> the win_firewall_rule parameter dict, seen from the host."""
    rwhere = "%s: rule %s" % (where, rule.id)
    if rule.chain == "input":      # the remote party initiates
        direction, local, remote, lport, rport = "in", "dst", "src", "dport", "sport"
    else:                          # output: this host initiates
        direction, local, remote, lport, rport = "out", "src", "dst", "sport", "dport"
    return {
        "name": rule_name(rule.id, prefix),
        "group": group,
        "description": _description(rule, group),
        "direction": direction,
        "action": "allow",
        "enabled": True,
        "protocol": rule.protocol,
        "localip": _addresses_param(getattr(rule, local), rwhere, "local address (%s)" % local, required=True),
        "localport": _ports_param(getattr(rule, lport)),
        "remoteip": _addresses_param(getattr(rule, remote), rwhere, "remote address (%s)" % remote, required=False),
        "remoteport": _ports_param(getattr(rule, rport)),
        "profiles": list(profiles),
        "program": "any",
        "service": "any",
        "state": "present",
    }


def desired(firewall, name="host", group=DEFAULT_GROUP, profiles=PROFILES, prefix=DEFAULT_PREFIX):
    """FIREWALL (host mode, platform windows) -> list of win_firewall_rule parameter dicts."""
    where = "host %s" % name
    profile_list = _settings(group, prefix, profiles, where)
    try:
        fw = parse_firewall(firewall, name, "windows")
    except FirewallError as exc:
        raise WindowsFirewallError(str(exc)) from None
    out, seen = [], set()
    for rule in fw.rules:
        params = _rule_params(rule, group, profile_list, prefix, where)
        if params["name"].casefold() in seen:
            raise WindowsFirewallError("%s: rule %s: two rules would get the Windows name %r"
                                       % (where, rule.id, params["name"]))
        seen.add(params["name"].casefold())
        out.append(params)
    return out


# --------------------------------------------------------------------------- normalising


def _unwrap(value):
    """win_powershell serialises enums as {Type, String, Value}; keep the string."""
    if isinstance(value, Mapping) and "String" in value:
        return value["String"]
    if isinstance(value, Mapping) and "Value" in value:
        return value["Value"]
    return value


def _is_any(value):
    if value is None:
        return True
    if isinstance(value, (list, tuple)):
        return len(value) == 0 or all(_is_any(v) for v in value)
    return str(value).strip().lower() in ("", "*", "any")


def _tokens(value):
    if isinstance(value, (list, tuple)):
        items = value
    else:
        items = str(value).split(",")
    return [str(_unwrap(t)).strip() for t in items if str(_unwrap(t)).strip()]


def norm_direction(value):
    value = _unwrap(value)
    v = str(value).strip().lower()
    if v in ("1", "in", "inbound"):
        return "in"
    if v in ("2", "out", "outbound"):
        return "out"
    return "?%s" % value


def norm_action(value):
    # COM NET_FW_ACTION: 0 block, 1 allow. NetSecurity enum: 2 Allow, 4 Block.
    value = _unwrap(value)
    v = str(value).strip().lower()
    if v in ("1", "2", "allow"):
        return "allow"
    if v in ("0", "4", "block"):
        return "block"
    return "?%s" % value


def norm_enabled(value):
    # COM: bool. NetSecurity enum Enabled: 1 True, 2 False; often reported as the string "True".
    value = _unwrap(value)
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("1", "true", "yes"):
        return True
    if v in ("0", "2", "false", "no"):
        return False
    return "?%s" % value


_PROTO_NUM = {"6": "tcp", "17": "udp", "1": "icmpv4", "58": "icmpv6", "256": "any"}


def norm_protocol(value):
    value = _unwrap(value)
    if _is_any(value):
        return "any"
    v = str(value).strip().lower()
    return _PROTO_NUM.get(v, v)


_PROFILE_BITS = {"domain": 1, "private": 2, "public": 4}


def norm_profiles(value):
    """-> tuple of profile names in PROFILES order; all three for Any / 0x7FFFFFFF."""
    value = _unwrap(value)
    if isinstance(value, bool):
        return ("?%s" % value,)
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        bits = int(value)
        if bits in (0, 0x7FFFFFFF, -1) or bits & 7 == 7:
            return PROFILES
        return tuple(p for p in PROFILES if bits & _PROFILE_BITS[p])
    names = set()
    for t in _tokens(value):
        t = t.lower()
        if t in ("any", "all", "*"):
            return PROFILES
        names.add(t)
    if not names:
        return PROFILES
    unknown = sorted(names - set(PROFILES))
    return tuple(p for p in PROFILES if p in names) + tuple("?%s" % u for u in unknown)


def norm_ports(value):
    """-> None (any) or sorted tuple of "N" / "N-M" / keyword strings."""
    if _is_any(value):
        return None
    out = set()
    for t in _tokens(value):
        if _PORT.match(t):
            parts = [str(int(x)) for x in t.split("-")]
            out.add(parts[0] if len(parts) == 2 and parts[0] == parts[1] else "-".join(parts))
        else:
            out.add(t.lower())           # RPC, RPC-EPMap, IPHTTPS, ... compared case-insensitively
    return tuple(sorted(out, key=_port_key))


def _port_key(p):
    first = p.split("-")[0]
    return (0, int(first), p) if first.isdigit() else (1, 0, p)


def _norm_address(token):
    t = token.strip()
    if "-" in t and "/" not in t:
        lo, hi = (x.strip() for x in t.split("-", 1))
        try:
            lo, hi = ipaddress.ip_address(lo), ipaddress.ip_address(hi)
        except ValueError:
            return t.lower()
        return str(lo) if lo == hi else "%s-%s" % (lo, hi)
    try:
        net = ipaddress.ip_network(t, strict=False)   # also "a.b.c.d/255.255.255.0"
    except ValueError:
        return t.lower()                               # LocalSubnet, DNS, DefaultGateway, ...
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def norm_addresses(value):
    """-> None (any) or sorted tuple: single hosts as plain IPs, networks as CIDR, ranges a-b."""
    if _is_any(value):
        return None
    return tuple(sorted({_norm_address(t) for t in _tokens(value)}))


def norm_text(value):
    value = _unwrap(value)
    return "" if value is None else str(value)


def norm_optional(value):
    """program / service: None for any, else case-insensitive."""
    value = _unwrap(value)
    if _is_any(value):
        return None
    return str(value).strip().lower()


# Where each compared value is found in the three accepted shapes: the module's parameter
# names, COM INetFwRule (what the role reads), NetSecurity (Get-NetFirewallRule + filters).
_KEYS = {
    "name": ("name", "Name", "DisplayName"),
    "group": ("group", "Grouping", "Group", "DisplayGroup"),
    "description": ("description", "Description"),
    "direction": ("direction", "Direction"),
    "action": ("action", "Action"),
    "enabled": ("enabled", "Enabled"),
    "protocol": ("protocol", "Protocol"),
    "localip": ("localip", "LocalAddresses", "LocalAddress"),
    "localport": ("localport", "LocalPorts", "LocalPort"),
    "remoteip": ("remoteip", "RemoteAddresses", "RemoteAddress"),
    "remoteport": ("remoteport", "RemotePorts", "RemotePort"),
    "profiles": ("profiles", "Profiles", "Profile"),
    "program": ("program", "ApplicationName", "Program"),
    "service": ("service", "ServiceName", "Service"),
}
_NORM = {
    "description": norm_text,
    "direction": norm_direction,
    "action": norm_action,
    "enabled": norm_enabled,
    "protocol": norm_protocol,
    "localip": norm_addresses,
    "localport": norm_ports,
    "remoteip": norm_addresses,
    "remoteport": norm_ports,
    "profiles": norm_profiles,
    "program": norm_optional,
    "service": norm_optional,
}
# What Windows assumes when a value is absent from a newly created rule.
_ABSENT = {"direction": "in", "action": "allow", "enabled": True, "profiles": PROFILES}


def normalise(rule):
    """One rule in any accepted shape -> {name, group, <COMPARED field>: canonical value}."""
    if not isinstance(rule, Mapping):
        raise WindowsFirewallError("current rules: each entry must be a dict, got %r" % (rule,))
    out = {}
    for field, keys in _KEYS.items():
        raw, found = None, False
        for k in keys:
            if k in rule:
                raw, found = rule[k], True
                break
        if field in ("name", "group"):
            out[field] = norm_text(raw)
        elif not found and field in _ABSENT:
            out[field] = _ABSENT[field]
        else:
            out[field] = _NORM[field](raw)
    if not out["name"]:
        raise WindowsFirewallError("current rules: an entry has no name (keys name, Name or DisplayName): %r" % (rule,))
    return out


def _same(field, have, want):
    """win_firewall_rule compares strings with PowerShell's case-insensitive -ne: a description
    that differs only in letter case is not drift for the module, so not for the plan either
    (otherwise every run would send a call that changes nothing)."""
    if field == "description":
        return have.casefold() == want.casefold()
    return have == want


def _show(value):
    if value is None:
        return "any"
    if isinstance(value, tuple):
        return ",".join(value)
    return value


# --------------------------------------------------------------------------- plan


def _wanted(desired_rules, group, where):
    """Desired parameter dicts -> {casefolded name: (params, normalised)}."""
    if not isinstance(desired_rules, (list, tuple)):
        raise WindowsFirewallError("%s: desired rules must be a list (the windows_firewall_rules result)" % where)
    want = {}
    for params in desired_rules:
        n = normalise(params)
        if n["group"].casefold() != group.casefold():
            raise WindowsFirewallError("%s: desired rule %s is in group %r, not %r" % (where, n["name"], n["group"], group))
        if n["name"].casefold() in want:
            raise WindowsFirewallError("%s: two desired rules are named %r" % (where, n["name"]))
        want[n["name"].casefold()] = (params, n)
    return want


def _current(current, group, where):
    """What Windows reports -> ({casefolded name: [normalised rules of our group]}, [others])."""
    if current is None:
        current = []
    if isinstance(current, Mapping) and "rules" in current:
        current = current["rules"]
    if not isinstance(current, (list, tuple)):
        raise WindowsFirewallError("%s: current rules (the reader's result.rules, or ocs_windows_firewall_current_rules): "
                                   "must be a list of rules, got %s" % (where, type(current).__name__))
    # Windows, PowerShell's -eq and win_firewall_rule compare names and groups case-insensitively.
    mine, outside = {}, []
    for rule in current:
        if rule is None:          # a null entry from a PowerShell reader means "no rule"
            continue
        n = normalise(rule)
        if n["group"].casefold() == group.casefold():
            mine.setdefault(n["name"].casefold(), []).append(n)
        else:
            outside.append(n)
    return mine, outside


def _refuse_clashes(touched, outside, group, where):
    clashes = sorted({(o["name"], o["group"]) for o in outside if o["name"].casefold() in touched})
    if clashes:
        raise WindowsFirewallError(
            "%s: Windows Firewall rule(s) outside group %r have the name of a rule this collection manages: %s. "
            "win_firewall_rule finds rules by name, so changing ours would change them too; nothing was changed. "
            "Rename those rules, or set ocs_windows_firewall_rule_prefix to another prefix."
            % (where, group, ", ".join("%r (group %r)" % c for c in clashes)))


def _plan_rule(params, n, have, result):
    """Add what one desired rule needs (create, update, recreate or nothing) to the plan."""
    rname = n["name"]
    if not have:
        result["to_create"].append(dict(params))
        result["changes"].append({"name": rname, "action": "create",
                                  "fields": {f: {"before": None, "after": _show(n[f])} for f in COMPARED}})
        return
    diffs = {}
    for h in have:
        for f in COMPARED:
            if not _same(f, h[f], n[f]) and f not in diffs:
                diffs[f] = {"before": _show(h[f]), "after": _show(n[f])}
    if len(have) > 1 or any(f in diffs for f in RECREATE_ON):
        result["to_remove"].append({"name": rname, "state": "absent"})
        result["to_create"].append(dict(params))
        if len(have) > 1:
            diffs["count"] = {"before": len(have), "after": 1}
        result["changes"].append({"name": rname, "action": "recreate", "fields": diffs})
    elif diffs:
        result["to_update"].append(dict(params))
        result["changes"].append({"name": rname, "action": "update", "fields": diffs})
    else:
        result["unchanged"].append(rname)


def _rule_id(rname, prefix):
    """The policy rule id of a rule name made by rule_name(); rule:<name> for any other name."""
    head = "%s " % prefix if prefix else ""
    return rname[len(head):] if head and rname.startswith(head) else ("rule:%s" % rname if head else rname)


def render(rules):
    """Normalised rules -> canonical text, one line per rule (for --diff)."""
    return "".join("%s: %s\n" % (r["name"], " ".join("%s=%s" % (f, _show(r[f])) for f in COMPARED))
                   for r in sorted(rules, key=lambda r: r["name"].casefold()))


def _contract_shape(result, want, mine, prefix):
    """The result shape every backend returns: created / updated / removed ids, warnings, diff."""
    ids = {"create": "created", "update": "updated", "recreate": "updated", "remove": "removed"}
    for key in ids.values():
        result[key] = []
    for change in result["changes"]:
        result[ids[change["action"]]].append(_rule_id(change["name"], prefix))
    result["warnings"] = []
    if result["changed"]:
        result["diff"] = [{"before_header": "live rule group", "after_header": "desired rule group",
                           "before": render([r for rs in mine.values() for r in rs]),
                           "after": render([n for _p, n in want.values()])}]


def compare(desired_rules, current, group=DEFAULT_GROUP, name="host", prefix=DEFAULT_PREFIX):
    """Desired win_firewall_rule parameter dicts + current rules -> the changes to make.

    ``current`` is what Windows reports: the rules of ``group``, plus any rule outside the group
    whose name equals a name the plan would act on (the role's reader returns those so that a
    name collision is refused here: win_firewall_rule finds rules by name, not by group).

    Returns a dict:
      to_create: parameter dicts to send with state present (rule absent, or recreated)
      to_update: parameter dicts to send with state present (rule exists, some value differs)
      to_remove: [{name, state: absent}] for group rules not desired (and recreated ones)
      unchanged: names already right
      changes:   [{name, action: create|update|recreate|remove, fields: {field: {before, after}}}]
      changed:   bool
      created, updated, removed, warnings, diff: the contract's result shape (rule ids)
    """
    where = "host %s" % name
    want = _wanted(desired_rules, group, where)
    mine, outside = _current(current, group, where)
    _refuse_clashes(set(want) | set(mine), outside, group, where)
    result = {"to_create": [], "to_update": [], "to_remove": [], "unchanged": [], "changes": []}
    for key, (params, n) in want.items():
        _plan_rule(params, n, mine.get(key), result)
    for key in sorted(set(mine) - set(want)):
        h = mine[key][0]
        result["to_remove"].append({"name": h["name"], "state": "absent"})
        result["changes"].append({"name": h["name"], "action": "remove",
                                  "fields": {f: {"before": _show(h[f]), "after": None} for f in COMPARED}})
    result["changed"] = bool(result["to_create"] or result["to_update"] or result["to_remove"])
    _contract_shape(result, want, mine, prefix)
    return result
