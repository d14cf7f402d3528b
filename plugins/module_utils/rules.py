# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The FIREWALL and PFRULE of docs/policy-model.md, parsed and validated once for every backend.

:func:`parse_firewall` turns a FIREWALL dict into a :class:`Firewall` holding typed
:class:`Rule` objects; every backend renders from those and never looks at the raw dicts again.
Each error is a :class:`FirewallError` (a backend may raise a subclass) whose message starts
with ``firewall <name>: <path>``, so it names the firewall and the parameter. Wrong types give
such an error too, never a traceback. Name checks match the whole string (``fullmatch``): a
trailing newline does not pass.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.ocs.edge_firewall.plugins.module_utils.platforms import PLATFORMS

PROTOCOLS = ("tcp", "udp")
MODES = ("network", "host")
POLICIES = ("accept", "drop")
# Rule ids end up in comments, Windows rule names and pfSense descriptions.
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}")
_PORT_RE = re.compile(r" *(\d{1,5}) *(?:- *(\d{1,5}) *)?")   # spaces allowed, never a newline

# Comments of the base rules every Linux backend writes (a backend adds its own keys).
BASE_COMMENTS = {
    "lo": "ocs base: loopback",
    "est": "ocs base: established,related (replies of allowed connections)",
    "inv": "ocs base: conntrack invalid",
    "mgmt": "ocs management: controller/SSH to this firewall (ocs_management_networks)",
    "echo": "ocs base: icmp echo-request",
}


class FirewallError(Exception):
    """The one base of the backends' errors: a FIREWALL that cannot be parsed, rendered or applied."""


def where(name, path):
    """'firewall <name>: <path>', the prefix of every validation message."""
    return "firewall %s: %s" % (name or "?", path)


class Rule(object):
    """One PFRULE, validated. src/dst: tuple of ip_network, None = any; sport/dport: tuple of
    (lo, hi), None = any; chain: forward (network mode) or input/output (host mode)."""

    __slots__ = ("id", "protocol", "src", "dst", "sport", "dport", "src_zone", "dst_zone", "chain",
                 "comment", "extra")

    def __init__(self, **fields):
        for slot in self.__slots__:
            setattr(self, slot, fields.get(slot))

    def __eq__(self, other):
        return isinstance(other, Rule) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "Rule(%s)" % ", ".join("%s=%r" % (s, getattr(self, s)) for s in self.__slots__[:-1])


class Firewall(object):
    """A parsed FIREWALL: name, platform, mode, interfaces {zone: name}, management
    {"sources": (networks), "ports": ((lo, hi), ...)} and rules (list of Rule)."""

    def __init__(self, name, platform, mode, interfaces, management, rules):
        self.name, self.platform, self.mode = name, platform, mode
        self.interfaces, self.management, self.rules = interfaces, management, rules


# --------------------------------------------------------------------------- values

