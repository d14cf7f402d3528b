# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pfSense backend of ocs.edge_firewall: FIREWALL (docs/policy-model.md) -> config.xml.

The collection keeps its own items in pfSense's ``/cf/conf/config.xml`` and nothing else:

* a **managed rule** (filter or outbound NAT) has a ``descr`` holding :data:`MARKER` after its id
  (``central-t20-f14-out table 20 figure 14 [ocs.edge_firewall] av_edge STUN/UDP``; the old form,
  marker first, is still recognised and migrated);
* a **managed alias** has a ``name`` starting with :data:`ALIAS_PREFIX`;
* a **managed separator** has a ``text`` starting with :data:`MARKER`.

Steps (the names of the common Backend, driven by pfsense_backend): :func:`desired`
(pfsense_desired), :func:`validate`, :func:`render` on a copy of the tree (pfsense_apply),
:func:`compare` (dumps and listings), then :func:`write_config` and the reload. :func:`reconcile`
chains the pure steps.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import errno
import fcntl
import os
import shutil
import xml.etree.ElementTree as ET

from ansible_collections.ocs.edge_firewall.plugins.module_utils import backend
from ansible_collections.ocs.edge_firewall.plugins.module_utils.pfsense_xml import (  # noqa: F401 (re-exported)
    ALIAS_PREFIX, MARKER, XML_FORBIDDEN, PfSenseError, XmlCharacterError, check_xml_text, dump_config, dump_element,
    is_managed_alias, is_managed_descr, is_managed_rule, managed_id, parse_config, text as _text)
from ansible_collections.ocs.edge_firewall.plugins.module_utils.pfsense_desired import (  # noqa: F401
    DEFAULT_OPTIONS, desired_state)
from ansible_collections.ocs.edge_firewall.plugins.module_utils.pfsense_apply import (  # noqa: F401
    TRACKER_BASE, TRACKER_SPAN, apply_aliases, apply_nat, apply_rules, outbound_mode, rules_by_interface,
    tracker_for, warn_dangling)

DEFAULT_USERNAME = "ocs.edge_firewall (Ansible)"


# --------------------------------------------------------------------------- listing (for --diff)

def _describe_end(end):
    if end.find("any") is not None:
        value = "any"
    elif end.find("network") is not None:
        value = "net:" + _text(end, "network")
    else:
        value = _text(end, "address") or "?"
    if end.find("not") is not None:
        value = "!" + value
    port = _text(end, "port")
    return value + (" port %s" % port if port else "")


def describe_rule(rule):
    src, dst = rule.find("source"), rule.find("destination")
    extra = [tag for tag in ("disabled", "log", "floating", "gateway", "sched") if rule.find(tag) is not None]
    return "%s on %s %s %s from %s to %s%s tracker %s %s" % (
        _text(rule, "type") or "?", _text(rule, "interface") or "?", _text(rule, "ipprotocol") or "?",
        _text(rule, "protocol") or "any",
        _describe_end(src) if src is not None else "?", _describe_end(dst) if dst is not None else "?",
        "".join(" [%s]" % t for t in extra), _text(rule, "tracker") or "-",
        _text(rule, "statetype") and "(%s)" % _text(rule, "statetype") or "")


def _nat_listing(root):
    outbound = root.find("nat/outbound")
    rules = outbound.findall("rule") if outbound is not None else []
    lines = ["# outbound NAT mode %s: %d rules, managed at positions %s" % (
        outbound_mode(root), len(rules), ",".join("%d" % i for i, r in enumerate(rules)
                                                   if is_managed_descr(_text(r, "descr"))) or "-")]
    for rule in rules:
        if is_managed_descr(_text(rule, "descr")):
            dst = rule.find("destination")
            lines.append("%s on %s inet from %s to %s  # %s" % (
                "no nat" if rule.find("nonat") is not None else "nat", _text(rule, "interface"),
                _text(rule, "source/network") or "?", "any" if dst is None or dst.find("any") is not None
                else _text(dst, "network"),
                _text(rule, "descr")))
    return lines


