# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pfSense backend, step "apply" (on a copy of the tree): put the desired items in place.

Every managed item is taken out and the desired ones are put back: aliases as one block at the
end of ``<aliases>``, the rules of each interface as one block (top, below a named separator,
or after your rules), outbound "do not NAT" rules at the top of ``<nat><outbound>``. Unmanaged
items keep their content and their order; unmanaged separators stay above the same rule.
``result`` collects ids: rule ids, ``alias:<name>``, ``nat:<id>``, ``separator:<iface>``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re
import xml.etree.ElementTree as ET
import zlib

from ansible_collections.ocs.edge_firewall.plugins.module_utils.pfsense_xml import (
    MARKER, PfSenseError, dump_element, fix_empty, is_floating, is_managed_alias, is_managed_descr,
    is_managed_rule, leaf, managed_id, section, text)

TRACKER_BASE = 4100000000     # pf ridentifier is u_int32 (max 4294967295); GUI uses Unix time
TRACKER_SPAN = 100000000
SEP_ROW_RE = re.compile(r"^fr([0-9]+)$")


def tracker_for(iface, rule_id):
    """Deterministic tracker of a managed rule, before uniqueness probing."""
    return TRACKER_BASE + zlib.crc32(("%s|%s" % (iface, rule_id)).encode("utf-8")) % TRACKER_SPAN


# --------------------------------------------------------------------------- elements

def alias_element(spec):
    alias = ET.Element("alias")
    leaf(alias, "name", spec["name"])
    leaf(alias, "type", spec["type"])
    leaf(alias, "address", " ".join(spec["address"]))
    leaf(alias, "descr", spec["descr"])
    leaf(alias, "detail", "||".join("" for _ in spec["address"]) if len(spec["address"]) > 1 else "")
    return alias


def _endpoint(tag, spec_end):
    kind, value, port, negate = spec_end
    elem = ET.Element(tag)
    if kind == "any":
        leaf(elem, "any")
    else:
        leaf(elem, kind, value)
    if negate:
        leaf(elem, "not")
    if port:
        leaf(elem, "port", port)
    return elem


def rule_element(spec, tracker):
    """A rule as firewall_rules_edit.php saves it (same elements, same order), without created/updated."""
    rule = ET.Element("rule")
    leaf(rule, "id")
    leaf(rule, "tracker", "%d" % tracker)
    leaf(rule, "type", spec["type"])
    leaf(rule, "interface", spec["interface"])
    leaf(rule, "ipprotocol", "inet")
    for tag in ("tag", "tagged", "max", "max-src-nodes", "max-src-conn", "max-src-states", "statetimeout"):
        leaf(rule, tag)
    leaf(rule, "statetype", "keep state")
    leaf(rule, "os")
    if spec["protocol"]:
        leaf(rule, "protocol", spec["protocol"])
    rule.append(_endpoint("source", spec["source"]))
    rule.append(_endpoint("destination", spec["destination"]))
    leaf(rule, "descr", spec["descr"])
    return rule


def nat_element(spec):
    """An outbound NAT rule as saveoutNATrule() (firewall_nat_out.inc) saves a "Do not NAT" one."""
    rule = ET.Element("rule")
    leaf(ET.SubElement(rule, "source"), "network", spec["source"])
    leaf(rule, "sourceport")
    leaf(rule, "descr", spec["descr"])
    for tag in ("target", "target_subnet"):
        leaf(rule, tag)
    leaf(rule, "interface", spec["interface"])
    for tag in ("poolopts", "source_hash_key", "nonat"):
        leaf(rule, tag)
    leaf(rule, "ipprotocol", "inet")
    dest = ET.SubElement(rule, "destination")
    if spec["destination"] == "any":
        leaf(dest, "any")
    else:
        leaf(dest, "network", spec["destination"])
    return rule


def _stamp(tag, now, username):
    elem = ET.Element(tag)
    leaf(elem, "time", "%d" % int(now))
    leaf(elem, "username", username)
    return elem


def without_stamps(rule):
    clone = copy.deepcopy(rule)
    for tag in ("created", "updated"):
        for found in clone.findall(tag):
            clone.remove(found)
    return dump_element(clone)


