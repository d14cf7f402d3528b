# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection knows about each platform, in one table.

The policy engine (which platform may be a network or a host firewall, whether interfaces and
management networks are required), the parser of rules.py (interface names, address families,
comment length) and the deploy playbook (role ``ocs.edge_firewall.<platform>``, become) read
it; nothing else branches on a platform's name. Adding a platform starts with a line here
(docs/adding-a-platform.md).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections import namedtuple

Platform = namedtuple("Platform", (
    "title",                # name in messages
    "role",                 # role of this collection that enforces it (ocs.edge_firewall.<role>)
    "modes",                # FIREWALL modes it enforces: network (a router), host (a server itself)
    "interfaces_required",  # a network firewall must name the interface of each zone
    "ifname_re",            # a valid interface name (whole string)
    "families",             # IP versions it enforces (others are refused, never dropped)
    "comment_max",          # bytes a rule comment may have (None: the backend builds its own text)
    "multiport_max",        # ports one native rule can match (None: no limit)
    "management_required",  # the rule set must carry the management (Ansible/SSH) access
    "become",               # the role needs root on the managed host
))

PLATFORMS = {
    "nftables": Platform(
        title="nftables", role="nftables", modes=("network", "host"), interfaces_required=False,
        ifname_re=re.compile(r"[A-Za-z0-9_.:@+-]{1,15}\*?"),          # IFNAMSIZ 16 incl. NUL
        families=(4, 6), comment_max=128,                            # NFTNL_UDATA_COMMENT_MAXLEN
        multiport_max=None, management_required=True, become=True),
    "iptables": Platform(
        title="iptables", role="iptables", modes=("network", "host"), interfaces_required=False,
        ifname_re=re.compile(r"[A-Za-z0-9_.:@-]{1,15}\+?"),
        families=(4,), comment_max=255,                              # XT_MAX_COMMENT_LEN 256 incl. NUL
        multiport_max=15, management_required=True, become=True),
    "pfsense": Platform(
        title="pfSense", role="pfsense", modes=("network",), interfaces_required=True,
        ifname_re=re.compile(r"wan|lan|opt[0-9]+|[a-z][a-z0-9_]{0,30}"),
        families=(4,), comment_max=None, multiport_max=None, management_required=False, become=False),
    "windows": Platform(
        title="Windows Firewall", role="windows", modes=("host",), interfaces_required=False,
        ifname_re=re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.()-]{0,63}"),
        families=(4, 6), comment_max=None, multiport_max=None, management_required=False, become=False),
}


def platforms_for(mode):
    """The platforms that enforce FIREWALLs of ``mode`` (network or host), in table order."""
    return tuple(name for name, spec in PLATFORMS.items() if mode in spec.modes)
