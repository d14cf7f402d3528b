# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What real deployments need beyond the seed page's literal rows, each one opt-in.

- ocs_director_members: the Director pool members may start figure 5's connection too.
- ocs_role_ports: a role's own external port in place of the page's 443 (OCS 2007 R2), and
  the check that two roles never share one port of one address.
- ocs_reverse_proxy_intranet_443_outbound (+ ocs_intranet_networks): the page's note.
- ocs_extra_rules: site rules (DNS, CRL/OCSP, ...) validated like the seed's, ids extra-*.

Called from policy.build_policy after the seed rows are expanded; without these variables
the rules are left exactly as they were. docs/policy-model.md documents the variables and
data/seed_tables.yml `contradictions:` the readings beyond the page.
"""
from __future__ import annotations

import re

DEPLOYMENT_VARS = ("ocs_director_members", "ocs_reverse_proxy_intranet_443_outbound",
                   "ocs_intranet_networks", "ocs_extra_rules")
HOST_VARS = ("ocs_role_ports",)

_EXTRA_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,23}")
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./()-]{0,23}")
_EXTRA_KEYS = {"name", "site", "firewall", "direction", "protocol", "service", "local_addresses",
               "local_ports", "remote_addresses", "remote_ports", "reason"}
# The page's external listening port that OCS 2007 R2 lets each role move (figures 1, 4, 6, 8).
_MOVABLE_PORT = "443"


def _local_initiates(firewall, direction):
    return (firewall, direction) in (("internal", "inbound"), ("external", "outbound"))


def _ip_key(addr):
    net, _slash, bits = addr.partition("/")
    return tuple(int(x) for x in net.split(".")) + (int(bits or 32),)


def extend_rules(rules, hostvars, dep, servers, director, site_kinds, chk, warnings):
    """-> (the seed RULEs with every opted-in extension applied (same list when none is set),
    what the policy's `deployment` shows of the extensions: the validated values, not the inventory's)."""
    members = director_members(dep.get("ocs_director_members"), director, servers, chk)
    if members:
        rules = [_with_members(r, director, members) for r in rules]
    ports = role_ports(hostvars, servers, chk)
    if ports:
        rules = apply_role_ports(rules, ports, chk, warnings)
    shared_address_conflicts(rules, chk)
    nets = intranet_networks(dep.get("ocs_intranet_networks"), chk)
    if dep.get("ocs_reverse_proxy_intranet_443_outbound") is not None:
        rules = rules + intranet_443_rules(dep, nets, site_kinds, chk)
    if dep.get("ocs_extra_rules") is not None:
        rules = rules + extra_rules(dep["ocs_extra_rules"], site_kinds, chk)
    _unique_ids(rules, chk)
    return rules, deployment_summary(members)


# ------------------------------------------------------------------ Director pool members

def director_members(value, director, servers, chk):
    """ocs_director_members: [] or the members' addresses (validated, sorted)."""
    if value is None:
        return []
    var = "ocs_director_members"
    if not isinstance(value, (list, tuple)) or not value:
        chk.fail("group_vars", var, "must be a non-empty list of the Director pool members' IPv4 addresses")
        return []
    if director is None:
        chk.fail("group_vars", var, "is set but ocs_director is not: set ocs_director to the pool's VIP")
        return []
    own = {addr: srv["name"] for srv in servers.values() for side in ("internal", "external")
           for addr in srv[side].values()}
    out = []
    for i, item in enumerate(value):
        addr = chk.ip(item, "group_vars", "%s[%d]" % (var, i))
        if addr is None:
            continue
        if addr == director or addr in out:
            chk.fail("group_vars", "%s[%d]" % (var, i), "%s is listed twice (or is ocs_director itself)" % addr)
        elif addr in own:
            chk.fail("group_vars", "%s[%d]" % (var, i), "%s is also the address of perimeter server %s" % (addr, own[addr]))
        else:
            out.append(addr)
    return sorted(out, key=_ip_key)


def _with_members(rule, director, members):
    """Figure 5's Director -> Access Edge rule (the Director side starts it): the members too."""
    if _local_initiates(rule["firewall"], rule["direction"]) or rule["remote_addresses"] != [director]:
        return rule
    return dict(rule, remote_addresses=[director] + members)


