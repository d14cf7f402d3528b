# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: windows_firewall_rules (FIREWALL -> win_firewall_rule parameters) and
windows_firewall_plan (desired + current -> create/update/remove).

Documentation: windows_firewall_rules.yml and windows_firewall_plan.yml beside this file.
The logic is in plugins/plugin_utils/windows.py.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plain import plain
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.windows import (
    DEFAULT_GROUP,
    DEFAULT_PREFIX,
    PROFILES,
    WindowsFirewallError,
    compare,
    desired,
)


def windows_firewall_rules(firewall, name="host", group=DEFAULT_GROUP, profiles=PROFILES, prefix=DEFAULT_PREFIX):
    """`ocs_firewall | ocs.edge_firewall.windows_firewall_rules(...)` -> list of parameter dicts."""
    try:
        return desired(plain(firewall), name=str(name), group=str(group), profiles=plain(profiles),
                       prefix=str(prefix) if prefix is not None else "")
    except WindowsFirewallError as exc:
        raise AnsibleFilterError(str(exc)) from None


def windows_firewall_plan(rules, current, group=DEFAULT_GROUP, name="host", prefix=DEFAULT_PREFIX):
    """`desired | ocs.edge_firewall.windows_firewall_plan(current, ...)` -> the plan dict."""
    try:
        return compare(plain(rules), plain(current), group=str(group), name=str(name),
                       prefix=str(prefix) if prefix is not None else "")
    except WindowsFirewallError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"windows_firewall_rules": windows_firewall_rules, "windows_firewall_plan": windows_firewall_plan}
