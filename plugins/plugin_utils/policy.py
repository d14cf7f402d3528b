# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The policy engine: inventory host vars in, per-firewall rule sets out.

Controller-side only (it needs netaddr). The contract it fulfils is docs/policy-model.md;
the seed rows it expands are data/seed_tables.yml. Every input error is collected and
raised at once as PolicyError, each message naming the host and the variable, before any
firewall is touched.
"""
from __future__ import annotations

import difflib
import re
from functools import lru_cache
from pathlib import Path

import yaml

from ansible_collections.ocs.edge_firewall.plugins.module_utils.platforms import PLATFORMS, platforms_for
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils import extras

try:
    import netaddr
except ImportError:  # pragma: no cover - reported by the filter with a clear message
    netaddr = None

SCHEMA_VERSION = 1
CATALOG_PATH = Path(__file__).resolve().parents[2] / "data" / "seed_tables.yml"

ROLES = ("reverse_proxy", "access_edge", "web_conferencing_edge", "av_edge")
NETWORK_PLATFORMS = platforms_for("network")
HOST_PLATFORMS = platforms_for("host")
SIDES = ("internal", "external")
# Zones each firewall side sits between (the page's figure 7).
SIDE_ZONES = {"internal": ("perimeter", "internal"), "external": ("internet", "perimeter")}
SITE_KINDS = ("central", "remote")
DEFAULT_SITE = "central"

# Every variable the engine reads; the filter passes only these on.
DEPLOYMENT_VARS = (
    "ocs_topology", "ocs_director", "ocs_next_hop", "ocs_arrays", "ocs_sites",
    "ocs_allow_nonpublic_av_addresses",
) + extras.DEPLOYMENT_VARS
HOST_VARS = (
    "ocs_edge_roles", "ocs_site", "ocs_internal_ip", "ocs_external_ip", "ocs_array",
    "ocs_host_firewall", "ocs_firewall_side", "ocs_firewall_platform",
    "ocs_firewall_interfaces", "ocs_management_networks", "ocs_management_ports",
    "ansible_port",     # the management port defaults to it: a deploy does not cut its own connection
) + extras.HOST_VARS
ALL_VARS = DEPLOYMENT_VARS + HOST_VARS
# Every other ocs_* variable of the collection (roles, playbooks): known, not read by the engine.
# Any other ocs_* name is reported with the nearest known one (a typo such as ocs_edge_role
# would otherwise drop a server without a word). Extend here when a role gains a variable.
OTHER_VARS = (
    "ocs_policy", "ocs_policy_export_dir", "ocs_deploy_limit", "ocs_linux_become",
    "ocs_firewall", "ocs_firewall_name",
    "ocs_nftables_table", "ocs_nftables_state", "ocs_nftables_input_policy", "ocs_nftables_output_policy",
    "ocs_nftables_allow_icmp", "ocs_nftables_persist_path", "ocs_nftables_persist_conf",
    "ocs_nftables_manage_package", "ocs_nftables_result", "ocs_nftables_boot_loader",
    "ocs_iptables_chain_prefix", "ocs_iptables_state", "ocs_iptables_input_policy", "ocs_iptables_output_policy",
    "ocs_iptables_allow_icmp", "ocs_iptables_persist_path", "ocs_iptables_manage_package", "ocs_iptables_result",
    "ocs_iptables_boot_loader", "ocs_iptables_boot_loaders",
    "ocs_pfsense_state", "ocs_pfsense_config_path", "ocs_pfsense_backup_dir", "ocs_pfsense_cache_file",
    "ocs_pfsense_lock_file", "ocs_pfsense_reload_command", "ocs_pfsense_username", "ocs_pfsense_result",
    "ocs_pfsense_standin",
    "ocs_windows_firewall_group", "ocs_windows_firewall_rule_prefix", "ocs_windows_firewall_profiles",
    "ocs_windows_firewall_state", "ocs_windows_firewall_plan_only", "ocs_windows_firewall_current_rules",
    "ocs_windows_firewall_desired", "ocs_windows_firewall_plan", "ocs_windows_firewall_read",
    "ocs_windows_result",
    # roles: Linux under faults, pfSense NAT / default deny / placement
    "ocs_allow_management_lockout", "ocs_conntrack_flush", "ocs_foreign_rules_check", "ocs_nat_check",
    "ocs_pfsense_default_deny", "ocs_pfsense_no_nat", "ocs_pfsense_no_nat_scope", "ocs_pfsense_placement",
    "ocs_pfsense_placement_separator",
    # deploy: check all, apply all or none, confirm, verify, summary (and the facts it sets)
    "ocs_allow_partial", "ocs_apply_confirm_timeout", "ocs_apply_confirm_grace", "ocs_apply_confirm_guard_dir",
    "ocs_apply_confirm_method", "ocs_verify_after_apply", "ocs_report_dir", "ocs_fail_on_drift",
    "ocs_policy_targets", "ocs_firewall_check", "ocs_firewall_apply", "ocs_preflight", "ocs_stop",
    "ocs_verify", "ocs_report", "ocs_deploy_summary",
    # plan and flow query
    "ocs_plan", "ocs_plan_base", "ocs_plan_base_label", "ocs_plan_base_policy", "ocs_plan_dir",
    "ocs_plan_new_label", "ocs_flow_answer", "ocs_flow_live_answer", "ocs_flow_live_hosts", "ocs_live_read",
)
# Facts the lab and the molecule scenarios set on their own hosts.
OTHER_VAR_PREFIXES = ("ocs_lab_", "ocs_verify_")
KNOWN_VARS = frozenset(ALL_VARS + OTHER_VARS)
# Names that look like the collection's (ocs_x, ocs-x, OCS_x): checked against KNOWN_VARS.
OCS_LIKE = re.compile(r"ocs[_-]", re.I)
# What the filter hands on for an unknown ocs_* variable: its name matters, its value is not read.
UNREAD = "<unknown variable, value not read>"

# Ansible's own boolean words (ansible.module_utils.parsing.convert_bool), nothing else.
BOOLEANS = {True: ("true", "yes", "on", "y", "t", "1"), False: ("false", "no", "off", "n", "f", "0")}

# Names end up in rule ids, comments, nft/iptables/pfSense text: keep them plain. Always
# fullmatch: "$" would also match before a final newline.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,23}")
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,31}")
_NAME_MAX = {_NAME: 24, _HOSTNAME: 63, _IFNAME: 32}

# Addresses no server, VIP, Director or next hop can have (first match wins), with the reason.
NOT_A_HOST = (
    ("0.0.0.0/8", "is in 0.0.0.0/8 ('this network', 0.0.0.0 is the unspecified address)"),
    ("127.0.0.0/8", "is a loopback address"),
    ("169.254.0.0/16", "is a link-local address (not routed)"),
    ("224.0.0.0/4", "is a multicast address"),
    ("255.255.255.255/32", "is the limited broadcast address"),
    ("240.0.0.0/4", "is in the reserved range 240.0.0.0/4"),
)


@lru_cache(maxsize=1)
def _not_a_host_nets():
    """NOT_A_HOST parsed once (at first use: netaddr may be missing at import)."""
    return tuple((netaddr.IPNetwork(block), why) for block, why in NOT_A_HOST)


# What a platform refuses beyond the platform table (module_utils/platforms.py), checked here so
# that no firewall is changed when another would fail: whether 0.0.0.0/0 as a management source
# reads back as it was written (iptables-save drops the match, so it never converges).
ANY_MANAGEMENT_NETWORK = {"nftables": True, "iptables": False, "pfsense": True, "windows": True}
# How an interface name the platform table refuses is explained to the user.
IFNAME_WORDS = {
    "nftables": "a Linux interface name (at most 15 characters: letters, digits, _ . : @ + -)",
    "iptables": "a Linux interface name (at most 15 characters: letters, digits, _ . : @ -)",
    "pfsense": "a pfSense interface id (wan, lan, optN: lower case, as in config.xml)",
}


class PolicyError(ValueError):
    """Bad inventory input. `errors` holds one message per problem."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__(
            "the OCS edge firewall inventory has %d error(s):\n- %s"
            % (len(self.errors), "\n- ".join(self.errors))
        )