def stamp(elem, prev, now, username):
    """created/updated: kept while the item is unchanged; a restored item gets a new updated.
    Returns "created", "updated" or None (unchanged)."""
    if prev is not None and without_stamps(prev) == dump_element(elem):
        for tag in ("updated", "created"):
            found = prev.find(tag)
            elem.append(copy.deepcopy(found) if found is not None else _stamp(tag, now, username))
        return None
    elem.append(_stamp("updated", now, username))
    created = prev.find("created") if prev is not None else None
    elem.append(copy.deepcopy(created) if created is not None else _stamp("created", now, username))
    return "created" if prev is None else "updated"


# --------------------------------------------------------------------------- aliases

def apply_aliases(new, desired, result):
    """Managed aliases: one block at the end of <aliases>, sorted by name. -> names removed."""
    aliases = section(new, "aliases")
    old = {}
    for alias in list(aliases):
        if alias.tag == "alias" and is_managed_alias(alias):
            old.setdefault(text(alias, "name"), dump_element(alias))
            aliases.remove(alias)
    for aname in sorted(desired["aliases"]):
        elem = alias_element(desired["aliases"][aname])
        aliases.append(elem)
        if aname not in old:
            result["created"].append("alias:%s" % aname)
        elif old[aname] != dump_element(elem):
            result["updated"].append("alias:%s" % aname)
    gone = [aname for aname in old if aname not in desired["aliases"]]
    result["removed"].extend("alias:%s" % aname for aname in gone)
    fix_empty(aliases)
    return set(gone)


def warn_dangling(new, gone, result):
    """An unmanaged item still naming a managed alias that goes away breaks the filter load."""
    for elem in new.iter() if gone else ():
        if elem.tag in ("address", "port", "network") and elem.text:
            for word in elem.text.split():
                if word in gone:
                    result["warnings"].append(
                        "alias %s is removed (no longer in the policy) but something that is not the "
                        "collection's still refers to it (<%s>%s</%s>); pfSense will not load that rule"
                        % (word, elem.tag, elem.text, elem.tag))


# --------------------------------------------------------------------------- filter rules

def rules_by_interface(filt):
    """interface id -> its rules in document order; floating rules under "floatingrules"
    (the key pfSense uses for their separators)."""
    out = {}
    for rule in filt.findall("rule"):
        key = "floatingrules" if is_floating(rule) else text(rule, "interface")
        out.setdefault(key, []).append(rule)
    return out


def _take_managed(filt, result):
    """Remove every managed rule -> ({(iface, id): rule}, trackers the other rules use)."""
    managed, used = {}, set()
    for rule in filt.findall("rule"):
        if is_managed_rule(rule):
            key = (text(rule, "interface"), managed_id(text(rule, "descr")))
            if key in managed:
                result["removed"].append("%s (duplicate on %s)" % (key[1], key[0]))
            else:
                managed[key] = rule
            filt.remove(rule)
        elif text(rule, "tracker").isdigit():
            used.add(int(text(rule, "tracker")))
    return managed, used


def _build_blocks(desired, old_managed, used, result, now, username):
    """iface -> [rule elements] in policy order, trackers unique, stamps kept when unchanged."""
    blocks = {}
    for spec in desired["rules"]:
        tracker = tracker_for(spec["interface"], spec["id"])
        while tracker in used:
            tracker = TRACKER_BASE + (tracker - TRACKER_BASE + 1) % TRACKER_SPAN
        used.add(tracker)
        elem = rule_element(spec, tracker)
        change = stamp(elem, old_managed.get(spec["key"]), now, username)
        if change:
            result[change].append(spec["id"])
        blocks.setdefault(spec["interface"], []).append(elem)
    keys = set(spec["key"] for spec in desired["rules"])
    result["removed"].extend(key[1] for key in old_managed if key not in keys)
    return blocks


def _named_separator(filt, iface, wanted):
    ifsep = filt.find("separator/%s" % iface)
    for sep in (list(ifsep) if ifsep is not None else []):
        if text(sep, "text").strip() == wanted.strip() and not is_managed_descr(text(sep, "text")):
            return sep
    return None


