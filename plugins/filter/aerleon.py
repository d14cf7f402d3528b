# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter edge_aerleon: policy -> Aerleon policy and definition files.

Documentation: edge_aerleon.yml beside this file; the layout and the aclgen command:
docs/aerleon.md.
"""
from __future__ import annotations

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plain import plain
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.aerleon_export import aerleon_files


def edge_aerleon(policy):
    """`policy | ocs.edge_firewall.edge_aerleon` -> {relative path: text}."""
    return aerleon_files(plain(policy))


class FilterModule:
    def filters(self):
        return {"edge_aerleon": edge_aerleon}