# ------------------------------------------------------------------ role ports, shared addresses

def role_ports(hostvars, servers, chk):
    """{host: {role: "port"}} from ocs_role_ports (only hosts that set it)."""
    out = {}
    for name, srv in sorted(servers.items()):
        value = (hostvars.get(name) or {}).get("ocs_role_ports")
        if value is None:
            continue
        where = "host %s" % name
        if not isinstance(value, dict) or not value:
            chk.fail(where, "ocs_role_ports", "must be a dict role -> TCP port (the role's external port in place of 443)")
            continue
        for role, port in value.items():
            var = "ocs_role_ports.%s" % role
            if role not in srv["roles"]:
                chk.fail(where, var, "%r is not one of this server's ocs_edge_roles %s" % (role, list(srv["roles"])))
            elif not _is_port(port):
                chk.fail(where, var, "%r is not a TCP port number" % (port,))
            else:
                out.setdefault(name, {})[role] = str(int(port))
    return out


def _is_port(port):
    """A TCP port 1-65535 as an int or ASCII digits (no bool, no float, no "443\\n")."""
    if isinstance(port, bool) or not isinstance(port, (int, str)):
        return False
    return re.fullmatch(r"[0-9]{1,5}", str(port)) is not None and 0 < int(port) < 65536


def apply_role_ports(rules, ports, chk, warnings):
    out = []
    for rule in rules:
        if rule["firewall"] != "external" or rule["local_ports"] != [_MOVABLE_PORT] or rule["protocol"] != "tcp":
            out.append(rule)
            continue
        wanted = {h: ports.get(h, {}).get(rule["server_role"], _MOVABLE_PORT) for h in rule["servers"]}
        if len(set(wanted.values())) > 1:
            (h1, p1), (h2, p2) = sorted(wanted.items(), key=lambda kv: kv[1] == _MOVABLE_PORT)[:2]
            chk.fail("host %s" % h2, "ocs_role_ports.%s" % rule["server_role"], "is %s here but %s on %s; "
                     "rule %s serves both (one VIP, one port)" % (p2, p1, h1, rule["id"]))
            out.append(rule)
            continue
        port = next(iter(wanted.values()))
        if port != _MOVABLE_PORT:
            warnings.append("rule %s: %s listens on port %s/tcp instead of the page's 443 (ocs_role_ports on %s)"
                            % (rule["id"], rule["server_role"], port, ", ".join(rule["servers"])))
            rule = dict(rule, local_ports=[port])
        out.append(rule)
    return out


def _port_range(spec):
    lo, _dash, hi = spec.partition("-")
    return int(lo), int(hi or lo)


def shared_address_conflicts(rules, chk):
    """Two roles listening on the same port and protocol of the same address is an error."""
    seen = {}
    for rule in rules:
        if _local_initiates(rule["firewall"], rule["direction"]) or not rule["local_ports"] or rule.get("extra"):
            continue
        for addr in rule["local_addresses"] or []:
            for spec in rule["local_ports"]:
                lo, hi = _port_range(spec)
                for other in seen.get((addr, rule["protocol"]), []):
                    if other["role"] != rule["server_role"] and lo <= other["hi"] and other["lo"] <= hi:
                        chk.fail("host %s" % ", ".join(rule["servers"]), "ocs_%s_ip" % rule["firewall"],
                                 "%s is the %s address of roles %s (%s) and %s (%s, hosts %s), both on port %s/%s "
                                 "(rules %s, %s): two services cannot listen on one port of one address; give each "
                                 "role its own address, or its own port with ocs_role_ports (OCS 2007 R2)" % (
                                     addr, rule["firewall"], other["role"], other["spec"], rule["server_role"], spec,
                                     ", ".join(rule["servers"]), spec, rule["protocol"], other["id"], rule["id"]))
                seen.setdefault((addr, rule["protocol"]), []).append(
                    {"role": rule["server_role"], "lo": lo, "hi": hi, "spec": spec, "id": rule["id"]})


# ------------------------------------------------------------------ the page's 443 note

