# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pfSense backend of ocs.edge_firewall: FIREWALL (docs/policy-model.md) -> config.xml.

The collection keeps its own filter rules and aliases in pfSense's ``/cf/conf/config.xml``
and nothing else:

* a **managed rule** is a ``<filter><rule>`` whose ``descr`` starts with :data:`MARKER`;
* a **managed alias** is an ``<aliases><alias>`` whose ``name`` starts with
  :data:`ALIAS_PREFIX`;
* a **managed separator** is a ``<filter><separator><IF><sepN>`` whose ``text`` starts with
  :data:`MARKER` (it heads the managed block of that interface).

:func:`reconcile` takes the parsed file and a FIREWALL and returns the new tree: every managed
item is removed and the desired ones are put back as one block at the top of each interface
(before the first unmanaged rule of that interface), managed aliases as one block at the end of
``<aliases>`` sorted by name. Unmanaged rules, aliases and separators keep their content and
their order; separators are re-pointed (``frK`` is an index among the rules of an interface) so
they stay above the same unmanaged rule.

:func:`dump_config` writes the tree the way pfSense's ``dump_xml_config()`` does (xmlparse.inc):
``<?xml version="1.0"?>``, tab indent, empty values as ``<x></x>``, values HTML-escaped, and
elements whose name starts with ``descr``, ``detail``, ``text``, ``username``, ``state``, ...
wrapped in CDATA. :func:`parse_config` reads it the way ``parse_xml_config()`` does (values
trimmed of tabs/newlines and HTML-unescaped). Two trees are equal when their dumps are equal,
so the decision "write or not" never depends on how the file happened to be formatted.

Trackers are derived from the interface and the rule id (:func:`tracker_for`), in a range GUI
trackers (Unix times) do not reach before 2099, made unique against every tracker in the file:
the same policy gives the same bytes on every run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import errno
import fcntl
import html
import ipaddress
import os
import re
import shutil
import xml.etree.ElementTree as ET
import zlib

from ansible_collections.ocs.edge_firewall.plugins.module_utils import backend