def _check_separator(filt, ifaces, opts, name, result):
    """placement separator: the named separator must exist on one managed interface at least
    (a typo is an error); an interface without it gets its block at the top (warned)."""
    if opts["placement"] != "separator":
        return
    wanted = opts["placement_separator"]
    missing = [i for i in sorted(ifaces) if _named_separator(filt, i, wanted) is None]
    if missing and len(missing) == len(ifaces):
        have = sorted(set(text(s, "text") for s in filt.iterfind("separator/*/*")))
        raise PfSenseError("firewall %s: placement_separator %r: no managed interface (%s) has such a separator "
                           "(separators: %s)" % (name, wanted, ", ".join(sorted(ifaces)),
                                                 ", ".join(repr(h) for h in have) or "none"))
    for iface in missing:
        result["warnings"].append("interface %s has no separator %r: its managed rules are placed at the top"
                                  % (iface, wanted))


def _anchor(filt, iface, old_rules, opts):
    """Document index where the block of iface goes, and the user separator it is pinned below."""
    children = list(filt)
    mine = [i for i, c in enumerate(children) if c.tag == "rule" and not is_floating(c) and text(c, "interface") == iface]
    last = [i for i, c in enumerate(children) if c.tag == "rule"]
    after_all = last[-1] + 1 if last else len(children)
    pinned = _named_separator(filt, iface, opts["placement_separator"]) if opts["placement"] == "separator" else None
    if opts["placement"] == "bottom":
        index = mine[-1] + 1 if mine else after_all
    elif pinned is None:
        index = mine[0] if mine else after_all
    else:
        row = SEP_ROW_RE.match(text(pinned, "row"))
        k = int(row.group(1)) if row else len(old_rules)
        target = next((r for r in old_rules[k:] if not is_managed_rule(r)), None)
        index = children.index(target) if target is not None else (mine[-1] + 1 if mine else after_all)
    return index, pinned


def apply_rules(new, desired, result, now, username, name):
    """Managed rules as one block per interface. -> (old_by_if, new_by_if, blocks, pinned)."""
    filt = section(new, "filter")
    old_by_if = rules_by_interface(filt)
    old_positions = dict((i, [n for n, r in enumerate(rs) if is_managed_rule(r)]) for i, rs in old_by_if.items())
    old_managed, used = _take_managed(filt, result)
    blocks = _build_blocks(desired, old_managed, used, result, now, username)
    _check_separator(filt, blocks, desired["options"], name, result)
    pinned = {}
    for iface in sorted(blocks):
        index, pinned[iface] = _anchor(filt, iface, old_by_if.get(iface, []), desired["options"])
        for offset, elem in enumerate(blocks[iface]):
            filt.insert(index + offset, elem)
    new_by_if = rules_by_interface(filt)
    for iface in sorted(blocks):
        pos = [n for n, r in enumerate(new_by_if.get(iface, [])) if is_managed_rule(r)]
        same = set(k for k in old_managed if k[0] == iface) == set((iface, e) for e in _ids(blocks[iface]))
        if same and pos != old_positions.get(iface) and "position:%s" % iface not in result["updated"]:
            result["updated"].append("position:%s" % iface)
    separators(filt, old_by_if, new_by_if, blocks, pinned, result)
    fix_empty(filt)


def _ids(elems):
    return [managed_id(text(e, "descr")) for e in elems]


# --------------------------------------------------------------------------- separators

def _repoint(ifsep, old_rules, new_rules, pin, result, iface):
    """Unmanaged separators stay above the same rule (frK is an index among the interface's
    rules); the one the block is placed below stays directly above the block."""
    first = next((i for i, r in enumerate(new_rules) if is_managed_rule(r)), len(new_rules))
    for sep in list(ifsep):
        if is_managed_descr(text(sep, "text")):
            ifsep.remove(sep)
            continue
        row = sep.find("row")
        found = SEP_ROW_RE.match(row.text or "") if row is not None else None
        if not found:
            continue
        k = int(found.group(1))
        target = next((r for r in old_rules[k:] if not is_managed_rule(r)), None)
        newk = next(i for i, r in enumerate(new_rules) if r is target) if target is not None else len(new_rules)
        if sep is pin:
            newk = first
        if newk != k:
            row.text = "fr%d" % newk
            result["updated"].append("separator:%s/%s" % (iface, sep.tag))


