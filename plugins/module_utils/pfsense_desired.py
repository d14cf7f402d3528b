# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pfSense backend, step "desired": FIREWALL (docs/policy-model.md) -> the items config.xml must hold.

Pure data, no XML: aliases, filter rules (the policy's pass rules, then the management pass and
the default-deny block rules of each interface) and outbound "do not NAT" rules. Every input is
checked here, before anything is read or written: wrong types, unknown zones, interface ids
pfSense would not match, characters XML cannot carry.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re
import zlib

from ansible_collections.ocs.edge_firewall.plugins.module_utils.platforms import PLATFORMS
from ansible_collections.ocs.edge_firewall.plugins.module_utils.pfsense_xml import (
    ALIAS_PREFIX, MARKER, PfSenseError, check_xml_text)
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import parse_firewall

ALIAS_NAME_MAX = 31           # is_validaliasname(): under 32 characters
PROTOCOLS = ("tcp", "udp")
ZONES = ("internet", "perimeter", "internal")
# pfSense interface ids are lower case (wan, lan, optN; PHP array keys, case-sensitive:
# filter.inc looks rules' <interface> up in $FilterIflist as written); "OPT1" matches nothing.
IFACE_RE = PLATFORMS["pfsense"].ifname_re
PLACEMENTS = ("top", "separator", "bottom")
NO_NAT_SCOPES = ("perimeter", "av_edge")
DEFAULT_OPTIONS = {"default_deny": True, "placement": "top", "placement_separator": "",
                   "no_nat": True, "no_nat_scope": "perimeter"}


def _where(name, path):
    return "firewall %s: %s" % (name, path)


def _address_entries(addresses, where):
    """-> (alias type, entries) for a list of IPs/CIDRs; host when every entry is one address."""
    if isinstance(addresses, str) or not isinstance(addresses, (list, tuple)):
        raise PfSenseError("%s must be null (any) or a list of IP addresses, got %r" % (where, addresses))
    nets = []
    for item in addresses:
        try:
            net = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise PfSenseError("%s: %r is not an IP address or network" % (where, item))
        if net.version != 4:
            raise PfSenseError("%s: %s is IPv6; the pfSense rules are ipprotocol inet (IPv4)" % (where, item))
        nets.append(net)
    nets = sorted(set(nets), key=lambda n: (int(n.network_address), n.prefixlen))
    if all(n.num_addresses == 1 for n in nets):
        return "host", ["%s" % n.network_address for n in nets]
    return "network", ["%s" % n for n in nets]


def _alias_name(base, content_key):
    name = re.sub(r"[^A-Za-z0-9_]", "_", ALIAS_PREFIX + base)
    if len(name) > ALIAS_NAME_MAX:
        digest = "%08x" % (zlib.crc32(content_key.encode("utf-8")) & 0xFFFFFFFF)
        name = name[:ALIAS_NAME_MAX - 9] + "_" + digest
    return name


class AliasBook(object):
    """The managed aliases: one per distinct content, named after the first rule that needs it."""

    def __init__(self):
        self.aliases = {}
        self._by_content = {}

    def add(self, base, entries, atype, rule_id, what):
        key = (atype, tuple(entries))
        if key in self._by_content:
            alias = self.aliases[self._by_content[key]]
            if rule_id not in alias["rules"]:
                alias["rules"].append(rule_id)
            return alias["name"]
        name = _alias_name(base, "%s %s" % (atype, " ".join(entries)))
        n = 2
        while name in self.aliases:
            name = _alias_name("%s_%d" % (base, n), "%s %s %d" % (atype, " ".join(entries), n))
            n += 1
        self.aliases[name] = {"name": name, "type": atype, "address": list(entries), "what": what,
                              "rules": [rule_id]}
        self._by_content[key] = name
        return name

    def addresses(self, base, addrs, rule_id, where):
        atype, entries = _address_entries(addrs, where)
        return self.add(base, entries, atype, rule_id, "addresses")

    def port(self, ranges, rule_id):
        """(lo, hi) ranges -> a single port goes into the rule; ranges and lists become a port
        alias (a:b entries)."""
        ranges = sorted(set(ranges))
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            return "%d" % ranges[0][0]
        entries = ["%d" % lo if lo == hi else "%d:%d" % (lo, hi) for lo, hi in ranges]
        base = "ports_" + "_".join(e.replace(":", "_") for e in entries)
        return self.add(base, entries, "port", rule_id, "ports")

    def done(self):
        for alias in self.aliases.values():
            alias["descr"] = "%s %s used by %s" % (MARKER, alias.pop("what"), ", ".join(alias["rules"]))
        return self.aliases


def end(kind="any", value="", port="", negate=False):
    """A rule's source/destination: kind any | address (IP or alias) | network (pfSense macro)."""
    return (kind, value, port, negate)


def description(rule_id, words, tail):
    """``<id> <words> [ocs.edge_firewall] <tail>``: pf labels/logs keep the first 52 characters
    (pfSense 2.7; 57 on 2.8), so the id and its table/figure come first, the marker after them.
    Whitespace is collapsed: pfSense trims values when it reads them, a trailing space or CR
    would otherwise make every run rewrite the file."""
    return " ".join(("%s %s %s %s" % (rule_id, words, MARKER, tail)).split())


