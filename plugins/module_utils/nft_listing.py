# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read nftables tables robustly: what ``nft -j`` lists, even where nft's JSON is broken.

nft 1.0.6 (Debian 12) prints invalid JSON for a table with flags (``dormant``, ``owner``):
the output stops after ``"flags":`` (``nft -j list table`` and ``nft -j list ruleset``), and
``nft -j list tables`` prints garbage as the flags' value. So tables and flags are read from
the text listing, and a table whose JSON does not parse is read object by object
(``list chains``/``list chain``/``list sets``/``list maps``, which do not print the table).
Anything that still cannot be read is returned as ``unreadable`` text: the caller treats it
as a difference, never as "nothing there".
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

_TABLE_LINE = re.compile(r"^table\s+(\S+)\s+(\S+)")


class ListingError(Exception):
    """nft could not be run (rc != 0)."""


def _nft(run, nft, args, what):
    rc, out, err = run([nft] + list(args))
    if rc != 0:
        raise ListingError("%s failed (nft %s, rc=%s): %s" % (what, " ".join(args), rc, (err or out).strip()))
    return out


def _json_items(text):
    """The ``nftables`` array of nft's JSON output (without metainfo), or None when invalid."""
    try:
        doc = json.loads(text or "{}")
    except ValueError:
        return None
    items = doc.get("nftables", []) if isinstance(doc, dict) else None
    if items is None:
        return None
    return [i for i in items if isinstance(i, dict) and "metainfo" not in i]


def list_tables(run, nft="nft"):
    """-> [(family, name)] from ``nft list tables`` (text: the JSON form is broken by flags)."""
    out = _nft(run, nft, ["list", "tables"], "listing tables")
    return [m.groups() for m in (_TABLE_LINE.match(l.strip()) for l in out.splitlines()) if m]


def table_flags(text):
    """Flags of a table from its text listing (``flags dormant`` right below ``table ... {``)."""
    flags = []
    for line in text.splitlines()[1:]:
        line = line.strip()
        if line.startswith("flags "):
            flags.extend(f.strip() for f in line[6:].rstrip(";").split(","))
        elif line:
            break
    return flags


def _by_object(run, nft, family, name):
    """The table's chains, rules, sets and maps read one listing at a time (no table object)."""
    items = []
    chains = _json_items(_nft(run, nft, ["-j", "list", "chains", family], "listing chains"))
    if chains is None:
        return None
    for item in chains:
        body = item.get("chain", {})
        if body.get("table") != name:
            continue
        got = _json_items(_nft(run, nft, ["-j", "list", "chain", family, name, body["name"]], "listing a chain"))
        if got is None:
            return None
        items.extend(got)
    for kind in ("sets", "maps"):
        got = _json_items(_nft(run, nft, ["-j", "list", kind, family], "listing %s" % kind))
        if got is None:
            return None
        items.extend(i for i in got if next(iter(i.values())).get("table") == name)
    text = _nft(run, nft, ["list", "table", family, name], "reading table %s %s" % (family, name))
    return items + _other_objects(text, family, name)


_MODELLED = ("chain ", "set ", "map ")


def _other_objects(text, family, name):
    """Top-level objects of a text listing that are not chains, sets or maps (flowtables,
    counters, quotas, ct helpers, ...), as {"object": declaration} items."""
    out = []
    for line in text.splitlines():
        if line.startswith("\t") and not line.startswith("\t\t") and line.rstrip().endswith("{"):
            decl = line.strip()[:-1].strip()
            if not decl.startswith(_MODELLED):
                kind, _ignored, oname = decl.rpartition(" ")      # "counter sneaky", "ct helper ftp"
                out.append({(kind or "object").replace(" ", "_"): {"family": family, "table": name, "name": oname}})
    return out


def read_table(run, nft, family, name):
    """-> {"items": [JSON objects] or None (unreadable), "flags": [...], "text": listing}, or
    None when the table does not exist."""
    if (family, name) not in list_tables(run, nft):
        return None
    text = _nft(run, nft, ["list", "table", family, name], "reading table %s %s" % (family, name))
    items = _json_items(_nft(run, nft, ["-j", "list", "table", family, name],
                             "reading table %s %s" % (family, name)))
    if items is None:
        # nft 1.0.6: invalid JSON when the table has flags; read it object by object instead.
        items = _by_object(run, nft, family, name)
    if items is not None:
        # the table object's flags are garbage in nft 1.0.6 JSON; the text listing is right
        items = [i for i in items if "table" not in i]
    return {"items": items, "flags": table_flags(text), "text": text}


def read_ruleset(run, nft="nft", skip=()):
    """Every table but those in ``skip`` -> {(family, name): [JSON items] or None (unreadable)}.
    Dormant tables are left out: their chains do not see packets."""
    out = {}
    for family, name in list_tables(run, nft):
        if (family, name) in skip:
            continue
        got = read_table(run, nft, family, name)
        if got is not None and "dormant" not in got["flags"]:
            out[(family, name)] = got["items"]
    return out