@lru_cache(maxsize=1)
def load_catalog():
    """The seed tables (data/seed_tables.yml) as a dict."""
    with CATALOG_PATH.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _rows_by_table():
    rows = {}
    for row in load_catalog()["rows"]:
        rows.setdefault(row["table"], []).append(row)
    return rows


_BAD_CHARS = re.compile(r"[\s;'\"`$\\{}]")


def _type_name(value):
    return "null" if value is None else {dict: "a dict", list: "a list", bool: "a boolean", int: "a number",
                                         float: "a number", str: "a string"}.get(type(value), type(value).__name__)


@lru_cache(maxsize=65536)
def _parse_address(value):
    """A string -> (canonical IPv4 address, None) or (None, why not). Cached: the same
    addresses come back on every host (management networks, VIPs)."""
    if not value or _BAD_CHARS.search(value):
        return None, "%r contains characters that cannot be in an address" % value
    if "/" in value:
        return None, ("%r is a network (CIDR); an address is expected here, write it without /prefix "
                      "(it is not widened to a network)" % value)
    try:
        addr = netaddr.IPAddress(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None, "%r is not an IPv4 address" % value
    if addr.version != 4:
        return None, "%r is IPv6; the edge policy is IPv4 only" % value
    if str(addr) != value:
        return None, "%r is not written in canonical dotted-quad form (%s)" % (value, addr)
    for block, why in _not_a_host_nets():
        if addr in block:
            return None, "%s %s; no server can have it" % (value, why)
    return value, None


@lru_cache(maxsize=65536)
def _parse_network(value):
    """A string -> (canonical address or CIDR, None) or (None, why not)."""
    if not value or _BAD_CHARS.search(value):
        return None, "%r is not an IPv4 address or CIDR" % value
    try:
        net = netaddr.IPNetwork(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None, "%r is not an IPv4 address or CIDR" % value
    if net.version != 4:
        return None, "%r is IPv6; the edge policy is IPv4 only" % value
    if not re.fullmatch(r"[0-9.]+(/[0-9]{1,2})?", value):
        return None, "%r is not written as a dotted-quad address or CIDR" % value
    if "/" in value and str(net.cidr) != value:
        return None, "%r has host bits set (did you mean %s?)" % (value, net.cidr)
    if "/" not in value and str(net.ip) != value:
        return None, "%r is not written in canonical dotted-quad form (%s)" % (value, net.ip)
    for block, why in _not_a_host_nets():
        if net.prefixlen > 0 and net in block:
            return None, "%s %s; no management host can have it" % (value, why)
    return (str(net.cidr) if "/" in value else str(net.ip)), None


class _Checker:
    """Collects errors; each message says which host and which variable."""

    def __init__(self):
        self.errors = []

    def fail(self, where, var, message):
        self.errors.append("%s: %s: %s" % (where, var, message))

    def ip(self, value, where, var):
        """A canonical IPv4 address a server can have, or None after recording an error."""
        if not isinstance(value, str):
            self.fail(where, var, "must be an IPv4 address string, got %s %r" % (_type_name(value), value))
            return None
        addr, why = _parse_address(value)
        if why:
            self.fail(where, var, why)
        return addr

    def network(self, value, where, var):
        if not isinstance(value, str):
            self.fail(where, var, "must be an IPv4 address or CIDR string, got %s %r" % (_type_name(value), value))
            return None
        net, why = _parse_network(value)
        if why:
            self.fail(where, var, why)
        return net

    def name(self, value, where, var, pattern=_NAME):
        if not isinstance(value, str):
            self.fail(where, var, "must be a name (a string), got %s %r" % (_type_name(value), value))
            return None
        if not pattern.fullmatch(value):
            self.fail(where, var, "%r must be a plain name (letters, digits, '_', '.', '-', starting with a "
                      "letter or digit, at most %d characters)" % (value, _NAME_MAX[pattern]))
            return None
        return value

    def boolean(self, value, where, var, default=False):
        """Strict: a boolean or one of Ansible's boolean words; anything else is an error."""
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            for result, words in BOOLEANS.items():
                if value.strip().lower() in words:
                    return result
        self.fail(where, var, "must be a boolean (true/false), got %s %r" % (_type_name(value), value))
        return default

    def choice(self, value, choices, where, var, hint=""):
        """value one of choices (strings), or None after an error that names the type."""
        if isinstance(value, str) and value in choices:
            return value
        self.fail(where, var, "%r is not one of %s%s" % (value, ", ".join(choices), hint))
        return None


def _host_value(hv, key, default=None):
    value = hv.get(key, default)
    return default if value is None else value


def _deployment(hostvars, participants, chk):
    """Deployment-wide variables must be the same on every participating host.

    Group variables reach every host as the same object (the filter shares them): compare by
    identity first, so a large ocs_arrays is compared once, not once per host.
    """
    seen = {}
    for var in DEPLOYMENT_VARS:
        first = None
        for host in participants:
            value = hostvars[host].get(var)
            if value is None:
                continue
            if first is None:
                first = (host, value)
            elif value is not first[1] and value != first[1]:
                chk.fail("host %s" % host, var, "is %r here but %r on host %s; deployment-wide "
                         "variables belong in group_vars/all" % (value, first[1], first[0]))
                break
        seen[var] = first[1] if first else None
    return seen


def _per_role_ip(value, roles, where, var, chk):
    """ocs_internal_ip / ocs_external_ip: one address, or a dict role -> address."""
    if value is None:
        chk.fail(where, var, "is required for roles %s" % ", ".join(roles))
        return {}
    if isinstance(value, dict):
        out = {}
        for key in value:
            if key not in roles:
                chk.fail(where, "%s.%s" % (var, key), "is not one of this server's ocs_edge_roles %s" % list(roles))
        for role in roles:
            if role not in value:
                chk.fail(where, "%s.%s" % (var, role), "is required (the server has role %s)" % role)
                continue
            addr = chk.ip(value[role], where, "%s.%s" % (var, role))
            if addr:
                out[role] = addr
        return out
    addr = chk.ip(value, where, var)
    return {role: addr for role in roles} if addr else {}


def _servers(hostvars, chk):
    servers = {}
    for host, hv in hostvars.items():
        roles = hv.get("ocs_edge_roles")
        if roles is None:
            continue  # absent; present but null is reported by _nulls
        where = "host %s" % host
        chk.name(host, where, "inventory_hostname", _HOSTNAME)
        if not isinstance(roles, (list, tuple)) or not roles:
            chk.fail(where, "ocs_edge_roles", "must be a non-empty list of %s" % ", ".join(ROLES))
            continue
        bad = [r for r in roles if not isinstance(r, str) or r not in ROLES]
        if bad:
            chk.fail(where, "ocs_edge_roles", "unknown role(s) %s; known: %s" % (bad, ", ".join(ROLES)))
            continue
        if len(set(roles)) != len(roles):
            chk.fail(where, "ocs_edge_roles", "lists a role twice: %s" % list(roles))
        roles = tuple(r for r in ROLES if r in roles)
        site = chk.name(_host_value(hv, "ocs_site", DEFAULT_SITE), where, "ocs_site")
        array = hv.get("ocs_array")
        if array is not None:
            array = chk.name(array, where, "ocs_array")
        host_fw = hv.get("ocs_host_firewall")
        if host_fw is not None:
            host_fw = chk.choice(host_fw, HOST_PLATFORMS, where, "ocs_host_firewall")
        servers[host] = {
            "name": host,
            "roles": roles,
            "site": site,
            "array": array,
            "host_firewall": host_fw,
            "internal": _per_role_ip(hv.get("ocs_internal_ip"), roles, where, "ocs_internal_ip", chk),
            "external": _per_role_ip(hv.get("ocs_external_ip"), roles, where, "ocs_external_ip", chk),
        }
    return servers


def _arrays(value, servers, chk):
    arrays = {}
    if value is None:
        return arrays
    if not isinstance(value, dict):
        chk.fail("group_vars", "ocs_arrays", "must be a dict: array name -> {role, internal_vip, external_vip}")
        return arrays
    for name, spec in value.items():
        var = "ocs_arrays.%s" % name
        if not chk.name(name, "group_vars", var):
            continue
        if not isinstance(spec, dict):
            chk.fail("group_vars", var, "must be a dict with role, internal_vip, external_vip")
            continue
        unknown = [k for k in spec if k not in ("role", "site", "internal_vip", "external_vip")]
        if unknown:
            chk.fail("group_vars", var, "unknown key(s) %s; known: role, site, internal_vip, external_vip"
                     % ", ".join(sorted(map(repr, unknown))))
        role = chk.choice(spec.get("role"), ROLES, "group_vars", var + ".role")
        site = spec.get("site")
        if site is not None:
            site = chk.name(site, "group_vars", var + ".site")
        arrays[name] = {
            "role": role,
            "site": site,
            "internal_vip": chk.ip(spec["internal_vip"], "group_vars", var + ".internal_vip")
            if spec.get("internal_vip") is not None else None,
            "external_vip": chk.ip(spec["external_vip"], "group_vars", var + ".external_vip")
            if spec.get("external_vip") is not None else None,
        }
    for srv in servers.values():
        if srv["array"] is None:
            continue
        arr = arrays.get(srv["array"])
        where = "host %s" % srv["name"]
        if arr is None:
            chk.fail(where, "ocs_array", "%r is not defined in ocs_arrays" % srv["array"])
        elif arr["role"] not in srv["roles"]:
            chk.fail(where, "ocs_array", "array %r is for role %s, which this server does not have"
                     % (srv["array"], arr["role"]))
        elif arr["site"] not in (None, srv["site"]):
            chk.fail(where, "ocs_site", "is %r but its array %r is at site %r" % (srv["site"], srv["array"], arr["site"]))
    return arrays


def _site_kinds(topology, sites_var, servers, firewalls, chk):
    catalog_sites = load_catalog()["topologies"][topology]["sites"]
    used = sorted(({s["site"] for s in servers.values()} | {f["site"] for f in firewalls.values()}) - {None})
    if set(catalog_sites) == {"central"}:
        for srv in list(servers.values()) + list(firewalls.values()):
            if srv["site"] not in (None, DEFAULT_SITE):
                chk.fail("host %s" % srv["name"], "ocs_site", "topology %s has one site, %r; got %r"
                         % (topology, DEFAULT_SITE, srv["site"]))
        return {DEFAULT_SITE: "central"}
    kinds = {}
    if sites_var is not None:
        if not isinstance(sites_var, dict):
            chk.fail("group_vars", "ocs_sites", "must be a dict: site name -> {kind: central|remote}")
            sites_var = {}
        for name, spec in sites_var.items():
            kind = spec.get("kind") if isinstance(spec, dict) else None
            if chk.name(name, "group_vars", "ocs_sites.%s" % name) and kind in SITE_KINDS:
                kinds[name] = kind
            else:
                chk.fail("group_vars", "ocs_sites.%s.kind" % name, "%r is not one of %s" % (kind, ", ".join(SITE_KINDS)))
    for site in used:
        kinds.setdefault(site, "central" if site == DEFAULT_SITE else "remote")
    if sum(1 for k in kinds.values() if k == "central") > 1:
        chk.fail("group_vars", "ocs_sites", "more than one central site: %s" % sorted(k for k, v in kinds.items() if v == "central"))
    return kinds


def _firewalls(hostvars, chk):
    firewalls = {}
    for host, hv in hostvars.items():
        side = hv.get("ocs_firewall_side")
        if side is None:
            continue
        where = "host %s" % host
        chk.name(host, where, "inventory_hostname", _HOSTNAME)
        if "ocs_edge_roles" in hv and hv["ocs_edge_roles"] is not None:
            chk.fail(where, "ocs_firewall_side", "a host is either a firewall or a perimeter server, "
                     "not both (use ocs_host_firewall for a server's own firewall)")
        if not chk.choice(side, SIDES, where, "ocs_firewall_side"):
            continue
        platform = _host_value(hv, "ocs_firewall_platform", "nftables")
        hint = " (%s is a host firewall: set ocs_host_firewall on the server)" % PLATFORMS[platform].title \
            if isinstance(platform, str) and platform in HOST_PLATFORMS else ""
        if not chk.choice(platform, NETWORK_PLATFORMS, where, "ocs_firewall_platform", hint):
            continue
        interfaces = _interfaces(hv.get("ocs_firewall_interfaces"), side, platform, where, chk)
        firewalls[host] = {
            "name": host,
            "side": side,
            "site": chk.name(_host_value(hv, "ocs_site", DEFAULT_SITE), where, "ocs_site"),
            "platform": platform,
            "mode": "network",
            "interfaces": interfaces,
            "management": _management(hv, platform, where, chk),
        }
    return firewalls


def _interfaces(value, side, platform, where, chk):
    zones = SIDE_ZONES[side]
    if value is None:
        if PLATFORMS[platform].interfaces_required:
            wanted = ", ".join("%s: <if>" % z for z in zones)
            chk.fail(where, "ocs_firewall_interfaces", "is required on %s (rules are bound to the "
                     "interface a packet enters by): give %s" % (PLATFORMS[platform].title, wanted))
        return {}
    if not isinstance(value, dict):
        chk.fail(where, "ocs_firewall_interfaces", "must be a dict zone -> interface name, got %s" % _type_name(value))
        return {}
    out = {}
    for zone, ifname in value.items():
        if zone not in zones:
            chk.fail(where, "ocs_firewall_interfaces.%s" % zone, "an %s firewall sits between %s; "
                     "%r is not one of them" % (side, " and ".join(zones), zone))
            continue
        if chk.name(ifname, where, "ocs_firewall_interfaces.%s" % zone, _IFNAME):
            # the platform's own names (pfSense: lower-case ids wan, lan, optN, as filter.inc
            # looks them up; Linux: IFNAMSIZ)
            if not PLATFORMS[platform].ifname_re.fullmatch(ifname):
                words = IFNAME_WORDS.get(platform, "a valid %s interface name" % PLATFORMS[platform].title)
                chk.fail(where, "ocs_firewall_interfaces.%s" % zone, "%r is not %s" % (ifname, words))
                out[zone] = None  # reported; not "missing" too
                continue
            out[zone] = ifname
    missing = [z for z in zones if z not in out]
    if missing and (PLATFORMS[platform].interfaces_required or out):
        chk.fail(where, "ocs_firewall_interfaces", "names no interface for zone(s) %s" % ", ".join(missing))
    return {z: i for z, i in out.items() if i is not None}


def _management(hv, platform, where, chk):
    nets = hv.get("ocs_management_networks")
    # default: the port Ansible itself uses to reach the firewall, so the deploy cannot cut it
    ports = _host_value(hv, "ocs_management_ports", [_host_value(hv, "ansible_port", 22)])
    sources = []
    if nets is None or nets == []:
        if PLATFORMS[platform].management_required:
            chk.fail(where, "ocs_management_networks", "is required and must not be empty: the rule set "
                     "must keep the management connection (Ansible/SSH) open")
    elif not isinstance(nets, (list, tuple)):
        chk.fail(where, "ocs_management_networks", "must be a list of IPv4 addresses/CIDRs, got %s %r"
                 % (_type_name(nets), nets))
    else:
        for i, net in enumerate(nets):
            norm = chk.network(net, where, "ocs_management_networks[%d]" % i)
            if norm:
                sources.append(norm)
    out_ports = []
    if not isinstance(ports, (list, tuple)):
        ports = [ports]
    if not ports:
        chk.fail(where, "ocs_management_ports", "is empty; the firewall modules always open the management "
                 "port, so give it (default [22]) or remove the variable")
    for i, port in enumerate(ports):
        if isinstance(port, bool) or not re.fullmatch(r"\d{1,5}", str(port)) or not 0 < int(port) < 65536:
            chk.fail(where, "ocs_management_ports[%d]" % i, "%r is not a TCP port number" % (port,))
        else:
            out_ports.append(str(int(port)))
    return {"sources": sorted(set(sources)), "ports": sorted(set(out_ports), key=int)}


def _claims(servers, arrays, director, next_hop, chk):
    """The same address claimed by two different owners is an error."""
    owners = {}

    def claim(addr, owner, label):
        if addr:
            owners.setdefault(addr, {}).setdefault(owner, set()).add(label)

    for srv in servers.values():
        for side in ("internal", "external"):
            for role, addr in srv[side].items():
                claim(addr, "host %s" % srv["name"], "ocs_%s_ip" % side)
    for name, arr in arrays.items():
        for side in SIDES:
            claim(arr["%s_vip" % side], "array %s" % name, "ocs_arrays.%s.%s_vip" % (name, side))
    claim(director, "the Director", "ocs_director")
    claim(next_hop, "the next hop", "ocs_next_hop")
    for addr, who in sorted(owners.items()):
        items = sorted((owner, sorted(labels)) for owner, labels in who.items())
        if len(items) > 1:
            chk.fail(items[1][0], items[1][1][0], "address %s is also claimed by %s (%s)"
                     % (addr, items[0][0], items[0][1][0]))
        elif len(items[0][1]) > 1:
            chk.fail(items[0][0], items[0][1][1], "address %s is also this server's %s; a perimeter server's "
                     "internal and external addresses are on different networks" % (addr, items[0][1][0]))


def _unknown_vars(hostvars, chk):
    """An ocs_* variable the collection does not know is a typo until proven otherwise."""
    reported = set()
    for host, hv in sorted(hostvars.items()):
        for var in hv:
            if not isinstance(var, str) or not OCS_LIKE.match(var) or var in KNOWN_VARS \
                    or var.startswith(OTHER_VAR_PREFIXES) or (host, var) in reported:
                continue
            reported.add((host, var))
            near = difflib.get_close_matches(var, sorted(KNOWN_VARS), n=1, cutoff=0.6)
            chk.fail("host %s" % host, var, "is not a variable of ocs.edge_firewall%s" % (
                "; did you mean %s?" % near[0] if near else " (known: %s)" % ", ".join(ALL_VARS)))


# Variables whose null means "not set"; any other engine variable set to null is an error
# (ocs_edge_roles: null would drop a server, ocs_site: null move it to the central site).
NULL_MEANS_UNSET = ("ocs_director", "ocs_next_hop", "ocs_arrays", "ocs_sites", "ocs_allow_nonpublic_av_addresses",
                    "ocs_array", "ocs_host_firewall", "ocs_firewall_interfaces", "ocs_internal_ip",
                    "ocs_external_ip", "ocs_management_networks")


def _nulls(hostvars, participants, chk):
    for host in participants:
        hv = hostvars[host]
        for var in ALL_VARS:
            if var in hv and hv[var] is None and var not in NULL_MEANS_UNSET:
                chk.fail("host %s" % host, var, "is null; give it a value or remove it")


def _array_sites(arrays, site_kinds, chk):
    for name, arr in sorted(arrays.items()):
        if arr["site"] is not None and arr["site"] not in site_kinds:
            chk.fail("group_vars", "ocs_arrays.%s.site" % name, "%r is not a site of this deployment (%s)"
                     % (arr["site"], ", ".join(sorted(site_kinds))))


def _platform_inputs(hostvars, firewalls, servers, chk):
    """The platform checks of every firewall's and host firewall's inputs, before any rule exists."""
    for name, fw in sorted(firewalls.items()):
        _platform_checks(name, fw, fw["platform"], _platform_limits(fw["platform"]), chk)
    for name, srv in sorted(servers.items()):
        if srv["host_firewall"]:  # its management errors themselves are reported with its FIREWALL
            mgmt = _management(hostvars[name], srv["host_firewall"], "host %s" % name, _Checker())
            _platform_checks(name, {"management": mgmt}, srv["host_firewall"],
                             _platform_limits(srv["host_firewall"]), chk)


def _platform_limits(platform):
    """What `platform` refuses: the platform table's comment limit, and ANY_MANAGEMENT_NETWORK.
    Interface names are checked against the table where they are read (_interfaces)."""
    return {"any_network": ANY_MANAGEMENT_NETWORK[platform],
            "comment_max": PLATFORMS[platform].comment_max or 255}


def _platform_checks(name, fw, platform, limits, chk):
    """Refuse here what the platform's module would refuse after other firewalls were changed."""
    where = "host %s" % name
    for i, source in enumerate((fw.get("management") or {}).get("sources") or []):
        if source.endswith("/0") and not limits["any_network"]:
            chk.fail(where, "ocs_management_networks[%d]" % i, "%s (any address) is not supported on %s: it reads "
                     "back without a source match and never converges; list the management networks" % (source, platform))
    for rule in fw.get("rules") or []:
        if len(rule["comment"].encode("utf-8")) > limits["comment_max"]:
            chk.fail(where, "ocs_site", "rule comment %r is longer than the %d bytes the platform takes"
                     % (rule["comment"], limits["comment_max"]))


def _ports(value):
    return None if value == "any" else [value]


def _rule_id(site, table, figure, direction):
    return "%s-t%d-f%d-%s" % (site, table, figure, "in" if direction == "inbound" else "out")


def _local_initiates(firewall, direction):
    """Who opens the connection: the perimeter server (True) or the remote side."""
    return (firewall, direction) in (("internal", "inbound"), ("external", "outbound"))


def _pfrule(rule, src, dst, chain):
    firewall, direction = rule["firewall"], rule["direction"]
    local_first = _local_initiates(firewall, direction)
    # The perimeter server sits in the perimeter; its peer is inside or on the Internet.
    remote_zone = "internal" if firewall == "internal" else "internet"
    return {
        "id": rule["id"],
        "table": rule["table"],
        "figure": rule["figure"],
        "server_role": rule["server_role"],
        "service": rule["service"],
        "direction": direction,
        "protocol": rule["protocol"],
        "src": src,
        "dst": dst,
        "sport": rule["local_ports"] if local_first else rule["remote_ports"],
        "dport": rule["remote_ports"] if local_first else rule["local_ports"],
        "src_zone": "perimeter" if local_first else remote_zone,
        "dst_zone": remote_zone if local_first else "perimeter",
        "chain": chain,
        # extra rules and the page's opt-in notes bring their own comment (plugin_utils/extras.py)
        "comment": rule.get("comment") or "ocs %s table %d figure %d %s %s" % (
            rule["id"], rule["table"], rule["figure"], rule["server_role"], rule["service"]),
        **{k: True for k in ("extra", "note") if rule.get(k)},
    }


def network_pfrule(rule):
    """The packet-filter rule a network firewall needs for a RULE."""
    if _local_initiates(rule["firewall"], rule["direction"]):
        return _pfrule(rule, rule["local_addresses"], rule["remote_addresses"], "forward")
    return _pfrule(rule, rule["remote_addresses"], rule["local_addresses"], "forward")


def host_pfrule(rule, own_addresses):
    """The same flow seen from one server's own firewall."""
    if _local_initiates(rule["firewall"], rule["direction"]):
        return _pfrule(rule, own_addresses, rule["remote_addresses"], "output")
    return _pfrule(rule, rule["remote_addresses"], own_addresses, "input")


def build_policy(hostvars):
    """Compute the policy of docs/policy-model.md from {hostname: {var: value}}.

    Raises PolicyError listing every input problem at once.
    """
    if netaddr is None:
        raise PolicyError(["controller: python library netaddr is required (pip install netaddr)"])
    chk = _Checker()
    warnings = []
    hostvars = {h: (hv if isinstance(hv, dict) else {}) for h, hv in hostvars.items()}
    participants = [h for h, hv in hostvars.items() if "ocs_edge_roles" in hv or "ocs_firewall_side" in hv]
    _unknown_vars(hostvars, chk)
    if not participants:
        raise PolicyError(chk.errors + ["inventory: no host has ocs_edge_roles or ocs_firewall_side; nothing to compute"])
    _nulls(hostvars, participants, chk)
    dep = _deployment(hostvars, participants, chk)
    catalog = load_catalog()
    topology = chk.choice(dep["ocs_topology"], tuple(catalog["topologies"]), "group_vars", "ocs_topology")
    allow_nonpublic = chk.boolean(dep["ocs_allow_nonpublic_av_addresses"], "group_vars",
                                  "ocs_allow_nonpublic_av_addresses")

    servers = _servers(hostvars, chk)
    firewalls = _firewalls(hostvars, chk)
    arrays = _arrays(dep["ocs_arrays"], servers, chk)
    director = chk.ip(dep["ocs_director"], "group_vars", "ocs_director") if dep["ocs_director"] is not None else None
    next_hop = chk.ip(dep["ocs_next_hop"], "group_vars", "ocs_next_hop") if dep["ocs_next_hop"] is not None else None
    if topology is None:
        raise PolicyError(chk.errors)
    site_kinds = _site_kinds(topology, dep["ocs_sites"], servers, firewalls, chk)
    _array_sites(arrays, site_kinds, chk)
    _platform_inputs(hostvars, firewalls, servers, chk)
    if chk.errors:  # cross-checks below need well-formed hosts; report these first
        raise PolicyError(chk.errors)
    _claims(servers, arrays, director, next_hop, chk)

    _site_roles(topology, site_kinds, servers, chk)
    _av_public(servers, arrays, allow_nonpublic, chk, warnings)

    if chk.errors:
        raise PolicyError(chk.errors)

    rules = _expand(topology, site_kinds, servers, arrays, director, next_hop, chk, warnings)
    if chk.errors:
        raise PolicyError(chk.errors)
    rules, extras_summary = extras.extend_rules(rules, hostvars, dict(dep, ocs_topology=topology), servers,
                                                director, site_kinds, chk, warnings)
    if chk.errors:
        raise PolicyError(chk.errors)

    # Index the rules once (by firewall and by server), so each firewall costs its own rules only.
    by_side_site, by_server = {}, {}
    for rule in rules:
        by_side_site.setdefault((rule["firewall"], rule["site"]), []).append(rule)
        for server in rule["servers"]:
            by_server.setdefault(server, []).append(rule)
    fw_out = {}
    for name, fw in sorted(firewalls.items()):
        mine = [network_pfrule(r) for r in by_side_site.get((fw["side"], fw["site"]), [])]
        if fw["site"] not in site_kinds:
            warnings.append("host %s: ocs_site: site %r has no perimeter servers; the firewall gets no rules"
                            % (name, fw["site"]))
        fw_out[name] = {k: fw[k] for k in ("side", "site", "platform", "mode", "interfaces", "management")}
        fw_out[name]["rules"] = mine
        fw_out[name]["no_nat"] = _no_nat(by_side_site.get((fw["side"], fw["site"]), []))
    guarded = {(f["side"], f["site"]) for f in firewalls.values()}
    for site in site_kinds:
        for side in SIDES:
            if (side, site) in by_side_site and (side, site) not in guarded:
                warnings.append("site %s: no %s firewall in the inventory (a host with ocs_firewall_side: %s); "
                                "its rules are exported but not enforced" % (site, side, side))
    for name, srv in sorted(servers.items()):
        if not srv["host_firewall"]:
            continue
        mine = []
        for rule in by_server.get(name, []):
            side = "internal" if rule["local_address"].startswith("internal") else "external"
            mine.append(host_pfrule(rule, [srv[side][rule["server_role"]]]))
        hv = hostvars[name]
        fw_out[name] = {
            "side": "host",
            "site": srv["site"],
            "platform": srv["host_firewall"],
            "mode": "host",
            "interfaces": {},
            "management": _management(hv, srv["host_firewall"], "host %s" % name, chk),
            "rules": mine,
        }
    for name, fw in sorted(fw_out.items()):
        _platform_checks(name, {"rules": fw["rules"]}, fw["platform"], _platform_limits(fw["platform"]), chk)
    if chk.errors:
        raise PolicyError(chk.errors)

    public_rules = [{k: v for k, v in r.items() if k != "local_address"} for r in rules]
    return {
        "schema_version": SCHEMA_VERSION,
        "topology": topology,
        "deployment": {
            "director": director,
            "next_hop": next_hop,
            "sites": dict(sorted(site_kinds.items())),
            "arrays": {n: dict(a) for n, a in sorted(arrays.items())},
            "servers": {n: _server_view(s) for n, s in sorted(servers.items())},
            **extras_summary,
        },
        "rules": public_rules,
        "firewalls": fw_out,
        "warnings": warnings,
    }


def _no_nat(rules):
    """The perimeter server addresses a network firewall's rules name (their local addresses),
    with their roles: what must not be NATed (the page: the A/V Edge's external address on the
    external firewall, its internal address on the internal one)."""
    roles = {}
    for rule in rules:
        for addr in rule["local_addresses"] or []:
            roles.setdefault(addr, set()).add(rule["server_role"])
    return [{"address": a, "roles": sorted(r for r in roles[a] if r)} for a in sorted(roles, key=netaddr.IPNetwork)]


def _server_view(srv):
    """A perimeter server as the policy shows it (diagram, flow query): roles, site, array,
    host firewall, and its internal / external address per role."""
    return {"roles": list(srv["roles"]), "site": srv["site"], "array": srv["array"],
            "host_firewall": srv["host_firewall"], "internal": dict(srv["internal"]),
            "external": dict(srv["external"])}


def _site_roles(topology, site_kinds, servers, chk):
    """Roles the site may carry, and the multi_site remote-site single A/V Edge."""
    catalog = load_catalog()
    for srv in servers.values():
        kind = site_kinds.get(srv["site"])
        tables = catalog["topologies"][topology]["sites"].get(kind, [])
        allowed = {catalog["tables"][t]["role"] for t in tables}
        for role in srv["roles"]:
            if role not in allowed:
                chk.fail("host %s" % srv["name"], "ocs_edge_roles", "role %s is not allowed at %s site %r of "
                         "topology %s (tables %s have no %s rows%s)" % (
                             role, kind, srv["site"], topology, ", ".join(map(str, tables)), role,
                             "; remote users use the central site's Access Edge" if role == "access_edge" else ""))
    if topology == "multi_site":
        avs_by_site = {}
        for srv in servers.values():
            if "av_edge" in srv["roles"]:
                avs_by_site.setdefault(srv["site"], []).append(srv["name"])
        for site, kind in site_kinds.items():
            avs = sorted(avs_by_site.get(site, []))
            if kind == "remote" and len(avs) > 1:
                chk.fail("host %s" % avs[1], "ocs_edge_roles", "topology multi_site allows a single A/V Edge Server "
                         "at remote site %r (also on %s); use scaled_remote_site for an A/V array" % (site, avs[0]))


def _av_public(servers, arrays, allow_nonpublic, chk, warnings):
    """The A/V Edge's external address (and VIP) must be publicly routable (page, tables 12-26)."""
    for srv in servers.values():
        if "av_edge" not in srv["roles"] or "av_edge" not in srv["external"]:
            continue
        checks = [(srv["external"]["av_edge"], "host %s" % srv["name"], "ocs_external_ip")]
        if srv["array"] in arrays and arrays[srv["array"]]["external_vip"]:
            checks.append((arrays[srv["array"]]["external_vip"], "group_vars", "ocs_arrays.%s.external_vip" % srv["array"]))
        for addr, where, var in checks:
            if not netaddr.IPAddress(addr).is_global():
                msg = ("%s: %s: %s is not a publicly routable address; the page requires the A/V Edge external "
                       "address to be publicly routable and not NATed" % (where, var, addr))
                if allow_nonpublic:
                    warnings.append(msg + " (allowed by ocs_allow_nonpublic_av_addresses)")
                else:
                    chk.errors.append(msg + " (set ocs_allow_nonpublic_av_addresses: true only for labs)")


def _expand(topology, site_kinds, servers, arrays, director, next_hop, chk, warnings):
    """Seed rows x sites -> RULEs with concrete addresses."""
    catalog = load_catalog()
    by_table = _rows_by_table()
    rules = []
    order = sorted(site_kinds, key=lambda s: (site_kinds[s] != "central", s))
    by_site_role = {}
    for srv in sorted(servers.values(), key=lambda s: s["name"]):
        for role in srv["roles"]:
            by_site_role.setdefault((srv["site"], role), []).append(srv)
    for site in order:
        tables = catalog["topologies"][topology]["sites"][site_kinds[site]]
        for table in tables:
            role = catalog["tables"][table]["role"]
            members = by_site_role.get((site, role), [])
            if not members:
                warnings.append("site %s: no %s server in the inventory; table %d is skipped" % (site, role, table))
                continue
            for row in by_table[table]:
                local = _local_addresses(row, role, members, arrays, chk)
                remote = _remote_addresses(row, members, director, next_hop, chk)
                directions = ["inbound", "outbound"] if row["direction"] == "both" else [row["direction"]]
                for direction in directions:
                    # A both-way row may give its outbound half other ports (federation, figure 3:
                    # see contradictions federation_outbound_source_port in the catalog).
                    ports = row.get("outbound_ports") if direction == "outbound" else None
                    ports = ports or row
                    rules.append({
                        "id": _rule_id(site, table, row["figure"], direction),
                        "table": table,
                        "figure": row["figure"],
                        "row": row["row"],
                        "server_role": role,
                        "firewall": row["firewall"],
                        "direction": direction,
                        "protocol": row["protocol"],
                        "service": row["service"],
                        "local_ports": _ports(ports["local_ports"]),
                        "remote_ports": _ports(ports["remote_ports"]),
                        "local_addresses": local,
                        "remote_addresses": remote,
                        "site": site,
                        "servers": [m["name"] for m in members],
                        "local_address": row["local_address"],
                    })
    return rules


def _local_addresses(row, role, members, arrays, chk):
    ref = row["local_address"]
    side = "internal" if ref.startswith("internal") else "external"
    found = set()
    if ref.endswith("_ip") or ref.endswith("_ip_and_vip"):
        found.update(m[side][role] for m in members if role in m[side])
    if ref.endswith("_vip"):
        for m in members:
            where = "host %s" % m["name"]
            what = "table %d row %d (figure %d) uses the %s VIP of the %s array" % (
                row["table"], row["row"], row["figure"], side, role)
            if not m["array"]:
                chk.fail(where, "ocs_array", "is not set, but %s: put the server in an array of ocs_arrays" % what)
                continue
            vip = arrays.get(m["array"], {}).get("%s_vip" % side)
            if not vip:
                chk.fail(where, "ocs_arrays.%s.%s_vip" % (m["array"], side), "is not set, but %s" % what)
                continue
            found.add(vip)
    return sorted(found, key=lambda a: tuple(int(x) for x in a.split(".")))


def _remote_addresses(row, members, director, next_hop, chk):
    ref = row["remote_address"]
    if ref == "any":
        return None
    if ref == "director_or_any":
        return [director] if director else None
    # next_hop: the Director (or Director pool VIP) if deployed, else the next-hop server.
    if director:
        return [director]
    if next_hop:
        return [next_hop]
    chk.fail("host %s" % members[0]["name"], "ocs_next_hop",
             "neither ocs_director nor ocs_next_hop is set, but table %d row %d (figure %d) needs the "
             "next hop server's address" % (row["table"], row["row"], row["figure"]))
    return []
