#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: live_rules
short_description: Read what a firewall enforces, as flow rules for the flow query
version_added: "0.2.0"
description:
  - Reads the live rule set of one firewall and returns it in the neutral form the flow query
    walks (P(ocs.edge_firewall.edge_flow_query#filter) with its C(live) argument,
    C(playbooks/query_flow.yml -e live=true)), so the question "would this flow pass" is
    answered from what is enforced, next to the policy's answer.
  - "nftables: the collection's table (O(table), C(nft -j list table inet ocs_edge)); its base
    chains by hook, every rule in order with its verdict. Other tables are listed in
    RV(other_tables) but not evaluated."
  - "iptables: every chain of the C(filter) table (C(iptables-save -t filter)), built-in chains
    with their policy, so a rule inserted before the collection's jump counts as it does in
    the kernel."
  - "pfSense: the filter rules of O(config_path) (config.xml), one chain per interface, quick
    floating rules first, disabled rules left out; aliases resolved."
  - Read-only; never changes the firewall.
author:
  - ocs.edge_firewall maintainers
options:
  platform:
    description: The firewall's platform (the policy's C(platform)).
    type: str
    required: true
    choices: [nftables, iptables, pfsense]
  table:
    description: nftables table (family inet) the collection manages.
    type: str
    default: ocs_edge
  config_path:
    description: pfSense configuration file.
    type: path
    default: /cf/conf/config.xml
notes:
  - Windows Firewall is not read (its rules are not walked by the flow query).
  - Matches the flow query cannot judge (for example marks, sets, negations) are returned in
    each rule's C(unsupported) and reported by the query, never taken as matching.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Read what fw-ext enforces
  ocs.edge_firewall.live_rules:
    platform: nftables
  register: fw_live
"""

RETURN = r"""
live:
  description: "C(platform), C(hooks) (hook -> entry chain), C(interface_chains) (pfSense:
    interface -> chain) and C(chains) (name -> C(policy) and C(rules), each with C(id),
    C(protocol), C(src), C(dst), C(sport), C(dport), C(new), C(action), C(interfaces),
    C(unsupported), C(text))."
  returned: always
  type: dict
other_tables:
  description: nftables tables other than O(table) (not evaluated).
  returned: when platform is nftables
  type: list
  elements: str
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables as iptlib
from ansible_collections.ocs.edge_firewall.plugins.module_utils import liveflow
from ansible_collections.ocs.edge_firewall.plugins.module_utils import nftables as nftlib
from ansible_collections.ocs.edge_firewall.plugins.module_utils import pfsense as pflib
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import FirewallError


def read_nftables(module):
    """The backend's live reader (NftBackend.read_live: the collection's table), as flow rules."""
    backend = nftlib.NftBackend("live_rules", nftlib.Nft(module.run_command, module.get_bin_path("nft", required=True)),
                                module.params["table"])
    others = sorted("%s %s" % t for t in backend.nft.list_tables() if t != (nftlib.FAMILY, backend.table))
    return liveflow.nft_flow_rules(backend.read_live(), nftlib.render_rule), others


def read_iptables(module):
    """The backend's reader (Ipt.read: iptables-save -t filter), every chain of the table: the
    backend compares only its own chains, but a rule before its jump decides a flow too."""
    def run(argv, data=None):
        return module.run_command(argv, data=data, binary_data=data is not None)
    ipt = iptlib.Ipt(run, module.get_bin_path("iptables-save", required=True))
    _owned, text = ipt.read()
    return liveflow.ipt_flow_rules(text, iptlib.parse_rule_line)


def read_pfsense(module):
    data = pflib.read_bytes(module.params["config_path"])
    if data is None:
        module.fail_json(msg="pfsense: %s does not exist" % module.params["config_path"])
    return liveflow.pfsense_flow_rules(pflib.parse_config(data))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            platform=dict(type="str", required=True, choices=["nftables", "iptables", "pfsense"]),
            table=dict(type="str", default="ocs_edge"),
            config_path=dict(type="path", default="/cf/conf/config.xml"),
        ),
        supports_check_mode=True,
    )
    result = {"changed": False}
    try:
        if module.params["platform"] == "nftables":
            result["live"], result["other_tables"] = read_nftables(module)
        elif module.params["platform"] == "iptables":
            result["live"] = read_iptables(module)
        else:
            result["live"] = read_pfsense(module)
    except (FirewallError, pflib.PfSenseError, ValueError, OSError) as exc:
        module.fail_json(msg="%s: %s" % (module.params["platform"], exc))
    # plain JSON (tuples from the parsers become lists)
    result["live"] = json.loads(json.dumps(result["live"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
