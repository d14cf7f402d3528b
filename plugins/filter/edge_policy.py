# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: edge_policy (inventory -> policy), edge_port_matrix (policy -> Markdown) and
edge_platform (platform name -> its entry of the platform table).

Documentation: edge_policy.yml, edge_port_matrix.yml and edge_platform.yml beside this file.
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import (
    ALL_VARS,
    KNOWN_VARS,
    OCS_LIKE,
    UNREAD,
    PolicyError,
    build_policy,
)
from ansible_collections.ocs.edge_firewall.plugins.module_utils.platforms import PLATFORMS
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.matrix import port_matrix
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plain import plain


def _host_view(hv, shared):
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


def edge_policy(hostvars, hosts=None):
    """`hostvars | ocs.edge_firewall.edge_policy` -> the policy dict."""
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("edge_policy expects hostvars (a mapping of host -> vars), got %s"
                                 % type(hostvars).__name__)
    names = list(hosts) if hosts is not None else list(hostvars.keys())
    view, shared = {}, {}
    for host in names:
        view[str(host)] = _host_view(hostvars[host], shared)
    try:
        return build_policy(view)
    except PolicyError as exc:
        raise AnsibleFilterError(str(exc)) from None


def edge_port_matrix(policy):
    """`policy | ocs.edge_firewall.edge_port_matrix` -> Markdown text."""
    return port_matrix(plain(policy))


def edge_platform(platform):
    """`ocs_firewall.platform | ocs.edge_firewall.edge_platform` -> {role, modes, become, ...}."""
    spec = PLATFORMS.get(str(platform))
    if spec is None:
        raise AnsibleFilterError("edge_platform: %r is not one of %s" % (platform, ", ".join(PLATFORMS)))
    return {k: (v.pattern if hasattr(v, "pattern") else list(v) if isinstance(v, tuple) else v)
            for k, v in spec._asdict().items()}


class FilterModule:
    def filters(self):
        return {"edge_policy": edge_policy, "edge_port_matrix": edge_port_matrix, "edge_platform": edge_platform}
