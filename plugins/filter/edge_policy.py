# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: edge_policy (inventory -> policy), edge_port_matrix (policy -> Markdown) and
edge_platform (platform name -> its entry of the platform table).

Documentation: edge_policy.yml, edge_port_matrix.yml and edge_platform.yml beside this file.
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import PolicyError
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.hostvars_view import policy_from_hostvars
from ansible_collections.ocs.edge_firewall.plugins.module_utils.platforms import PLATFORMS
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.matrix import port_matrix
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plain import plain


def edge_policy(hostvars, hosts=None):
    """`hostvars | ocs.edge_firewall.edge_policy` -> the policy dict."""
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("edge_policy expects hostvars (a mapping of host -> vars), got %s"
                                 % type(hostvars).__name__)
    try:
        return policy_from_hostvars(hostvars, hosts)
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
