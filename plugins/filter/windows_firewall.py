# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: windows_firewall_rules (FIREWALL -> win_firewall_rule parameters) and
windows_firewall_plan (desired + current -> create/update/remove).

Documentation: windows_firewall_rules.yml and windows_firewall_plan.yml beside this file.
The logic is in plugins/plugin_utils/windows.py.
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.windows import (
    DEFAULT_GROUP,
    DEFAULT_PREFIX,
    PROFILES,
    WindowsFirewallError,
    firewall_rules,
    plan,
)


def _plain(value):
    """Ansible's lazy/tagged containers -> plain dicts, lists and scalars."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    return value


def windows_firewall_rules(firewall, name="host", group=DEFAULT_GROUP, profiles=PROFILES, prefix=DEFAULT_PREFIX):
    """`ocs_firewall | ocs.edge_firewall.windows_firewall_rules(...)` -> list of parameter dicts."""
    try:
        return firewall_rules(_plain(firewall), name=str(name), group=str(group), profiles=_plain(profiles),
                              prefix=str(prefix) if prefix is not None else "")
    except WindowsFirewallError as exc:
        raise AnsibleFilterError(str(exc)) from None


def windows_firewall_plan(desired, current, group=DEFAULT_GROUP, name="host"):
    """`desired | ocs.edge_firewall.windows_firewall_plan(current, ...)` -> the plan dict."""
    try:
        return plan(_plain(desired), _plain(current), group=str(group), name=str(name))
    except WindowsFirewallError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"windows_firewall_rules": windows_firewall_rules, "windows_firewall_plan": windows_firewall_plan}