def networks(values, name, path):
    """An address list -> tuple of ip_network as listed, or None (any)."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values:
        raise FirewallError("%s must be null (any) or a non-empty list of IP addresses/CIDRs, got %r"
                            % (where(name, path), values))
    nets = []
    for i, val in enumerate(values):
        if not isinstance(val, str):
            raise FirewallError("%s[%d]: %r is not an IP address or network (a string)" % (where(name, path), i, val))
        try:
            nets.append(ipaddress.ip_network(val.strip(), strict=True))
        except ValueError as exc:
            raise FirewallError("%s[%d]: %r is not a valid IP address or network (%s)"
                                % (where(name, path), i, val, exc))
    return tuple(nets)


def ports(values, name, path):
    """A port list ('N', 'N-M', ints) -> tuple of (lo, hi) as listed, or None (any)."""
    if values is None:
        return None
    if isinstance(values, (str, int)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values:
        raise FirewallError("%s must be null (any) or a non-empty list of ports 'N' or 'N-M', got %r"
                            % (where(name, path), values))
    out = []
    for i, val in enumerate(values):
        m = _PORT_RE.fullmatch(str(val)) if isinstance(val, (str, int)) and not isinstance(val, bool) else None
        lo = int(m.group(1)) if m else 0
        hi = int(m.group(2)) if m and m.group(2) else lo
        if not m or not 1 <= lo <= hi <= 65535:
            raise FirewallError("%s[%d]: %r is not a port 1-65535 or a range N-M with N <= M"
                                % (where(name, path), i, val))
        out.append((lo, hi))
    return tuple(out)


def merge(intervals):
    """Merge overlapping/adjacent (lo, hi) integer intervals.

    Items may carry a leading key, e.g. (ip version, lo, hi): only items with the same key merge.
    """
    out = []
    for item in sorted(intervals):
        if out and item[:-2] == out[-1][:-2] and item[-2] <= out[-1][-1] + 1:
            if item[-1] > out[-1][-1]:
                out[-1] = out[-1][:-1] + (item[-1],)
        else:
            out.append(tuple(item))
    return tuple(out)


def uncovered(nets):
    """Sorted networks without duplicates and without those inside another listed network
    (one IP version). The rest stays as written: collapse_addresses would turn two
    neighbouring servers into a /31, hard to read."""
    nets = sorted(set(nets))
    return [n for n in nets if not any(o != n and n.subnet_of(o) for o in nets)]


def check_families(nets, spec, name, path):
    """Refuse an address of an IP version the platform cannot enforce (never drop it silently)."""
    for i, net in enumerate(nets or ()):
        if net.version not in spec.families:
            text = net.network_address if net.prefixlen == net.max_prefixlen else net
            raise FirewallError("%s[%d]: %s is an IPv%d address; the %s backend enforces IPv%s only. "
                                "Use ocs_firewall_platform: nftables for a firewall with IPv6 addresses."
                                % (where(name, path), i, text, net.version, spec.title,
                                   "/".join(map(str, spec.families))))


def check_comment(comment, name, path, max_bytes, tool):
    """A rule's comment -> str; it must be there, fit the tool's limit (None: no limit) and hold
    no '"', '\\' or newline (rule texts and descriptions quote it)."""
    if comment is None or not isinstance(comment, (str, int, float)) or not str(comment).strip():
        raise FirewallError("%s: every rule needs a comment (seed table, figure, role)" % where(name, path))
    comment = str(comment)
    if '"' in comment or "\n" in comment or "\\" in comment:
        raise FirewallError("%s: comment %r contains a double quote, backslash or newline, which %s "
                            "comments cannot hold" % (where(name, path), comment, tool))
    if max_bytes and len(comment.encode("utf-8")) > max_bytes:
        raise FirewallError("%s: comment is %d bytes, %s allows at most %d: %r"
                            % (where(name, path), len(comment.encode("utf-8")), tool, max_bytes, comment))
    return comment


# --------------------------------------------------------------------------- rules

def _chain(pfrule, mode, name, path):
    chain = pfrule.get("chain") or ("forward" if mode == "network" else None)
    allowed = ("forward",) if mode == "network" else ("input", "output")
    if chain not in allowed:
        raise FirewallError("%s.chain: %r is not valid in %s mode (expected %s)"
                            % (where(name, path), chain, mode, " or ".join(allowed)))
    return chain


def _zone(pfrule, key, name, path):
    zone = pfrule.get(key)
    if zone is not None and not (isinstance(zone, str) and ID_RE.fullmatch(zone)):
        raise FirewallError("%s.%s: %r is not a zone name" % (where(name, path), key, zone))
    return zone


def parse_rule(pfrule, index, name, mode):
    """One PFRULE dict -> Rule (every field validated; the message names rules[i] (id))."""
    path = "rules[%d]" % index
    if not isinstance(pfrule, dict):
        raise FirewallError("%s must be a dict (PFRULE), got %r" % (where(name, path), pfrule))
    rid = pfrule.get("id")
    if rid is not None and not (isinstance(rid, str) and ID_RE.fullmatch(rid)):
        raise FirewallError("%s.id: %r is not a rule id like central-t20-f14-out" % (where(name, path), rid))
    path = "rules[%d] (%s)" % (index, rid or "?")
    chain = _chain(pfrule, mode, name, path)
    proto = pfrule.get("protocol")
    if proto not in PROTOCOLS:
        raise FirewallError("%s.protocol: %r is not supported (tcp or udp)" % (where(name, path), proto))
    comment = pfrule.get("comment")
    extra = dict((k, v) for k, v in pfrule.items() if k not in Rule.__slots__)
    return Rule(id=rid or "rules[%d]" % index, protocol=proto,
                src=networks(pfrule.get("src"), name, path + ".src"),
                dst=networks(pfrule.get("dst"), name, path + ".dst"),
                sport=ports(pfrule.get("sport"), name, path + ".sport"),
                dport=ports(pfrule.get("dport"), name, path + ".dport"),
                src_zone=_zone(pfrule, "src_zone", name, path), dst_zone=_zone(pfrule, "dst_zone", name, path),
                chain=chain, comment=None if comment is None else str(comment), extra=extra)


def _interfaces(value, spec, name):
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise FirewallError("%s must be a dict zone -> interface name" % where(name, "interfaces"))
    out = {}
    for zone, ifname in value.items():
        if not isinstance(ifname, str) or not spec.ifname_re.fullmatch(ifname):
            raise FirewallError("%s: interface %r is not a valid %s interface name"
                                % (where(name, "interfaces.%s" % zone), ifname, spec.title))
        out[str(zone)] = ifname
    return out


def _management(value, spec, name):
    if value is None:
        if spec.management_required:
            raise FirewallError("%s is missing: the management network must always reach the firewall"
                                % where(name, "management"))
        return {"sources": (), "ports": ((22, 22),)}
    if not isinstance(value, dict):
        raise FirewallError("%s must be a dict {sources: [...], ports: [...]}" % where(name, "management"))
    sources = networks(value.get("sources") or None, name, "management.sources") or ()
    if not sources and spec.management_required:
        raise FirewallError("%s is empty: the rule set must always let the management network reach "
                            "the firewall (set ocs_management_networks)" % where(name, "management.sources"))
    check_families(sources, spec, name, "management.sources")
    return {"sources": sources, "ports": ports(value.get("ports") or ["22"], name, "management.ports")}


def _check_rule(rule, spec, interfaces, name, index):
    path = "rules[%d] (%s)" % (index, rule.id)
    check_families(rule.src, spec, name, path + ".src")
    check_families(rule.dst, spec, name, path + ".dst")
    if spec.comment_max is not None:
        check_comment(rule.comment, name, path + ".comment", spec.comment_max, spec.title)
    for key in ("src_zone", "dst_zone"):
        zone = getattr(rule, key)
        if spec.interfaces_required and zone is not None and zone not in interfaces:
            raise FirewallError("%s.%s: zone %r has no interface in interfaces" % (where(name, path), key, zone))


def parse_firewall(firewall, name, platform):
    """A FIREWALL dict -> Firewall, validated against the PLATFORMS entry of ``platform``."""
    spec = PLATFORMS.get(platform)
    if spec is None:
        raise FirewallError("%s: %r is not one of %s" % (where(name, "platform"), platform, ", ".join(PLATFORMS)))
    if not isinstance(firewall, dict):
        raise FirewallError("%s must be a dict (FIREWALL of docs/policy-model.md)" % where(name, "firewall"))
    found = firewall.get("platform", platform)
    if found != platform:
        raise FirewallError("%s: platform is %r; this module only enforces %s firewalls"
                            % (where(name, "firewall.platform"), found, platform))
    mode = firewall.get("mode", spec.modes[0])
    if mode not in spec.modes:
        raise FirewallError("%s: %r is not %s" % (where(name, "mode"), mode, " or ".join(spec.modes)))
    interfaces = _interfaces(firewall.get("interfaces"), spec, name)
    pfrules = firewall.get("rules")
    if pfrules is None:
        pfrules = []
    if not isinstance(pfrules, list):
        raise FirewallError("%s must be a list of PFRULE dicts" % where(name, "rules"))
    management = _management(firewall.get("management"), spec, name)
    rules = [parse_rule(pfrule, i, name, mode) for i, pfrule in enumerate(pfrules)]
    for i, rule in enumerate(rules):
        _check_rule(rule, spec, interfaces, name, i)
    return Firewall(name, platform, mode, interfaces, management, rules)
