# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: edge_plan (base policy + new policy -> the plan) and edge_plan_markdown (plan -> Markdown).

Documentation: edge_plan.yml and edge_plan_markdown.yml beside this file.
The logic is in plugins/plugin_utils/plan.py and plan_markdown.py.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plain import plain
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plan import (
    PLATFORM_OPTIONS,
    PlanError,
    build_plan,
)
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plan_markdown import plan_markdown


def _options(policy, hostvars):
    """host -> the role variables (ocs_nftables_table, ...) it sets, for every firewall of the policy."""
    names = set(n for _role, ns in PLATFORM_OPTIONS.values() for n in ns)
    out = {}
    for host in (policy.get("firewalls") or {}):
        if hostvars is not None and host in hostvars:
            hv = hostvars[host]
            out[host] = {n: plain(hv[n]) for n in names if n in hv}
    return out


def edge_plan(policy, base, hostvars=None, base_label="base", new_label="inventory"):
    """`ocs_policy | ocs.edge_firewall.edge_plan(base_policy, hostvars=hostvars)` -> the plan dict."""
    new = plain(policy)
    try:
        return build_plan(plain(base), new, _options(new, hostvars), str(base_label), str(new_label))
    except PlanError as exc:
        raise AnsibleFilterError(str(exc)) from None


def edge_plan_markdown(plan):
    """`plan | ocs.edge_firewall.edge_plan_markdown` -> Markdown text."""
    return plan_markdown(plain(plan))


class FilterModule:
    def filters(self):
        return {"edge_plan": edge_plan, "edge_plan_markdown": edge_plan_markdown}