def intranet_networks(value, chk):
    """ocs_intranet_networks: None (unset) or its sorted canonical CIDRs. Checked whether or not
    the 443 opt-in is on, so a wrong value is reported the day it is written, not the day the
    opt-in is turned on; "any" and 0.0.0.0/0 are refused: the note is for intranet users."""
    var = "ocs_intranet_networks"
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value:
        from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import _type_name
        chk.fail("group_vars", var, "must be a non-empty list of the intranet's IPv4 networks (CIDRs), got %s %r"
                 % (_type_name(value), value))
        return None
    out = []
    for i, item in enumerate(value):
        net = chk.network(item, "group_vars", "%s[%d]" % (var, i))
        if net is not None and net.endswith("/0"):
            chk.fail("group_vars", "%s[%d]" % (var, i), "%s is any address, not the intranet: list the networks "
                     "of the intranet users" % net)
        elif net is not None:
            out.append(net)
    return sorted(set(out), key=_ip_key) or None


def intranet_443_rules(dep, nets, site_kinds, chk):
    """The reverse-proxy tables' note: intranet users -> Internet 443/TCP, both firewalls.
    nets: ocs_intranet_networks as intranet_networks() returned it (None when unset or wrong)."""
    flag = chk.boolean(dep["ocs_reverse_proxy_intranet_443_outbound"], "group_vars",
                       "ocs_reverse_proxy_intranet_443_outbound")
    if not flag:
        return []
    if dep.get("ocs_intranet_networks") is None:
        chk.fail("group_vars", "ocs_intranet_networks", "is required when ocs_reverse_proxy_intranet_443_outbound "
                 "is on: the list of intranet networks (CIDRs)")
    if not nets:
        return []
    from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import load_catalog
    catalog = load_catalog()
    out = []
    for site, kind in sorted(site_kinds.items(), key=lambda kv: (kv[1] != "central", kv[0])):
        tables = catalog["topologies"][dep["ocs_topology"]]["sites"][kind]
        table = next(t for t in tables if catalog["tables"][t]["role"] == "reverse_proxy")
        for side, local, remote in (("internal", None, nets), ("external", nets, None)):
            rid = "%s-t%d-note443-%s" % (site, table, side[:3])
            # Page's definitions: internal outbound = internal network -> perimeter (the remote
            # party starts); external outbound = perimeter side -> Internet (the local side starts).
            out.append(_rule(rid, site, side, "outbound", "tcp", "HTTPS", local,
                             ["443"] if side == "internal" else None, remote,
                             None if side == "internal" else ["443"], table=table, note=True,
                             reason="page note (table %d): intranet users joining other companies' "
                                    "conferences need 443 outbound (ocs_reverse_proxy_intranet_443_outbound)" % table))
    return out


# ------------------------------------------------------------------ user rules

def extra_rules(value, site_kinds, chk):
    """ocs_extra_rules -> RULEs with ids extra-<site>-<name>, marked extra."""
    var = "ocs_extra_rules"
    if not isinstance(value, (list, tuple)):
        chk.fail("group_vars", var, "must be a list of rules (docs/policy-model.md)")
        return []
    out = []
    for i, spec in enumerate(value):
        where = "%s[%d]" % (var, i)
        if not isinstance(spec, dict):
            chk.fail("group_vars", where, "must be a dict with name, firewall, direction, protocol, reason, ...")
            continue
        rule = _extra_rule(spec, where, site_kinds, chk)
        if rule:
            out.append(rule)
    return out


