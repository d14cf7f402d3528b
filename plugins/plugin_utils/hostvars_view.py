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

    A value is read raw when it holds no template and only plain types: templating it would
    return it unchanged, and 10,000 hosts x a dozen variables through the template engine is
    seconds. Anything else (a template, a vaulted value) goes through hostvars as before.
    A group variable (ocs_arrays, ocs_sites, ...) is the same raw object on every host of the
    group: it is converted once and shared, not once per host (10,000 hosts x a 10,000-entry
    ocs_arrays would be quadratic).
    """
    # HostVarsVars: the untemplated variables; a plain dict (ansible-inventory --list, the plan's
    # base inventory) is read as it is
    raw = getattr(hv, "_vars", hv)
    raw = raw if isinstance(raw, Mapping) else hv
    view = {}
    for var in hv:
        if var not in ALL_VARS and not OCS_LIKE.match(var):
            continue
        if var not in ALL_VARS:
            if var not in KNOWN_VARS:
                view[var] = UNREAD  # named in the unknown-variable check; never templated
            continue
        value = raw.get(var)
        if isinstance(value, (Mapping, list)) and id(value) in shared:
            view[var] = shared[id(value)][1]
            continue
        converted = _untemplated(value)
        if converted is _TEMPLATED:
            converted = plain(hv[var])
        elif isinstance(value, (Mapping, list)):
            shared[id(value)] = (value, converted)  # keeps value alive, so its id is not reused
        view[var] = converted
    return view


_TEMPLATED = object()
_TEMPLATE_MARKS = ("{{", "{%", "{#")


def _untemplated(value):
    """`value` as plain data, or _TEMPLATED when the template engine must see it (a template
    anywhere in it, or a type other than the plain ones, such as a vaulted string)."""
    if isinstance(value, str):
        return _TEMPLATED if any(mark in value for mark in _TEMPLATE_MARKS) else str(value)
    if isinstance(value, bool) or value is None:
        return value if value is None else bool(value)
    if isinstance(value, (int, float)):
        return value if isinstance(value, float) else int(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            key_plain, item_plain = _untemplated(key), _untemplated(item)
            if key_plain is _TEMPLATED or item_plain is _TEMPLATED:
                return _TEMPLATED
            out[str(key_plain)] = item_plain
        return out
    if isinstance(value, (list, tuple)):
        out = [_untemplated(item) for item in value]
        return _TEMPLATED if any(item is _TEMPLATED for item in out) else out
    return _TEMPLATED


def policy_from_hostvars(hostvars, hosts=None):
    """The policy of `hosts` (default: every inventory host); raises PolicyError."""
    names = list(hosts) if hosts is not None else list(hostvars.keys())
    view, shared = {}, {}
    for host in names:
        view[str(host)] = host_view(hostvars[host], shared)
    return build_policy(view)