def check_options(options, name):
    opts = dict(DEFAULT_OPTIONS)
    opts.update(dict((k, v) for k, v in (options or {}).items() if v is not None))
    if opts["placement"] not in PLACEMENTS:
        raise PfSenseError("%s: %r is not one of %s" % (_where(name, "placement"), opts["placement"],
                                                        ", ".join(PLACEMENTS)))
    if opts["placement"] == "separator" and not str(opts["placement_separator"]).strip():
        raise PfSenseError("%s: placement separator needs placement_separator, the text of one of your "
                           "separators" % _where(name, "placement_separator"))
    if opts["no_nat_scope"] not in NO_NAT_SCOPES:
        raise PfSenseError("%s: %r is not one of %s" % (_where(name, "no_nat_scope"), opts["no_nat_scope"],
                                                        ", ".join(NO_NAT_SCOPES)))
    check_xml_text(str(opts["placement_separator"]), _where(name, "placement_separator"))
    return opts


def check_firewall(firewall, name):
    """The FIREWALL -> rules.Firewall (the contract's typed parse: types, ids, addresses, ports,
    zones with an interface), after the checks only config.xml needs: characters XML cannot
    carry, zone names, pfSense interface ids (with the lower-case hint)."""
    if isinstance(firewall, dict):
        check_xml_text(firewall, _where(name, "firewall"))
        interfaces = firewall.get("interfaces")
        for zone, iface in (interfaces.items() if isinstance(interfaces, dict) else ()):
            if zone not in ZONES:
                raise PfSenseError("%s: %r is not a zone (%s)" % (_where(name, "ocs_firewall_interfaces"), zone,
                                                                 ", ".join(ZONES)))
            if not isinstance(iface, str) or not IFACE_RE.fullmatch(iface):
                hint = " (pfSense ids are lower case: %r)" % iface.lower() if isinstance(iface, str) and \
                    IFACE_RE.fullmatch(iface.lower()) else ""
                raise PfSenseError("%s: %r is not a pfSense interface id (wan, lan, optN; the id, not the "
                                   "description)%s" % (_where(name, "ocs_firewall_interfaces.%s" % zone), iface, hint))
    return parse_firewall(firewall, name, "pfsense")


def _nets(nets):
    return [str(n) for n in nets]


def pass_rule(rule, pos, interfaces, book, name):
    """One typed Rule -> the spec of its pass rule on the interface of its src_zone."""
    rid = rule.id
    where = _where(name, "rules[%d] (%s)" % (pos, rid))
    if rule.src_zone not in interfaces:
        raise PfSenseError("%s: its source zone %r has no interface; set ocs_firewall_interfaces.%s "
                           "(pfSense filters on the interface where the packet enters)"
                           % (where, rule.src_zone, rule.src_zone))
    ends = {}
    for side, akey, nets, ranges in (("source", "src", rule.src, rule.sport),
                                     ("destination", "dst", rule.dst, rule.dport)):
        value = book.addresses("%s_%s" % (rid, akey), _nets(nets), rid, "%s: %s" % (where, akey)) if nets else ""
        port = book.port(ranges, rid) if ranges else ""
        ends[side] = end("address" if nets else "any", value, port)
    return _spec(rid, interfaces[rule.src_zone], rule.src_zone, "pass", rule.protocol, ends["source"],
                 ends["destination"], _pass_descr(rule, rid))


def _pass_descr(rule, rid):
    comment = " ".join(str(rule.comment or "").split())
    prefix = "ocs %s " % rid
    tail = comment[len(prefix):] if comment.startswith(prefix) else comment
    words = ""
    if rule.extra.get("table") is not None and rule.extra.get("figure") is not None:
        words = "table %s figure %s" % (rule.extra["table"], rule.extra["figure"])
        tail = tail.replace(words, "", 1)
    return description(rid, words, tail or "ocs edge policy")


def _spec(rid, iface, zone, rtype, proto, source, destination, descr):
    return {"key": (iface, rid), "id": rid, "interface": iface, "zone": zone, "type": rtype,
            "protocol": proto, "source": source, "destination": destination, "descr": descr}


def no_nat_addresses(firewall, rules, scope, name):
    """The perimeter server addresses that must keep their own address (no NAT), sorted.

    From the FIREWALL's ``no_nat`` ([{address, roles}], docs/policy-model.md); a FIREWALL without
    it (hand-written) gets the perimeter end of its rules (local addresses, with the rule's role).
    ``scope`` av_edge keeps the A/V Edge addresses only (the page's minimum).
    """
    entries = firewall.get("no_nat")
    if entries is None:
        entries = []
        for rule in rules:
            for zone, nets in ((rule.src_zone, rule.src), (rule.dst_zone, rule.dst)):
                if zone == "perimeter" and nets:
                    entries.extend({"address": a, "roles": [rule.extra.get("server_role")]} for a in _nets(nets))
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "address" in e for e in entries):
        raise PfSenseError("%s must be a list of {address, roles} dicts" % _where(name, "no_nat"))
    wanted = [e["address"] for e in entries
              if scope == "perimeter" or "av_edge" in (e.get("roles") or [])]
    return _address_entries(wanted, _where(name, "no_nat"))[1] if wanted else []