def listing(root):
    """Readable text of the managed aliases, rules and NAT rules of a tree (for --diff)."""
    lines = ["# aliases (name prefix %s)" % ALIAS_PREFIX]
    aliases = root.find("aliases")
    for alias in (aliases.findall("alias") if aliases is not None else []):
        if is_managed_alias(alias):
            lines.append("alias %s %s: %s" % (_text(alias, "name"), _text(alias, "type"),
                                              ", ".join(_text(alias, "address").split())))
    filt = root.find("filter")
    by_if = rules_by_interface(filt) if filt is not None else {}
    for iface in sorted(by_if):
        managed = [(i, r) for i, r in enumerate(by_if[iface]) if is_managed_rule(r)]
        if managed:
            lines.append("# interface %s: %d rules, managed at positions %s" % (
                iface, len(by_if[iface]), ",".join("%d" % i for i, _r in managed)))
            lines.extend("%s  # %s" % (describe_rule(r), _text(r, "descr")) for _i, r in managed)
    return "\n".join(lines + _nat_listing(root)) + "\n"


# --------------------------------------------------------------------------- steps

def self_ports(root):
    """The ports pfSense's anti-lockout rule opens (filter_get_antilockout_ports()): GUI, its
    HTTP redirect, SSH when enabled."""
    proto = _text(root, "system/webgui/protocol")
    gui = _text(root, "system/webgui/port") or ("443" if proto == "https" else "80")
    ports = [gui]
    if proto == "https" and root.find("system/webgui/disablehttpredirect") is None and gui != "80":
        ports.append("80")
    if root.find("system/ssh/enable") is not None:
        ports.append(_text(root, "system/ssh/port") or "22")
    return ports


def desired(firewall, root, name="firewall", options=None, state="present"):
    """Step desired: what config.xml must hold (``state`` absent: nothing of ours)."""
    if state != "present":
        return {"aliases": {}, "rules": [], "nat": [], "interfaces": {},
                "options": dict(DEFAULT_OPTIONS)}
    return desired_state(firewall, name, options, self_ports(root))


def validate(root, want, name):
    """Step validate: the interfaces must exist in <interfaces> (pfSense ignores rules on unknown ones)."""
    ifaces = root.find("interfaces")
    known = set(child.tag for child in ifaces) if ifaces is not None else set()
    for zone, iface in sorted(want["interfaces"].items()):
        if iface not in known:
            raise PfSenseError(
                "firewall %s: ocs_firewall_interfaces.%s is %r, but config.xml has no such interface "
                "(it has: %s); use the interface id (wan, lan, optN), not its description"
                % (name, zone, iface, ", ".join(sorted(known)) or "none"))


def render(root, want, name, now, username):
    """Step render: the desired items put in place on a copy of the tree (pfsense_apply). -> (new
    root, result with created/updated/removed/warnings)."""
    new = copy.deepcopy(root)
    result = {"created": [], "removed": [], "updated": [], "warnings": []}
    gone = apply_aliases(new, want, result)
    apply_rules(new, want, result, now, username, name)
    apply_nat(new, want, result, now, username, name)
    warn_dangling(new, gone, result)
    return new, result


def compare(old, new, result):
    """Step compare: changed when the dumps differ; listings for --diff."""
    result["changed"] = dump_config(old) != dump_config(new)
    if result["changed"] and not (result["created"] or result["removed"] or result["updated"]):
        result["updated"].append("order")
    result["before"] = listing(old)
    result["after"] = listing(new)
    return result


def clean_username(username, name):
    """The user recorded in stamps and <revision>, as pfSense would read it back (whitespace
    collapsed: it trims what it reads, a trailing CR would make every run differ)."""
    check_xml_text(username, "firewall %s: username" % name)
    return " ".join(str(username).split()) or DEFAULT_USERNAME


def reconcile(root, firewall, name="firewall", now=0, username=DEFAULT_USERNAME, state="present", options=None):
    """desired -> validate -> render -> compare. The input tree is not modified.

    Returns ``root`` (the new tree), ``changed``, ``created``/``removed``/``updated`` (ids),
    ``warnings``, ``before``/``after`` (listings).
    """
    check_xml_text(name, "firewall name")
    username = clean_username(username, name)
    want = desired(firewall, root, name, options, state)
    validate(root, want, name)
    new, result = render(root, want, name, now, username)
    result = compare(root, new, result)
    result["root"] = new
    return result


def _child(parent, tag):
    found = parent.find(tag)
    if found is None:
        found = ET.SubElement(parent, tag)
    return found


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


def restore_backup(config_path, backup, cache_file):
    """Put the backup made before this run back in place (atomic, 0644) and drop pfSense's cache."""
    data = read_bytes(backup)
    if data is None:
        raise PfSenseError("%s is gone; %s was not restored" % (backup, config_path))
    write_atomic(config_path, data, 0o644)
    if cache_file and os.path.exists(cache_file):
        os.unlink(cache_file)
