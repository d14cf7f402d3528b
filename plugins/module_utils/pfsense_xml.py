# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""config.xml as pfSense reads and writes it (xmlparse.inc), and what marks an item as ours.

:func:`parse_config` reads the way ``parse_xml_config()`` does (values trimmed of
tabs/newlines, HTML entities decoded); :func:`dump_config` writes the way ``dump_xml_config()``
does (``<?xml version="1.0"?>``, tab indent, ``<x></x>`` for empty values, values
HTML-escaped, CDATA for element names starting with ``descr``, ``detail``, ``text``, ...).
Two trees are equal when their dumps are equal, so "write or not" never depends on formatting.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import html
import re
import xml.etree.ElementTree as ET

from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import FirewallError

MARKER = "[ocs.edge_firewall]"
ALIAS_PREFIX = "OCS_"

# xmlparse.inc is_cdata_entity(): element names starting with one of these get CDATA.
CDATA_PREFIXES = (
    "auth_pass", "auth_prompt", "auth_user", "certca", "certname", "city", "common_name",
    "descr", "detail", "email", "encryption_password", "ldap_attr",
    "ldap_authcn", "ldap_basedn", "ldap_bind",
    "ldap_extended_query", "login_banner", "organization", "password", "rangedescr",
    "state", "text", "username",
)

# Characters XML 1.0 cannot carry (not even as &#N;): C0 controls but tab/LF/CR, U+FFFE/FFFF,
# lone surrogates. One of them in config.xml and neither pfSense nor this module can read it.
XML_FORBIDDEN = re.compile(u"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

# The id a managed description starts with (new form) or carries after "ocs " (old form).
_NEW_FORM = re.compile(r"^(\S+) (?:.* )?%s(?: |$)" % re.escape(MARKER))
_OLD_FORM = re.compile(r"^%s ocs (\S+)" % re.escape(MARKER))


class PfSenseError(FirewallError):
    """A FIREWALL or a config.xml this module cannot handle; the message says which and why."""


class XmlCharacterError(PfSenseError):
    """A value holds a character XML 1.0 cannot carry; writing it would break config.xml."""


def check_xml_text(value, where):
    """Refuse (XmlCharacterError) a string config.xml could not carry; dicts/lists are walked."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_xml_text(key, where)
            check_xml_text(item, "%s.%s" % (where, key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_xml_text(item, "%s[%d]" % (where, i))
    elif isinstance(value, str):
        found = XML_FORBIDDEN.search(value)
        if found:
            raise XmlCharacterError(
                "%s: %r holds U+%04X, a character XML 1.0 cannot carry; config.xml would no longer "
                "parse (pfSense could not boot from it), so it is refused" % (where, value, ord(found.group(0))))


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


def leaf(parent, tag, value=""):
    child = ET.SubElement(parent, tag)
    child.text = value
    return child


def text(elem, path):
    found = elem.find(path)
    return "" if found is None or found.text is None else found.text


def section(parent, tag):
    """The child ``tag`` of parent, created (empty) when missing."""
    found = parent.find(tag)
    if found is None:
        found = ET.SubElement(parent, tag)
        found.text = ""
    return found


def fix_empty(elem):
    """An element that lost/gained children is written <x></x> when empty."""
    elem.text = None if len(elem) else ""


# --------------------------------------------------------------------------- ownership

def is_managed_descr(descr):
    """Ours: the marker first (old form) or after the id (``<id> ... [ocs.edge_firewall] ...``)."""
    return descr.startswith(MARKER) or bool(_NEW_FORM.match(descr))


def managed_id(descr):
    """The rule id a managed description carries; the description itself when it has none."""
    found = _OLD_FORM.match(descr) or (None if descr.startswith(MARKER) else _NEW_FORM.match(descr))
    return found.group(1) if found else descr


def is_managed_rule(rule):
    return is_managed_descr(text(rule, "descr"))


def is_managed_alias(alias):
    return text(alias, "name").startswith(ALIAS_PREFIX)


def is_floating(rule):
    return rule.find("floating") is not None