def _extra_rule(spec, where, site_kinds, chk):
    n = len(chk.errors)
    # keys may be of any type (an int beside a str): compare and sort them as text
    unknown = sorted((k for k in spec if k not in _EXTRA_KEYS), key=repr)
    if unknown:
        chk.fail("group_vars", where, "unknown key(s) %s; known: %s" % (unknown, ", ".join(sorted(_EXTRA_KEYS))))
    name = spec.get("name")
    if not isinstance(name, str) or not _EXTRA_NAME.fullmatch(name):
        chk.fail("group_vars", where + ".name", "%r must be a short plain name (a-z, 0-9, '_', '-', up to 24)" % (name,))
    site = spec.get("site", "central")
    if not isinstance(site, str) or site not in site_kinds:
        chk.fail("group_vars", where + ".site", "%r is not a site of this deployment (%s)" % (site, ", ".join(sorted(site_kinds))))
    choices = {"firewall": ("internal", "external"), "direction": ("inbound", "outbound"), "protocol": ("tcp", "udp")}
    for key, allowed in choices.items():
        if spec.get(key) not in allowed:
            chk.fail("group_vars", "%s.%s" % (where, key), "%r is not one of %s" % (spec.get(key), ", ".join(allowed)))
    service = spec.get("service", name)
    if not isinstance(service, str) or not _SERVICE.fullmatch(service):
        chk.fail("group_vars", where + ".service", "%r must be a short label (letters, digits, _./()-)" % (service,))
    reason = spec.get("reason")
    if not isinstance(reason, str) or not reason.strip() or re.search(r"[\x00-\x1f\x7f]", reason):
        chk.fail("group_vars", where + ".reason", "is required: one line saying why the site needs this rule")
    local = _addresses(spec.get("local_addresses"), where + ".local_addresses", chk)
    remote = _addresses(spec.get("remote_addresses"), where + ".remote_addresses", chk)
    lports = _port_list(spec.get("local_ports"), where + ".local_ports", chk)
    rports = _port_list(spec.get("remote_ports"), where + ".remote_ports", chk)
    if len(chk.errors) > n:
        return None
    return _rule("extra-%s-%s" % (site, name), site, spec["firewall"], spec["direction"], spec["protocol"],
                 service, local, lports, remote, rports, reason=reason.strip(), extra=True)


def _addresses(value, var, chk):
    """None ("any") or a sorted list of IPv4 addresses / CIDRs."""
    if value is None or value == "any":
        return None
    if not isinstance(value, (list, tuple)) or not value:
        chk.fail("group_vars", var, "must be a non-empty list of IPv4 addresses/CIDRs, or any")
        return None
    out = [chk.network(v, "group_vars", "%s[%d]" % (var, i)) for i, v in enumerate(value)]
    if "0.0.0.0/0" in out:  # is any: written as any, since iptables-save drops a /0 match and
        return None         # a rule carrying it would never read back as written
    return sorted({a for a in out if a}, key=_ip_key) or None


def _port_list(value, var, chk):
    """None ("any") or a list of "N" / "N-M" strings."""
    if value is None or value == "any":
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for i, item in enumerate(items):
        m = re.fullmatch(r"([0-9]{1,5})(?:-([0-9]{1,5}))?", item) if isinstance(item, str) else None
        if isinstance(item, int) and not isinstance(item, bool):
            m = re.fullmatch(r"([0-9]{1,5})()", str(item))
        lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, 0)
        if not m or not 0 < lo <= hi < 65536:
            chk.fail("group_vars", "%s[%d]" % (var, i), "%r is not a port or a range N-M (1-65535)" % (item,))
        else:
            out.append(str(lo) if lo == hi else "%d-%d" % (lo, hi))
    return out or None


def _rule(rid, site, firewall, direction, protocol, service, local, lports, remote, rports,
          table=None, reason="", extra=False, note=False):
    kind = "extra rule, not on the seed page" if extra else "table %d note, opt-in" % table
    return {
        "id": rid, "table": table, "figure": None, "row": None, "server_role": None,
        "firewall": firewall, "direction": direction, "protocol": protocol, "service": service,
        "local_ports": lports, "remote_ports": rports, "local_addresses": local,
        "remote_addresses": remote, "site": site, "servers": [],
        "local_address": "none", "extra": extra, "note": note, "reason": reason,
        "comment": "ocs %s %s %s" % (rid, kind, service),
    }


def _unique_ids(rules, chk):
    seen = set()
    for rule in rules:
        if rule["id"] in seen:
            chk.fail("group_vars", "ocs_extra_rules", "rule id %s is used twice" % rule["id"])
        seen.add(rule["id"])


def deployment_summary(members):
    """What the policy's `deployment` shows of these variables (nothing when unset): the members
    director_members() validated and sorted, the same list the rules carry."""
    return {"director_members": list(members)} if members else {}
