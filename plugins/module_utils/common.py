# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the nftables, iptables (and, for files, pfSense) backends.

The validators take the backend's exception class as ``error`` (NftError, IptError), so each
backend keeps raising its own error with the same messages as before. The modules ship this
file: they and the backends import it as collection module_utils
(``ansible_collections.ocs.edge_firewall.plugins.module_utils.common``), which AnsiballZ follows.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import ipaddress
import os
import re
import tempfile

PROTOCOLS = ("tcp", "udp")

# Comments of the base rules every Linux backend writes (a backend adds its own keys).
BASE_COMMENTS = {
    "lo": "ocs base: loopback",
    "est": "ocs base: established,related (replies of allowed connections)",
    "inv": "ocs base: conntrack invalid",
    "mgmt": "ocs management: controller/SSH to this firewall (ocs_management_networks)",
    "echo": "ocs base: icmp echo-request",
}


class FirewallError(Exception):
    """Base of the backends' errors (NftError, IptError): a rule set that cannot be rendered/applied."""


_PORT_RE = re.compile(r"^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$")


def where(name, path):
    """'firewall <name>: <path>', the prefix of every validation message."""
    return "firewall %s: %s" % (name or "?", path)


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


def networks(values, name, path, error, check=None):
    """Validate a PFRULE/management address list -> [ip_network, ...] as listed, or None (any).

    ``check(index, value, network)`` may raise for a network the backend cannot enforce; it is
    called for each entry in order, right after that entry is parsed.
    """
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values:
        raise error("%s must be null (any) or a non-empty list of IP addresses/CIDRs, got %r"
                    % (where(name, path), values))
    nets = []
    for i, val in enumerate(values):
        try:
            net = ipaddress.ip_network(str(val).strip(), strict=True)
        except ValueError as exc:
            raise error("%s[%d]: %r is not a valid IP address or network (%s)" % (where(name, path), i, val, exc))
        if check is not None:
            check(i, val, net)
        nets.append(net)
    return nets


def uncovered(nets):
    """Sorted networks without duplicates and without those inside another listed network
    (one IP version). The rest stays as written: collapse_addresses would turn two
    neighbouring servers into a /31, hard to read."""
    nets = sorted(set(nets))
    return [n for n in nets if not any(o != n and n.subnet_of(o) for o in nets)]


def port_intervals(values, name, path, error):
    """Validate a PFRULE/management port list ('N', 'N-M', ints) -> [(lo, hi), ...] as listed,
    or None (any)."""
    if values is None:
        return None
    if isinstance(values, (str, int)):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values:
        raise error("%s must be null (any) or a non-empty list of ports 'N' or 'N-M', got %r"
                    % (where(name, path), values))
    out = []
    for i, val in enumerate(values):
        m = _PORT_RE.match(str(val)) if not isinstance(val, bool) else None
        lo = int(m.group(1)) if m else 0
        hi = int(m.group(2)) if m and m.group(2) else lo
        if not m or not 1 <= lo <= hi <= 65535:
            raise error("%s[%d]: %r is not a port 1-65535 or a range N-M with N <= M" % (where(name, path), i, val))
        out.append((lo, hi))
    return out


def check_firewall(firewall, name, platform, input_policy, output_policy, error):
    """Validate the FIREWALL dict shared by the Linux backends -> (mode, interfaces, rules, management)."""
    if not isinstance(firewall, dict):
        raise error("%s must be a dict (FIREWALL of docs/policy-model.md)" % where(name, "firewall"))
    found = firewall.get("platform", platform)
    if found != platform:
        raise error("%s: platform is %r; this module only enforces %s firewalls"
                    % (where(name, "firewall.platform"), found, platform))
    mode = firewall.get("mode", "network")
    if mode not in ("network", "host"):
        raise error("%s: %r is not network or host" % (where(name, "mode"), mode))
    for pol, var in ((input_policy, "input_policy"), (output_policy, "output_policy")):
        if pol not in ("accept", "drop"):
            raise error("%s: %r is not accept or drop" % (where(name, var), pol))
    interfaces = firewall.get("interfaces") or {}
    if not isinstance(interfaces, dict):
        raise error("%s must be a dict zone -> interface name" % where(name, "interfaces"))
    rules = firewall.get("rules")
    if rules is None:
        rules = []
    if not isinstance(rules, list):
        raise error("%s must be a list of PFRULE dicts" % where(name, "rules"))
    management = firewall.get("management")
    if management is None:
        raise error("%s is missing: the management network must always reach the firewall"
                    % where(name, "management"))
    return mode, interfaces, rules, management


def management_sources(management, name, addresses, error):
    """Validate the management dict -> its sources as ``addresses`` returns them (never empty)."""
    if not isinstance(management, dict):
        raise error("%s must be a dict {sources: [...], ports: [...]}" % where(name, "management"))
    sources = management.get("sources")
    sources = addresses(sources, name, "management.sources") if sources else None
    if not sources:
        raise error("%s is empty: the rule set must always let the management network reach "
                    "the firewall (set ocs_management_networks)" % where(name, "management.sources"))
    return sources


def pfrule_head(pfrule, index, mode, name, backend, error):
    """Validate the parts of a PFRULE every backend checks alike -> (path, chain, protocol)."""
    path = "rules[%d]" % index
    if not isinstance(pfrule, dict):
        raise error("%s must be a dict (PFRULE), got %r" % (where(name, path), pfrule))
    path = "rules[%d] (%s)" % (index, pfrule.get("id", "?"))
    chain = pfrule.get("chain") or ("forward" if mode == "network" else None)
    allowed = ("forward",) if mode == "network" else ("input", "output")
    if chain not in allowed:
        raise error("%s.chain: %r is not valid in %s mode (expected %s)"
                    % (where(name, path), chain, mode, " or ".join(allowed)))
    proto = pfrule.get("protocol")
    if proto not in PROTOCOLS:
        raise error("%s.protocol: %r is not supported by the %s backend (tcp or udp)"
                    % (where(name, path), proto, backend))
    return path, chain, proto


