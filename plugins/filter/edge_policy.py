# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: edge_policy (inventory -> policy) and edge_port_matrix (policy -> Markdown).

Documentation: edge_policy.yml and edge_port_matrix.yml beside this file.
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import (
    ALL_VARS,
    PolicyError,
    build_policy,
)
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.matrix import port_matrix


def _plain(value):
    """Ansible's lazy/tagged containers -> plain dicts, lists and strings."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def edge_policy(hostvars, hosts=None):
    """`hostvars | ocs.edge_firewall.edge_policy` -> the policy dict."""
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("edge_policy expects hostvars (a mapping of host -> vars), got %s"
                                 % type(hostvars).__name__)
    names = list(hosts) if hosts is not None else list(hostvars.keys())
    view = {}
    for host in names:
        hv = hostvars[host]
        view[str(host)] = {var: _plain(hv[var]) for var in ALL_VARS if var in hv}
    try:
        return build_policy(view)
    except PolicyError as exc:
        raise AnsibleFilterError(str(exc)) from None


def edge_port_matrix(policy):
    """`policy | ocs.edge_firewall.edge_port_matrix` -> Markdown text."""
    return port_matrix(_plain(policy))


class FilterModule:
    def filters(self):
        return {"edge_policy": edge_policy, "edge_port_matrix": edge_port_matrix}
