# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible's hostvars -> the plain per-host view the policy engine reads.

Shared by the edge_policy filter and the policy_export action: both hand build_policy the
same view, so a policy.json written by either is the same.
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plain import plain
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import (
    ALL_VARS,
    KNOWN_VARS,
    OCS_LIKE,
    UNREAD,
    build_policy,
)


def host_view(hv, shared):
    """One host's ocs_* variables as plain data.

    A group variable (ocs_arrays, ocs_sites, ...) is the same raw object on every host of the
    group: it is converted once and shared, not once per host (10,000 hosts x a 10,000-entry
    ocs_arrays would be quadratic). Only values without a template are shared, since a template
    may depend on the host.
    """
    raw = getattr(hv, "_vars", None)  # HostVarsVars: the untemplated variables
    view = {}
    for var in hv:
        if var not in ALL_VARS and not OCS_LIKE.match(var):
            continue
        value = raw.get(var) if isinstance(raw, Mapping) else None
        if var not in ALL_VARS:
            if var not in KNOWN_VARS:
                view[var] = UNREAD  # named in the unknown-variable check; never templated
            continue
        elif isinstance(value, (Mapping, list)) and id(value) in shared:
            view[var] = shared[id(value)][1]
        else:
            converted = plain(hv[var])
            if isinstance(value, (Mapping, list)) and not _has_template(value):
                shared[id(value)] = (value, converted)  # keeps value alive, so its id is not reused
            view[var] = converted
    return view


def _has_template(value):
    if isinstance(value, Mapping):
        return any(_has_template(k) or _has_template(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_template(v) for v in value)
    return isinstance(value, str) and ("{{" in value or "{%" in value or "{#" in value)


def policy_from_hostvars(hostvars, hosts=None):
    """The policy of `hosts` (default: every inventory host); raises PolicyError."""
    names = list(hosts) if hosts is not None else list(hostvars.keys())
    view, shared = {}, {}
    for host in names:
        view[str(host)] = host_view(hostvars[host], shared)
    return build_policy(view)