def zone_interfaces(pfrule, mode, interfaces, name, ifname_re, error):
    """-> [("src_zone" | "dst_zone", interface name)] of a network-mode PFRULE, names validated."""
    out = []
    if mode == "network" and interfaces:
        for zone_key in ("src_zone", "dst_zone"):
            ifname = interfaces.get(pfrule.get(zone_key)) if pfrule.get(zone_key) else None
            if ifname:
                if not ifname_re.match(str(ifname)):
                    raise error("%s: interface %r is not a valid Linux interface name (max 15 chars)"
                                % (where(name, "interfaces.%s" % pfrule.get(zone_key)), ifname))
                out.append((zone_key, str(ifname)))
    return out


def check_comment(comment, name, path, error, max_bytes, tool, why):
    """A rule's comment -> str; it must be there, fit the tool's limit and hold no '"', '\\' or newline
    (``why`` says why not, ``tool`` names the limit's owner in the message)."""
    if comment is None or not str(comment).strip():
        raise error("%s: every rule needs a comment (seed table, figure, role)" % where(name, path))
    comment = str(comment)
    if '"' in comment or "\n" in comment or "\\" in comment:
        raise error("%s: comment %r contains a double quote, backslash or newline, which %s"
                    % (where(name, path), comment, why))
    # \r, \v, \f, \x1c-\x1f, \x85, U+2028/2029, NUL, tab...: the tools split lines or words on
    # them (iptables-save cannot read such a comment back), so only printable characters pass.
    bad = sorted(set(c for c in comment if not c.isprintable()))
    if bad:
        raise error("%s: comment %r contains the control/line-separator character(s) %s, which %s"
                    % (where(name, path), comment, ", ".join(repr(c) for c in bad), why))
    if len(comment.encode("utf-8")) > max_bytes:
        raise error("%s: comment is %d bytes, %s allows at most %d: %r"
                    % (where(name, path), len(comment.encode("utf-8")), tool, max_bytes, comment))
    return comment


def printable(text):
    """``text`` with every non-printable character (newline, NUL, U+2028, ...) escaped as
    Python does (``\\n``): safe to put on one line of a script or a comment."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def check_path(path, name, var, error):
    """A path written into a boot file or used to write one: absolute, printable, no quote
    or backslash (nft's include "..." has no escaping), else ``error``."""
    if not path:
        return path
    path = str(path)
    if not path.startswith("/") or any(not c.isprintable() for c in path) or '"' in path or "\\" in path:
        raise error("%s: %r must be an absolute path of printable characters without '\"' or '\\'"
                    % (where(name, var), path))
    return path


def unified(before, after, before_name="live", after_name="desired"):
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), before_name, after_name))


def numbered(script):
    """The script with line numbers, for error messages."""
    return "\n".join("%4d  %s" % (i, l) for i, l in enumerate(script.splitlines(), 1))


# ------------------------------------------------------------------------ files

def read_text(path):
    """A text file's content, or None when it cannot be read (absent)."""
    try:
        with open(path) as fh:
            return fh.read()
    except (IOError, OSError):
        return None


def write_atomic(path, data, mode=0o644, keep_mode=True):
    """Write ``data`` (str or bytes) via a temporary file in the same directory, fsync, rename.

    With ``keep_mode`` an existing file keeps its mode and ``mode`` is for a new file; without,
    the file always gets ``mode``. A missing directory is created (0755).
    """
    if keep_mode:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            pass
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".ocs_edge.", dir=directory)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temp(paths):
    """Remove what killed runs left behind: ``.ocs_edge.*`` temporary files of write_atomic beside
    the persisted files and the ``/tmp/ocs_edge.*.nft`` scripts of older versions. Call it only
    under the run lock (lock.RunLock): then no other run is writing them. -> removed paths."""
    import glob
    patterns = ["/tmp/ocs_edge.*.nft"]
    for path in paths:
        if path:
            patterns.append(os.path.join(os.path.dirname(os.path.abspath(path)), ".ocs_edge.*"))
    removed = []
    for pattern in patterns:
        for stale in glob.glob(pattern):
            try:
                os.unlink(stale)
                removed.append(stale)
            except OSError:
                pass
    return removed


# ---------------------------------------------------------------------- modules

def ruleset_argument_spec(**backend_options):
    """argument_spec of a Linux ruleset module: the FIREWALL options every backend takes plus
    the backend's own (``backend_options``, name -> spec)."""
    spec = dict(
        firewall=dict(type="dict"),
        rules=dict(type="list", elements="dict"),
        mode=dict(type="str", choices=["network", "host"], default="network"),
        management=dict(type="dict"),
        interfaces=dict(type="dict", default={}),
        name=dict(type="str", default="firewall"),
        input_policy=dict(type="str", choices=["drop", "accept"], default="drop"),
        output_policy=dict(type="str", choices=["accept", "drop"], default="accept"),
        allow_icmp=dict(type="bool", default=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    spec.update(backend_options)
    return spec


def firewall_param(params, platform):
    """The FIREWALL a ruleset module enforces: ``firewall``, or one built from the hand-written
    options (mode, interfaces, management, rules); None when neither is given."""
    if params["firewall"] is not None:
        return params["firewall"]
    if params["rules"] is None:
        return None
    return {"mode": params["mode"], "platform": platform, "interfaces": params["interfaces"],
            "management": params["management"], "rules": params["rules"]}
