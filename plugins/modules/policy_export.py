#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: policy_export
short_description: Compute the edge firewall policy from the inventory and write the export files
version_added: "0.3.0"
description:
  - An action that runs on the controller. It computes the policy from the inventory, the same
    as P(ocs.edge_firewall.edge_policy#filter) does. Any input error stops it, naming the host
    and the variable.
  - It then writes the export under O(dest) in one step, by O(parts).
  - "C(policy): C(policy.json), the whole policy (rules by id, per-firewall rules, deployment,
    warnings)."
  - "C(matrix): C(port-matrix.md), the port matrix by seed table and figure."
  - "C(aerleon): C(aerleon/def/*.yaml) and C(aerleon/policies/pol/<firewall>.yaml), the Aerleon
    input (docs/aerleon.md)."
  - "C(figures): C(figure7-<site>.gv), the page's Figure 7 per site as Graphviz source. Graphviz
    C(dot) renders it to O(figure_formats), in parallel, and only when the source changed or a
    rendering is missing. Without C(dot) only the sources are written, with a warning."
  - A file is written only when its content differs, and atomically (a reader sees the old file
    or the new one). Files of the export's own naming patterns that this export did not produce
    are removed (O(prune)), for example the Aerleon policy of a firewall that left the inventory.
    Nothing else in O(dest) is touched.
  - This is what C(playbooks/export_policy.yml) runs. One task instead of one per file keeps a
    10,000-server export within seconds (docs/benchmark.md).
author:
  - OCS edge firewall maintainers (@ocs-edge)
options:
  dest:
    description:
      - The export folder, created when missing. A relative path is relative to the directory
        ansible-playbook runs in.
    type: path
    required: true
  parts:
    description: What to write.
    type: list
    elements: str
    choices: [policy, matrix, aerleon, figures]
    default: [policy, matrix, aerleon, figures]
  figure_formats:
    description: The formats Graphviz renders each C(figure7-<site>.gv) to.
    type: list
    elements: str
    choices: [svg, png, pdf]
    default: [svg, png]
  hosts:
    description:
      - The inventory hosts to compute the policy from. The default is every host of the
        inventory.
    type: list
    elements: str
  prune:
    description: Remove the stale files of the export's own naming patterns in the selected O(parts).
    type: bool
    default: true
requirements:
  - Graphviz C(dot) on the controller, to render the figures (optional).
notes:
  - Runs on the controller only; it needs no connection to any host.
seealso:
  - plugin: ocs.edge_firewall.edge_policy
    plugin_type: filter
  - module: ocs.edge_firewall.diagram_render
attributes:
  action:
    support: full
    description: Runs on the controller as an action plugin.
  check_mode:
    support: full
    description: Reports the files that would be written, rendered or removed, and writes nothing.
  diff_mode:
    support: full
    description: >-
      Shows the before and after of every changed text file up to 64 KiB. Larger files and
      removed files are named only.
  platform:
    support: full
    platforms: posix
    description: Target OS/families that can be operated against.
    details: The controller.
"""

EXAMPLES = r"""
- name: Export the policy of the whole inventory
  ocs.edge_firewall.policy_export:
    dest: ocs-out/policy

- name: Only policy.json and the port matrix, for a pipeline's plan step
  ocs.edge_firewall.policy_export:
    dest: "{{ playbook_dir }}/out"
    parts: [policy, matrix]
"""

RETURN = r"""
dest:
  description: The export folder, as an absolute path.
  returned: always
  type: str
  sample: /srv/gitops/ocs-out/policy
written:
  description: The files written or rendered, relative to RV(dest); in check mode, those that would be.
  returned: always
  type: list
  elements: str
  sample: [policy.json, figure7-central.gv, figure7-central.svg]
removed:
  description: The stale files removed (in check mode, that would be removed), relative to RV(dest).
  returned: always
  type: list
  elements: str
  sample: [aerleon/policies/pol/fw-ext-old.yaml]
counts:
  description: The sizes of the policy and of the export.
  returned: always
  type: dict
  sample: {rules: 74, firewalls: 4, sites: 2, files: 12}
"""