MARKER = "[ocs.edge_firewall]"
ALIAS_PREFIX = "OCS_"
TRACKER_BASE = 4100000000     # pf ridentifier is u_int32 (max 4294967295); GUI uses Unix time
TRACKER_SPAN = 100000000
ALIAS_NAME_MAX = 31           # is_validaliasname(): under 32 characters
DEFAULT_USERNAME = "ocs.edge_firewall (Ansible)"
PROTOCOLS = ("tcp", "udp")
ZONES = ("internet", "perimeter", "internal")
IFACE_RE = re.compile(r"^(wan|lan|opt[0-9]+|[a-z][a-z0-9_]{0,30})$")
PORT_RE = re.compile(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?$")
SEP_ROW_RE = re.compile(r"^fr([0-9]+)$")

# xmlparse.inc is_cdata_entity(): element names starting with one of these get CDATA.
CDATA_PREFIXES = (
    "auth_pass", "auth_prompt", "auth_user", "certca", "certname", "city", "common_name",
    "descr", "detail", "email", "encryption_password", "ldap_attr",
    "ldap_authcn", "ldap_basedn", "ldap_bind",
    "ldap_extended_query", "login_banner", "organization", "password", "rangedescr",
    "state", "text", "username",
)


class PfSenseError(Exception):
    """A FIREWALL or a config.xml this module cannot handle; the message says which and why."""


# --------------------------------------------------------------------------- XML I/O

def is_cdata(name):
    return name.startswith(CDATA_PREFIXES)


def _entities(value):
    """htmlentities() for the characters that matter in XML (ENT_QUOTES, PHP >= 8.1).

    Non-ASCII characters are written as UTF-8 rather than as HTML named entities, which
    expat (and ElementTree) could not read back outside CDATA.
    """
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#039;"))


def _value(text):
    """What parse_xml_config() keeps of a text node: tabs/newlines trimmed, entities decoded."""
    if text is None:
        return ""
    text = text.strip("\t\n\r")
    if text.strip(" ") == "":
        return ""
    return html.unescape(text)


def _normalise(elem):
    for child in elem:
        _normalise(child)
    elem.text = None if len(elem) else _value(elem.text)
    elem.tail = None
    elem.attrib.clear()


def parse_config(data):
    """bytes/str of config.xml -> root Element (``<pfsense>``) with values as pfSense reads them."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise PfSenseError("config.xml does not parse as XML: %s" % exc)
    if root.tag != "pfsense":
        raise PfSenseError("config.xml: the root element is <%s>, not <pfsense>" % root.tag)
    _normalise(root)
    return root


def _dump(elem, indent, out):
    pad = "\t" * indent
    tag = elem.tag
    if len(elem):
        out.append("%s<%s>\n" % (pad, tag))
        for child in elem:
            _dump(child, indent + 1, out)
        out.append("%s</%s>\n" % (pad, tag))
        return
    value = elem.text or ""
    if value == "":
        out.append("%s<%s></%s>\n" % (pad, tag, tag))
    elif is_cdata(tag):
        # htmlentities() inside CDATA too, as pfSense does; "]]>" cannot survive CDATA unescaped
        out.append("%s<%s><![CDATA[%s]]></%s>\n" % (pad, tag, _entities(value), tag))
    else:
        out.append("%s<%s>%s</%s>\n" % (pad, tag, _entities(value), tag))


def dump_config(root):
    """root Element -> bytes, as pfSense's dump_xml_config() writes config.xml."""
    out = ['<?xml version="1.0"?>\n', "<%s>\n" % root.tag]
    for child in root:
        _dump(child, 1, out)
    out.append("</%s>\n" % root.tag)
    return "".join(out).encode("utf-8")


def dump_element(elem):
    out = []
    _dump(elem, 0, out)
    return "".join(out)


def _leaf(parent, tag, value=""):
    child = ET.SubElement(parent, tag)
    child.text = value
    return child


def _text(elem, path):
    found = elem.find(path)
    return "" if found is None or found.text is None else found.text


# --------------------------------------------------------------------------- desired state

def _alias_name(base, content_key):
    name = re.sub(r"[^A-Za-z0-9_]", "_", ALIAS_PREFIX + base)
    if len(name) > ALIAS_NAME_MAX:
        digest = "%08x" % (zlib.crc32(content_key.encode("utf-8")) & 0xFFFFFFFF)
        name = name[:ALIAS_NAME_MAX - 9] + "_" + digest
    return name


def _address_entries(addresses, where):
    """-> (alias type, entries) for a list of IPs/CIDRs; host when every entry is one address."""
    nets = []
    for text in addresses:
        try:
            net = ipaddress.ip_network(str(text), strict=False)
        except ValueError:
            raise PfSenseError("%s: %r is not an IP address or network" % (where, text))
        if net.version != 4:
            raise PfSenseError("%s: %s is IPv6; the pfSense rules are ipprotocol inet (IPv4)" % (where, text))
        nets.append(net)
    nets = sorted(set(nets), key=lambda n: (int(n.network_address), n.prefixlen))
    if all(n.num_addresses == 1 for n in nets):
        return "host", ["%s" % n.network_address for n in nets]
    return "network", ["%s" % n for n in nets]


def _ports(ports, where):
    out = []
    for text in ports:
        m = PORT_RE.match(str(text))
        if not m:
            raise PfSenseError("%s: %r is not a port or a port range N-M" % (where, text))
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if not (1 <= lo <= hi <= 65535):
            raise PfSenseError("%s: %r is not a port or a port range within 1-65535" % (where, text))
        out.append((lo, hi))
    return sorted(set(out))


def tracker_for(iface, rule_id):
    """Deterministic tracker of a managed rule, before uniqueness probing."""
    return TRACKER_BASE + zlib.crc32(("%s|%s" % (iface, rule_id)).encode("utf-8")) % TRACKER_SPAN


def desired_state(firewall, name="firewall"):
    """FIREWALL -> {"aliases": {name: spec}, "rules": [spec]} (pure data, no XML yet).

    alias spec: {"name", "type", "address": [entries], "descr"}
    rule spec: {"key", "id", "interface", "zone", "protocol", "source": (kind, value, port),
    "destination": (...), "descr"}; kind is "any" or "address" (an alias name).
    """
    if not isinstance(firewall, dict):
        raise PfSenseError("firewall %s: the FIREWALL must be a dict (docs/policy-model.md)" % name)
    platform = firewall.get("platform", "pfsense")
    if platform != "pfsense":
        raise PfSenseError("firewall %s: platform is %r, not pfsense" % (name, platform))
    if firewall.get("mode", "network") != "network":
        raise PfSenseError("firewall %s: mode %r: pfSense firewalls are network firewalls (mode network)"
                           % (name, firewall.get("mode")))
    interfaces = firewall.get("interfaces") or {}
    for zone, iface in interfaces.items():
        if not isinstance(iface, str) or not IFACE_RE.match(iface):
            raise PfSenseError("firewall %s: ocs_firewall_interfaces.%s: %r is not a pfSense interface id "
                               "(wan, lan, optN)" % (name, zone, iface))
    aliases = {}
    by_content = {}
    rules = []
    seen = set()

    def alias_for(kind, base, entries, atype, rule_id, what):
        key = (atype, tuple(entries))
        if key in by_content:
            alias = aliases[by_content[key]]
            if rule_id not in alias["rules"]:
                alias["rules"].append(rule_id)
            return alias["name"]
        aname = _alias_name(base, "%s %s" % (atype, " ".join(entries)))
        n = 2
        while aname in aliases:
            aname = _alias_name("%s_%d" % (base, n), "%s %s %d" % (atype, " ".join(entries), n))
            n += 1
        aliases[aname] = {"name": aname, "type": atype, "address": list(entries), "what": what,
                          "rules": [rule_id]}
        by_content[key] = aname
        return aname

    for pos, rule in enumerate(firewall.get("rules") or []):
        rid = str(rule.get("id") or "rule%d" % pos)
        where = "firewall %s: rule %s" % (name, rid)
        zone = rule.get("src_zone")
        if zone not in interfaces:
            raise PfSenseError("%s: its source zone %r has no interface; set ocs_firewall_interfaces.%s "
                               "(pfSense filters on the interface where the packet enters)" % (where, zone, zone))
        iface = interfaces[zone]
        proto = rule.get("protocol")
        if proto not in PROTOCOLS:
            raise PfSenseError("%s: protocol %r is not one of %s" % (where, proto, ", ".join(PROTOCOLS)))
        ends = {}
        for side, akey, pkey in (("source", "src", "sport"), ("destination", "dst", "dport")):
            addrs, ports = rule.get(akey), rule.get(pkey)
            if addrs is None:
                kind, value = "any", ""
            else:
                if not addrs:
                    raise PfSenseError("%s: %s is an empty list (null means any)" % (where, akey))
                atype, entries = _address_entries(addrs, "%s: %s" % (where, akey))
                value = alias_for("address", "%s_%s" % (rid, akey), entries, atype, rid, "addresses")
                kind = "address"
            port = ""
            if ports is not None:
                if not ports:
                    raise PfSenseError("%s: %s is an empty list (null means any)" % (where, pkey))
                ranges = _ports(ports, "%s: %s" % (where, pkey))
                if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
                    port = "%d" % ranges[0][0]
                else:
                    # a port alias for ranges and lists (alias entries write ranges as a:b)
                    entries = ["%d" % lo if lo == hi else "%d:%d" % (lo, hi) for lo, hi in ranges]
                    base = "ports_" + "_".join(e.replace(":", "_") for e in entries)
                    port = alias_for("port", base, entries, "port", rid, "ports")
            ends[side] = (kind, value, port)
        descr = "%s %s" % (MARKER, rule.get("comment") or "ocs %s" % rid)
        key = (iface, descr)
        if key in seen:
            raise PfSenseError("%s: two rules on %s have the same description %r" % (where, iface, descr))
        seen.add(key)
        rules.append({"key": key, "id": rid, "interface": iface, "zone": zone, "protocol": proto,
                      "source": ends["source"], "destination": ends["destination"], "descr": descr})
    for alias in aliases.values():
        alias["descr"] = "%s %s used by %s" % (MARKER, alias.pop("what"), ", ".join(alias["rules"]))
    return {"aliases": aliases, "rules": rules, "interfaces": interfaces}


def alias_element(spec):
    alias = ET.Element("alias")
    _leaf(alias, "name", spec["name"])
    _leaf(alias, "type", spec["type"])
    _leaf(alias, "address", " ".join(spec["address"]))
    _leaf(alias, "descr", spec["descr"])
    _leaf(alias, "detail", "||".join("" for _ in spec["address"]) if len(spec["address"]) > 1 else "")
    return alias


def _endpoint(tag, end):
    kind, value, port = end
    elem = ET.Element(tag)
    if kind == "any":
        _leaf(elem, "any")
    else:
        _leaf(elem, "address", value)
    if port:
        _leaf(elem, "port", port)
    return elem


def _stamp(tag, now, username):
    elem = ET.Element(tag)
    _leaf(elem, "time", "%d" % int(now))
    _leaf(elem, "username", username)
    return elem


def rule_element(spec, tracker):
    """A rule as firewall_rules_edit.php saves it (same elements, same order), without created/updated."""
    rule = ET.Element("rule")
    _leaf(rule, "id")
    _leaf(rule, "tracker", "%d" % tracker)
    _leaf(rule, "type", "pass")
    _leaf(rule, "interface", spec["interface"])
    _leaf(rule, "ipprotocol", "inet")
    for tag in ("tag", "tagged", "max", "max-src-nodes", "max-src-conn", "max-src-states", "statetimeout"):
        _leaf(rule, tag)
    _leaf(rule, "statetype", "keep state")
    _leaf(rule, "os")
    _leaf(rule, "protocol", spec["protocol"])
    rule.append(_endpoint("source", spec["source"]))
    rule.append(_endpoint("destination", spec["destination"]))
    _leaf(rule, "descr", spec["descr"])
    return rule


# --------------------------------------------------------------------------- ownership

def is_managed_rule(rule):
    return _text(rule, "descr").startswith(MARKER)


def is_managed_alias(alias):
    return _text(alias, "name").startswith(ALIAS_PREFIX)


def is_floating(rule):
    return rule.find("floating") is not None


def _rules_by_interface(filt):
    """interface id -> its rules in document order; floating rules under "floatingrules"
    (the key pfSense uses for their separators)."""
    out = {}
    for rule in filt.findall("rule"):
        key = "floatingrules" if is_floating(rule) else _text(rule, "interface")
        out.setdefault(key, []).append(rule)
    return out


def _without_stamps(rule):
    clone = copy.deepcopy(rule)
    for tag in ("created", "updated"):
        for found in clone.findall(tag):
            clone.remove(found)
    return dump_element(clone)


def _child(parent, tag, before=None):
    found = parent.find(tag)
    if found is None:
        found = ET.Element(tag)
        found.text = ""
        if before is not None and before in list(parent):
            parent.insert(list(parent).index(before), found)
        else:
            parent.append(found)
    return found


# --------------------------------------------------------------------------- listing

def _describe_end(end):
    if end.find("any") is not None:
        text = "any"
    elif end.find("network") is not None:
        text = "net:" + _text(end, "network")
    else:
        text = _text(end, "address") or "?"
    if end.find("not") is not None:
        text = "!" + text
    port = _text(end, "port")
    return text + (" port %s" % port if port else "")


def describe_rule(rule):
    src, dst = rule.find("source"), rule.find("destination")
    extra = [tag for tag in ("disabled", "log", "floating", "gateway", "sched") if rule.find(tag) is not None]
    return "%s on %s %s %s from %s to %s%s tracker %s %s" % (
        _text(rule, "type") or "?", _text(rule, "interface") or "?", _text(rule, "ipprotocol") or "?",
        _text(rule, "protocol") or "any",
        _describe_end(src) if src is not None else "?", _describe_end(dst) if dst is not None else "?",
        "".join(" [%s]" % t for t in extra), _text(rule, "tracker") or "-",
        _text(rule, "statetype") and "(%s)" % _text(rule, "statetype") or "")


def listing(root):
    """Readable text of the managed aliases and rules of a tree (for --diff)."""
    lines = ["# aliases (name prefix %s)" % ALIAS_PREFIX]
    aliases = root.find("aliases")
    for alias in (aliases.findall("alias") if aliases is not None else []):
        if is_managed_alias(alias):
            lines.append("alias %s %s: %s" % (_text(alias, "name"), _text(alias, "type"),
                                              ", ".join(_text(alias, "address").split())))
    filt = root.find("filter")
    by_if = _rules_by_interface(filt) if filt is not None else {}
    for iface in sorted(by_if):
        rules = by_if[iface]
        managed = [(i, r) for i, r in enumerate(rules) if is_managed_rule(r)]
        if not managed:
            continue
        lines.append("# interface %s: %d rules, managed at positions %s" % (
            iface, len(rules), ",".join("%d" % i for i, _r in managed)))
        for _i, rule in managed:
            lines.append("%s  # %s" % (describe_rule(rule), _text(rule, "descr")[len(MARKER):].strip()))
    return "\n".join(lines) + "\n"


def unified(before, after, before_name="config.xml", after_name="desired"):
    return backend.unified(before, after, before_name, after_name)


# --------------------------------------------------------------------------- reconcile

def reconcile(root, firewall, name="firewall", now=0, username=DEFAULT_USERNAME, state="present"):
    """Compute the new tree. Returns a dict:

    ``root`` (new tree; the input is not modified), ``changed`` (the dumps differ),
    ``created``/``removed``/``updated`` (readable lists), ``before``/``after`` (listings).
    """
    old = root
    new = copy.deepcopy(root)
    if state == "present":
        desired = desired_state(firewall, name)
    else:
        desired = {"aliases": {}, "rules": [], "interfaces": {}}
    result = {"created": [], "removed": [], "updated": [], "warnings": []}

    # interfaces must exist in <interfaces>: pfSense ignores rules on unknown interfaces
    ifaces_elem = new.find("interfaces")
    known = set(child.tag for child in ifaces_elem) if ifaces_elem is not None else set()
    for spec in desired["rules"]:
        if spec["interface"] not in known:
            raise PfSenseError(
                "firewall %s: ocs_firewall_interfaces.%s is %r, but config.xml has no such interface "
                "(it has: %s); use the interface id (wan, lan, optN), not its description"
                % (name, spec["zone"], spec["interface"], ", ".join(sorted(known)) or "none"))

    # ---- aliases: one block at the end of <aliases>, sorted by name
    aliases = new.find("aliases")
    if aliases is None:
        aliases = ET.SubElement(new, "aliases")
        aliases.text = ""
    old_aliases = {}
    for alias in list(aliases):
        if alias.tag == "alias" and is_managed_alias(alias):
            old_aliases.setdefault(_text(alias, "name"), dump_element(alias))
            aliases.remove(alias)
    unmanaged_names = set(_text(a, "name") for a in aliases.findall("alias"))
    for aname in sorted(desired["aliases"]):
        if aname in unmanaged_names:  # cannot happen: the prefix makes it managed
            raise PfSenseError("firewall %s: alias %s exists and is not managed" % (name, aname))
        elem = alias_element(desired["aliases"][aname])
        aliases.append(elem)
        text = dump_element(elem)
        if aname not in old_aliases:
            result["created"].append("alias %s (%s: %s)" % (aname, elem.findtext("type"), elem.findtext("address")))
        elif old_aliases[aname] != text:
            result["updated"].append("alias %s (%s: %s)" % (aname, elem.findtext("type"), elem.findtext("address")))
    for aname in old_aliases:
        if aname not in desired["aliases"]:
            result["removed"].append("alias %s" % aname)
    if len(aliases):
        aliases.text = None
    else:
        aliases.text = ""

    # ---- rules
    filt = new.find("filter")
    if filt is None:
        filt = ET.SubElement(new, "filter")
    old_by_if = _rules_by_interface(filt)
    old_managed = {}
    old_positions = {}
    used_trackers = set()
    for rule in filt.findall("rule"):
        key = (_text(rule, "interface"), _text(rule, "descr"))
        if is_managed_rule(rule):
            if key in old_managed:
                result["removed"].append("duplicate rule on %s: %s" % key)
            else:
                old_managed[key] = rule
            filt.remove(rule)
        else:
            tracker = _text(rule, "tracker")
            if tracker.isdigit():
                used_trackers.add(int(tracker))
    for iface, rules in old_by_if.items():
        old_positions[iface] = [i for i, r in enumerate(rules) if is_managed_rule(r)]

    # the block of each interface, in policy order
    blocks = {}
    for spec in desired["rules"]:
        blocks.setdefault(spec["interface"], []).append(spec)
    for iface in sorted(blocks):
        elems = []
        for spec in blocks[iface]:
            tracker = tracker_for(iface, spec["id"])
            while tracker in used_trackers:
                tracker = TRACKER_BASE + (tracker - TRACKER_BASE + 1) % TRACKER_SPAN
            used_trackers.add(tracker)
            elem = rule_element(spec, tracker)
            prev = old_managed.get(spec["key"])
            label = "rule on %s: %s" % (iface, describe_rule(elem))
            if prev is None:
                elem.append(_stamp("updated", now, username))
                elem.append(_stamp("created", now, username))
                result["created"].append(label)
            elif _without_stamps(prev) == dump_element(elem):
                for tag in ("updated", "created"):
                    found = prev.find(tag)
                    elem.append(copy.deepcopy(found) if found is not None else _stamp(tag, now, username))
            else:
                elem.append(_stamp("updated", now, username))
                created = prev.find("created")
                elem.append(copy.deepcopy(created) if created is not None else _stamp("created", now, username))
                result["updated"].append("%s (was: %s)" % (label, describe_rule(prev)))
            elems.append(elem)
        # fixed place: before the first unmanaged rule of this interface, else after the last rule
        children = list(filt)
        anchor = next((i for i, c in enumerate(children) if c.tag == "rule" and not is_floating(c)
                       and _text(c, "interface") == iface), None)
        if anchor is None:
            last = [i for i, c in enumerate(children) if c.tag == "rule"]
            anchor = last[-1] + 1 if last else len(children)
        for offset, elem in enumerate(elems):
            filt.insert(anchor + offset, elem)
    desired_keys = set(spec["key"] for spec in desired["rules"])
    for key, rule in old_managed.items():
        if key not in desired_keys:
            result["removed"].append("rule on %s: %s  # %s" % (key[0], describe_rule(rule), key[1]))

    new_by_if = _rules_by_interface(filt)
    same_rules = set(k[0] for k in old_managed if k in desired_keys)
    for iface in sorted(set(new_by_if) | set(old_by_if)):
        rules = new_by_if.get(iface, [])
        pos = [i for i, r in enumerate(rules) if is_managed_rule(r)]
        old_keys = set(k for k in old_managed if k[0] == iface)
        new_keys = set(s["key"] for s in blocks.get(iface, []))
        if pos and iface in same_rules and old_keys == new_keys and pos != old_positions.get(iface):
            result["updated"].append("managed block on %s moved back to positions %d-%d" % (iface, pos[0], pos[-1]))

    # ---- an unmanaged item that refers to a managed alias that is going away breaks the filter
    gone = set(old_aliases) - set(desired["aliases"])
    if gone:
        for elem in new.iter():
            if elem.tag in ("address", "port", "network") and elem.text:
                for word in elem.text.split():
                    if word in gone:
                        result["warnings"].append(
                            "alias %s is removed (no longer in the policy) but something that is not the "
                            "collection's still refers to it (<%s>%s</%s>); pfSense will not load that rule"
                            % (word, elem.tag, elem.text, elem.tag))

    # ---- separators: unmanaged ones stay above the same rule, ours heads the block
    _separators(filt, old_by_if, new_by_if, blocks, result)

    # empty <filter> is written <filter></filter>
    filt.text = None if len(filt) else ""
    before_dump = dump_config(old)
    after_dump = dump_config(new)
    result["changed"] = before_dump != after_dump
    if result["changed"] and not (result["created"] or result["removed"] or result["updated"]):
        result["updated"].append("rule order or separators restored")
    result["root"] = new
    result["before"] = listing(old)
    result["after"] = listing(new)
    return result


def _separators(filt, old_by_if, new_by_if, blocks, result):
    seps = filt.find("separator")
    touched = set(blocks) | set(i for i, rules in old_by_if.items() if any(is_managed_rule(r) for r in rules))
    for iface in sorted(touched):
        old_rules = old_by_if.get(iface, [])
        new_rules = new_by_if.get(iface, [])
        ifsep = seps.find(iface) if seps is not None else None
        if ifsep is not None:
            for sep in list(ifsep):
                if _text(sep, "text").startswith(MARKER):
                    ifsep.remove(sep)
                    continue
                row = sep.find("row")
                m = SEP_ROW_RE.match(row.text or "") if row is not None else None
                if not m:
                    continue
                k = int(m.group(1))
                target = next((r for r in old_rules[k:] if not is_managed_rule(r)), None)
                newk = len(new_rules)
                if target is not None:
                    newk = next(i for i, r in enumerate(new_rules) if r is target)
                if newk != k:
                    row.text = "fr%d" % newk
                    result["updated"].append("separator %s/%s %r: row fr%d -> fr%d (same rule)"
                                             % (iface, sep.tag, _text(sep, "text"), k, newk))
            if not len(ifsep):
                ifsep.text = ""
        if iface in blocks:
            if seps is None:
                seps = ET.SubElement(filt, "separator")
            seps.text = None
            if ifsep is None:
                ifsep = ET.SubElement(seps, iface)
            ifsep.text = None
            taken = set(child.tag for child in ifsep)
            n = 0
            while "sep%d" % n in taken:
                n += 1
            first = next(i for i, r in enumerate(new_rules) if is_managed_rule(r))
            sep = ET.SubElement(ifsep, "sep%d" % n)
            _leaf(sep, "row", "fr%d" % first)
            _leaf(sep, "text", "%s OCS 2007 edge policy, %d rules; managed by Ansible, do not edit"
                  % (MARKER, len(blocks[iface])))
            _leaf(sep, "color", "bg-info")
            _leaf(sep, "if", iface)


def set_revision(root, now, username, description):
    """write_config(): <revision> time, description "user: desc", username."""
    rev = root.find("revision")
    if rev is None:
        rev = ET.SubElement(root, "revision")
    rev.text = None
    for tag, value in (("time", "%d" % int(now)), ("description", "%s: %s" % (username, description)),
                       ("username", username)):
        _child(rev, tag).text = value


# --------------------------------------------------------------------------- files

def php_serialize(value):
    if isinstance(value, bool):
        return "b:%d;" % int(value)
    if isinstance(value, int):
        return "i:%d;" % value
    if isinstance(value, dict):
        return "a:%d:{%s}" % (len(value), "".join(php_serialize(k) + php_serialize(v) for k, v in value.items()))
    data = str(value).encode("utf-8")
    return 's:%d:"%s";' % (len(data), data.decode("utf-8"))


def php_unserialize(text):
    """The subset backup.cache uses: arrays, int, string, bool, null. Raises ValueError otherwise."""
    data = text.encode("utf-8") if isinstance(text, str) else text

    def parse(i):
        kind = data[i:i + 1]
        if kind == b"N":
            return None, i + 2
        end = data.index(b";" if kind in (b"i", b"b", b"d") else b":", i + 2)
        if kind in (b"i", b"b"):
            return int(data[i + 2:end]), end + 1
        if kind == b"d":
            return float(data[i + 2:end]), end + 1
        if kind == b"s":
            length = int(data[i + 2:end])
            start = end + 2
            return data[start:start + length].decode("utf-8"), start + length + 2
        if kind == b"a":
            count = int(data[i + 2:end])
            i = end + 2
            out = {}
            for _n in range(count):
                key, i = parse(i)
                val, i = parse(i)
                out[key] = val
            return out, i + 1
        raise ValueError("unsupported PHP serialized type %r at %d" % (kind, i))

    value, end = parse(0)
    if data[end:].strip():
        raise ValueError("trailing data after PHP serialized value")
    return value


def read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def backup_config(config_path, backup_dir, old_root, old_bytes, now):
    """backup_config(): copy the current file to backup_dir/config-<revision time>.xml and
    record it in backup.cache. Returns (backup path, warning or None)."""
    if not os.path.isdir(backup_dir):
        os.makedirs(backup_dir, 0o755)
    baktime = _text(old_root, "revision/time")
    baktime = int(baktime) if baktime.isdigit() else 0
    path = os.path.join(backup_dir, "config-%d.xml" % baktime)
    if os.path.exists(path) and read_bytes(path) != old_bytes:
        # never overwrite a different backup (pfSense would); take the next free second
        baktime = max(int(now), baktime + 1)
        path = os.path.join(backup_dir, "config-%d.xml" % baktime)
        while os.path.exists(path):
            baktime += 1
            path = os.path.join(backup_dir, "config-%d.xml" % baktime)
    shutil.copyfile(config_path, path)
    os.chmod(path, 0o644)
    cache_path = os.path.join(backup_dir, "backup.cache")
    warning = None
    cache = {}
    raw = read_bytes(cache_path)
    try:
        if raw:
            cache = php_unserialize(raw.decode("utf-8"))
            if not isinstance(cache, dict):
                raise ValueError("not an array")
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        warning = ("%s could not be read (%s); left as it is: pfSense adds %s to it on its next save"
                   % (cache_path, exc, os.path.basename(path)))
        cache = None
    if cache is not None:
        cache[baktime] = {"description": _text(old_root, "revision/description") or "Unknown",
                          "version": _text(old_root, "version") or "?",
                          "filesize": len(old_bytes)}
        write_atomic(cache_path, php_serialize(cache).encode("utf-8"), 0o644)
    return path, warning


def write_atomic(path, data, mode=0o644):
    """Atomic write of bytes; the file always gets ``mode`` (pfSense writes config.xml 0644)."""
    backend.write_atomic(path, data, mode, keep_mode=False)


class ConfigLock(object):
    """lock('config'): flock on /tmp/config.lock, the lock pfSense's own writers take."""

    def __init__(self, path):
        self.path = path
        self.handle = None

    def __enter__(self):
        if self.path:
            self.handle = open(self.path, "a")
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
        return False


def write_config(config_path, backup_dir, cache_file, old_root, old_bytes, new_root, now, username, description):
    """write_config(): backup first, revision, atomic write (0644), /tmp/config.cache removed.

    Returns {"backup": path, "bytes": written bytes, "warnings": [...]}.
    """
    new_root = copy.deepcopy(new_root)
    set_revision(new_root, now, username, description)
    data = dump_config(new_root)
    warnings = []
    backup, warning = backup_config(config_path, backup_dir, old_root, old_bytes, now)
    if warning:
        warnings.append(warning)
    write_atomic(config_path, data, 0o644)
    if cache_file:
        try:
            os.unlink(cache_file)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
    return {"backup": backup, "bytes": data, "warnings": warnings}
