# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Windows Firewall backend, controller side: FIREWALL -> win_firewall_rule parameters, and the plan.

Two pure functions, exposed as filters (plugins/filter/windows_firewall.py):

* ``firewall_rules(firewall)``: a host FIREWALL dict (docs/policy-model.md, ``mode: host``,
  ``platform: windows``) -> the list of parameter dicts for
  ``community.windows.win_firewall_rule``, one per packet-filter rule, seen from the host:
  chain ``input`` (the remote party initiates) -> ``direction: in``, local = ``dst``/``dport``,
  remote = ``src``/``sport``; chain ``output`` (this host initiates) -> ``direction: out``,
  local = ``src``/``sport``, remote = ``dst``/``dport``.
* ``plan(desired, current)``: the desired parameter dicts + the rules Windows reports for the
  collection's group -> what to create, update and remove. Values are compared by meaning,
  after normalising every form Windows reports them in (COM ``HNetCfg.FwPolicy2`` as read by the
  role, which is also what win_firewall_rule compares, and the NetSecurity
  ``Get-NetFirewallRule`` form), so that a re-run against an unchanged host plans nothing.

Nothing here talks to Windows; the role (roles/windows_firewall) does one read and then only the
module calls the plan asks for.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

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

# Always fullmatch: "$" also matches before a final newline.
_PORT = re.compile(r"[0-9]{1,5}(-[0-9]{1,5})?")
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._()/-]*")


class WindowsFirewallError(ValueError):
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


def _ports_param(ports, where, what):
    if ports is None:
        return "any"
    if not isinstance(ports, (list, tuple)) or not ports:
        raise WindowsFirewallError("%s: %s: must be null (any) or a non-empty list of ports, got %r" % (where, what, ports))
    out = []
    for p in ports:
        p = str(p).strip() if isinstance(p, (str, int)) and not isinstance(p, bool) else repr(p)
        if not _PORT.fullmatch(p) or any(not 0 < int(x) < 65536 for x in p.split("-")):
            raise WindowsFirewallError("%s: %s: %r is not a port or a port range N-M" % (where, what, p))
        out.append(p)
    return ",".join(out)


def _addresses_param(addresses, where, what, required):
    if addresses is None:
        if required:
            raise WindowsFirewallError(
                "%s: %s: the host's own address is missing (null means any); a host firewall rule must be "
                "bound to the server's ocs_internal_ip / ocs_external_ip" % (where, what))
        return "any"
    if not isinstance(addresses, (list, tuple)) or not addresses:
        raise WindowsFirewallError(
            "%s: %s: is empty; the server needs an address here (ocs_internal_ip / ocs_external_ip, or the "
            "Director / next hop for remote addresses)" % (where, what))
    out = []
    for a in addresses:
        try:  # strict: 10.10.1.10/24 is refused, not widened to 10.10.1.0/24
            if not isinstance(a, str) or a != a.strip():
                raise ValueError(a)
            out.append(str(ipaddress.ip_network(a, strict=True)) if "/" in a else str(ipaddress.ip_address(a)))
        except ValueError:
            raise WindowsFirewallError("%s: %s: %r is not an IP address or network" % (where, what, a)) from None
    return ",".join(out)


def _description(rule, group):
    side = "external" if "internet" in (rule.get("src_zone"), rule.get("dst_zone")) else "internal"
    return ("OCS 2007 edge, seed table %s figure %s: %s %s, %s firewall %s (%s). "
            "Managed by ocs.edge_firewall in group '%s'; manual changes are reverted."
            % (rule.get("table"), rule.get("figure"), rule.get("server_role"), rule.get("service"),
               side, rule.get("direction"), rule.get("id"), group))


