# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter edge_diagram: the page's Figure 7 per site, as graph data and Graphviz DOT source.

Documentation: edge_diagram.yml beside this file. The logic is plugins/plugin_utils/diagram.py;
rendering is the module ocs.edge_firewall.diagram_render.
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.diagram import site_graphs


def _plain(value):
    """Ansible's lazy/tagged containers -> plain dicts, lists and scalars."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def edge_diagram(policy):
    """`policy | ocs.edge_firewall.edge_diagram` -> {site: {"graph": data, "dot": source}}."""
    if not isinstance(policy, Mapping) or "deployment" not in policy:
        raise AnsibleFilterError("edge_diagram expects the policy (hostvars | ocs.edge_firewall.edge_policy)")
    return site_graphs(_plain(policy))


class FilterModule:
    def filters(self):
        return {"edge_diagram": edge_diagram}