def _managed_separator(seps, iface, new_rules, count):
    ifsep = seps.find(iface)
    if ifsep is None:
        ifsep = ET.SubElement(seps, iface)
    ifsep.text = None
    taken = set(child.tag for child in ifsep)
    n = 0
    while "sep%d" % n in taken:
        n += 1
    first = next(i for i, r in enumerate(new_rules) if is_managed_rule(r))
    sep = ET.SubElement(ifsep, "sep%d" % n)
    leaf(sep, "row", "fr%d" % first)
    leaf(sep, "text", "%s OCS 2007 edge policy, %d rules; managed by Ansible, do not edit" % (MARKER, count))
    leaf(sep, "color", "bg-info")
    leaf(sep, "if", iface)


def separators(filt, old_by_if, new_by_if, blocks, pinned, result):
    seps = filt.find("separator")
    touched = set(blocks) | set(i for i, rules in old_by_if.items() if any(is_managed_rule(r) for r in rules))
    for iface in sorted(touched):
        ifsep = seps.find(iface) if seps is not None else None
        if ifsep is not None:
            _repoint(ifsep, old_by_if.get(iface, []), new_by_if.get(iface, []), pinned.get(iface), result, iface)
            fix_empty(ifsep)
        if iface in blocks:
            if seps is None:
                seps = ET.SubElement(filt, "separator")
            seps.text = None
            _managed_separator(seps, iface, new_by_if[iface], len(blocks[iface]))


# --------------------------------------------------------------------------- outbound NAT

def outbound_mode(root):
    """<nat><outbound><mode>: automatic (also when absent), hybrid, advanced or disabled."""
    return text(root, "nat/outbound/mode") or "automatic"


def _dormant_rules(outbound):
    return [text(r, "descr") or "(no description)" for r in outbound.findall("rule")
            if r.find("disabled") is None]


def _set_mode(outbound, mode, result):
    elem = outbound.find("mode")
    if elem is None:
        elem = ET.Element("mode")
        outbound.insert(0, elem)
    elem.text = mode
    result["updated"].append("nat:mode")


def apply_nat(new, desired, result, now, username, name):
    """Managed "do not NAT" rules at the top of the outbound rules; automatic mode -> hybrid.

    pf NAT rules are first-match: the user's rules (hybrid/advanced) come before the automatic
    ones, and ours before the user's. Disabled mode translates nothing: no rule is needed.
    """
    if new.find("nat/outbound") is None and not desired["nat"]:
        return
    outbound = section(section(new, "nat"), "outbound")
    old = {}
    for rule in outbound.findall("rule"):
        if is_managed_descr(text(rule, "descr")):
            old[managed_id(text(rule, "descr"))] = rule
            outbound.remove(rule)
    mode = outbound_mode(new)
    wanted = desired["nat"] if mode != "disabled" else []
    if desired["nat"] and mode == "disabled":
        result["warnings"].append("outbound NAT is disabled on %s: nothing is translated, no rule added" % name)
    if wanted and mode == "automatic":
        dormant = _dormant_rules(outbound)
        if dormant:
            raise PfSenseError(
                "firewall %s: outbound NAT is automatic, and switching it to hybrid (to keep the perimeter "
                "servers un-NATed) would also activate %d rule(s) pfSense ignores today: %s. Review them and "
                "set Firewall > NAT > Outbound to hybrid yourself, or disable them" % (name, len(dormant), "; ".join(dormant)))
        _set_mode(outbound, "hybrid", result)
    rules = outbound.findall("rule")
    index = list(outbound).index(rules[0]) if rules else len(outbound)
    for offset, spec in enumerate(wanted):
        elem = nat_element(spec)
        change = stamp(elem, old.get(spec["id"]), now, username)
        if change:
            result[change].append("nat:%s" % spec["id"])
        outbound.insert(index + offset, elem)
    result["removed"].extend("nat:%s" % rid for rid in old if rid not in set(s["id"] for s in wanted))
    fix_empty(outbound)
    fix_empty(new.find("nat"))