def firewall_rules(firewall, name="host", group=DEFAULT_GROUP, profiles=PROFILES, prefix=DEFAULT_PREFIX):
    """FIREWALL (host mode) -> list of win_firewall_rule parameter dicts (state present)."""
    where = "host %s" % name
    if not isinstance(firewall, Mapping):
        raise WindowsFirewallError("%s: ocs_firewall: must be the host's FIREWALL dict (docs/policy-model.md), got %s"
                                   % (where, type(firewall).__name__))
    if firewall.get("platform", "windows") != "windows" or firewall.get("mode", "host") != "host":
        raise WindowsFirewallError("%s: ocs_firewall: platform %r mode %r; the Windows backend takes only "
                                   "host firewalls of platform windows (ocs_host_firewall: windows)"
                                   % (where, firewall.get("platform"), firewall.get("mode")))
    if not group or not isinstance(group, str):
        raise WindowsFirewallError("%s: ocs_windows_firewall_group: must be a non-empty string" % where)
    if prefix and not _NAME_OK.fullmatch(prefix):
        raise WindowsFirewallError("%s: ocs_windows_firewall_rule_prefix: %r has characters a rule name "
                                   "should not have" % (where, prefix))
    profile_list = _profiles_param(profiles, where)
    rules = firewall.get("rules")
    if not isinstance(rules, (list, tuple)):
        raise WindowsFirewallError("%s: ocs_firewall.rules: must be a list" % where)
    out, seen = [], {}
    for rule in rules:
        rid = str(rule.get("id") or "")
        rwhere = "%s: rule %s" % (where, rid or "(no id)")
        if not rid or not _NAME_OK.fullmatch(rid):
            raise WindowsFirewallError("%s: id: must be a non-empty rule id like central-t20-f14-out" % rwhere)
        chain = rule.get("chain")
        if chain == "input":
            direction, local, remote, lport, rport = "in", "dst", "src", "dport", "sport"
        elif chain == "output":
            direction, local, remote, lport, rport = "out", "src", "dst", "sport", "dport"
        else:
            raise WindowsFirewallError("%s: chain: %r; host firewall rules have chain input or output" % (rwhere, chain))
        protocol = rule.get("protocol")
        if protocol not in ("tcp", "udp"):
            raise WindowsFirewallError("%s: protocol: %r is not tcp or udp" % (rwhere, protocol))
        rname = rule_name(rid, prefix)
        if rname.casefold() in seen:
            raise WindowsFirewallError("%s: two rules would get the Windows name %r" % (rwhere, rname))
        seen[rname.casefold()] = True
        out.append({
            "name": rname,
            "group": group,
            "description": _description(rule, group),
            "direction": direction,
            "action": "allow",
            "enabled": True,
            "protocol": protocol,
            "localip": _addresses_param(rule.get(local), rwhere, "local address (%s)" % local, required=True),
            "localport": _ports_param(rule.get(lport), rwhere, "local port (%s)" % lport),
            "remoteip": _addresses_param(rule.get(remote), rwhere, "remote address (%s)" % remote, required=False),
            "remoteport": _ports_param(rule.get(rport), rwhere, "remote port (%s)" % rport),
            "profiles": list(profile_list),
            "program": "any",
            "service": "any",
            "state": "present",
        })
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
        if _PORT.fullmatch(t):
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


def plan(desired, current, group=DEFAULT_GROUP, name="host"):
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
    """
    where = "host %s" % name
    if not isinstance(desired, (list, tuple)):
        raise WindowsFirewallError("%s: desired rules must be a list (the windows_firewall_rules result)" % where)
    if current is None:
        current = []
    if isinstance(current, Mapping) and "rules" in current:
        current = current["rules"]
    if not isinstance(current, (list, tuple)):
        raise WindowsFirewallError("%s: current rules (the reader's result.rules, or ocs_windows_firewall_current_rules): "
                                   "must be a list of rules, got %s" % (where, type(current).__name__))
    want = {}
    for params in desired:
        n = normalise(params)
        if n["group"].casefold() != group.casefold():
            raise WindowsFirewallError("%s: desired rule %s is in group %r, not %r" % (where, n["name"], n["group"], group))
        if n["name"].casefold() in want:
            raise WindowsFirewallError("%s: two desired rules are named %r" % (where, n["name"]))
        want[n["name"].casefold()] = (params, n)

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

    touched = set(want) | set(mine)
    clashes = sorted({(o["name"], o["group"]) for o in outside if o["name"].casefold() in touched})
    if clashes:
        raise WindowsFirewallError(
            "%s: Windows Firewall rule(s) outside group %r have the name of a rule this collection manages: %s. "
            "win_firewall_rule finds rules by name, so changing ours would change them too; nothing was changed. "
            "Rename those rules, or set ocs_windows_firewall_rule_prefix to another prefix."
            % (where, group, ", ".join("%r (group %r)" % c for c in clashes)))

    result = {"to_create": [], "to_update": [], "to_remove": [], "unchanged": [], "changes": []}
    for key, (params, n) in want.items():
        rname = n["name"]
        have = mine.get(key)
        if not have:
            result["to_create"].append(dict(params))
            result["changes"].append({"name": rname, "action": "create",
                                      "fields": {f: {"before": None, "after": _show(n[f])} for f in COMPARED}})
            continue
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
    for key in sorted(set(mine) - set(want)):
        h = mine[key][0]
        rname = h["name"]
        result["to_remove"].append({"name": rname, "state": "absent"})
        result["changes"].append({"name": rname, "action": "remove",
                                  "fields": {f: {"before": _show(h[f]), "after": None} for f in COMPARED}})
    result["changed"] = bool(result["to_create"] or result["to_update"] or result["to_remove"])
    return result