def _site(firewall):
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(firewall.get("site") or "ocs"))


def deny_rules(firewall, parsed, perimeter_hosts, self_ports, book, name):
    """After the pass rules of each interface: new connections between the firewall's zones that
    the policy does not allow are blocked (first match wins on the interface a packet enters).

    Into the perimeter (from internet or internal): block to the perimeter interface's network and
    to the perimeter servers the policy names; a management pass to the firewall itself comes
    first, since the perimeter network holds the firewall's own address there. Out of the
    perimeter: block to anything but the firewall itself (``! (self)``).
    """
    site = _site(firewall)
    interfaces = parsed.interfaces
    sources = _nets(parsed.management["sources"])
    ports = list(parsed.management["ports"]) + [(int(p), int(p)) for p in self_ports]
    perimeter = interfaces.get("perimeter")
    out = []
    for zone in [z for z in ZONES if z in interfaces]:
        iface = interfaces[zone]
        if zone == "perimeter":
            other = "-".join(z for z in ZONES if z in interfaces and z != "perimeter") or "beyond"
            rid = "%s-deny-perimeter-%s" % (site, other)
            out.append(_spec(rid, iface, zone, "block", None, end(), end("network", "(self)", "", True),
                             description(rid, "", "default deny: new connections perimeter to %s" % other)))
            continue
        if perimeter is None:
            continue
        if sources:
            rid = "%s-mgmt-%s" % (site, zone)
            src = book.addresses("%s_mgmt" % site, sources, rid, _where(name, "management.sources"))
            port = book.port(ports, rid)
            out.append(_spec(rid, iface, zone, "pass", "tcp", end("address", src), end("network", "(self)", port),
                             description(rid, "", "management to this firewall (ocs_management_networks)")))
        rid = "%s-deny-%s-perimeter" % (site, zone)
        out.append(_spec(rid, iface, zone, "block", None, end(), end("network", perimeter),
                         description(rid, "", "default deny: new connections %s to perimeter network" % zone)))
        if perimeter_hosts:
            rid += "-hosts"
            alias = book.addresses("%s_perimeter" % site, perimeter_hosts, rid, _where(name, "no_nat"))
            out.append(_spec(rid, iface, zone, "block", None, end(), end("address", alias),
                             description(rid, "", "default deny: new connections %s to perimeter servers" % zone)))
    return out


def nonat_rules(firewall, interfaces, addresses, book, name):
    """Outbound NAT "do not NAT" rules: on each interface toward internet/internal the servers'
    addresses as source, on the perimeter interface as destination (both directions of the page's
    "must not act as a NAT for this IP address")."""
    if not addresses:
        return []
    site = _site(firewall)
    out = []
    for zone in [z for z in ZONES if z in interfaces]:
        rid = "%s-nonat-%s" % (site, zone)
        alias = book.addresses("%s_nonat" % site, addresses, rid, _where(name, "no_nat"))
        src, dst = ("any", alias) if zone == "perimeter" else (alias, "any")
        out.append({"id": rid, "interface": interfaces[zone], "zone": zone, "source": src, "destination": dst,
                    "descr": description(rid, "", "no NAT for the perimeter servers (page: A/V Edge not NATed)")})
    return out


def desired_state(firewall, name="firewall", options=None, self_ports=()):
    """FIREWALL -> {"aliases": {name: spec}, "rules": [spec], "nat": [spec], "interfaces", "options"}.

    rule spec: {"key", "id", "interface", "zone", "type", "protocol", "source", "destination",
    "descr"}; source/destination: :func:`end` tuples. ``self_ports`` are the firewall's own GUI/SSH
    ports (what its anti-lockout rule opens), added to the management pass.
    """
    opts = check_options(options, name)
    parsed = check_firewall(firewall, name)
    interfaces, rules = parsed.interfaces, parsed.rules
    book = AliasBook()
    specs = [pass_rule(rule, pos, interfaces, book, name) for pos, rule in enumerate(rules)]
    everyone = no_nat_addresses(firewall, rules, "perimeter", name)
    if opts["default_deny"]:
        specs += deny_rules(firewall, parsed, everyone, self_ports, book, name)
    seen = set()
    for spec in specs:
        if spec["key"] in seen:
            raise PfSenseError("%s: two rules on %s have the same id %r" % (_where(name, "rules"), spec["interface"],
                                                                           spec["id"]))
        seen.add(spec["key"])
    nat = []
    if opts["no_nat"]:
        nat = nonat_rules(firewall, interfaces, no_nat_addresses(firewall, rules, opts["no_nat_scope"], name),
                          book, name)
    return {"aliases": book.done(), "rules": specs, "nat": nat, "interfaces": interfaces, "options": opts}
