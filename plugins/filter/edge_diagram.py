# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter edge_diagram: the page's Figure 7 per site, as graph data and Graphviz DOT source.

Documentation: edge_diagram.yml beside this file. The logic is plugins/plugin_utils/diagram.py;
rendering is the module ocs.edge_firewall.diagram_render.
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plain import plain
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.diagram import site_graphs


def edge_diagram(policy):
    """`policy | ocs.edge_firewall.edge_diagram` -> {site: {"graph": data, "dot": source}}."""
    if not isinstance(policy, Mapping) or "deployment" not in policy:
        raise AnsibleFilterError("edge_diagram expects the policy (hostvars | ocs.edge_firewall.edge_policy)")
    return site_graphs(plain(policy))


class FilterModule:
    def filters(self):
        return {"edge_diagram": edge_diagram}
