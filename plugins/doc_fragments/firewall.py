# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Documentation shared by the ruleset modules.

    ``ocs.edge_firewall.firewall``: the structure of O(firewall) (the FIREWALL of
    docs/policy-model.md), the same for every ruleset module. It gives only ``suboptions``: each
    module states the option's ``description`` and ``type`` (and ``required``) itself, because
    they differ (the platform it must name; pfsense_ruleset takes it as C(raw) and requires it).
    Ansible merges a module's keys of an option over the fragment's.

    ``ocs.edge_firewall.firewall.linux``: the options of backend.ruleset_argument_spec whose
    meaning is the same for nft_ruleset and iptables_ruleset.
    """

    DOCUMENTATION = r"""
options:
  firewall:
    suboptions:
      side:
        description: Which firewall of the page this is; C(host) for a server protecting itself.
        type: str
        choices: [internal, external, host]
      site:
        description: The site the firewall belongs to (C(central) or a remote site's name).
        type: str
      platform:
        description:
          - Enforcement platform of the policy. When given it must be the module's own
            (C(nftables) for M(ocs.edge_firewall.nft_ruleset), C(iptables) for
            M(ocs.edge_firewall.iptables_ruleset), C(pfsense) for M(ocs.edge_firewall.pfsense_ruleset)).
        type: str
        choices: [nftables, iptables, pfsense, windows]
      mode:
        description:
          - C(network) (a router between zones) or C(host) (protects itself).
            M(ocs.edge_firewall.pfsense_ruleset) takes only C(network).
        type: str
        choices: [network, host]
      interfaces:
        description:
          - Zone (C(internet), C(perimeter), C(internal)) -> interface (a Linux interface name; on
            pfSense the interface id, see O(firewall)); C({}) when not given.
        type: dict
      management:
        description: Who may always reach the firewall itself (never empty for a Linux firewall).
        type: dict
        suboptions:
          sources:
            description: CIDRs or addresses of the management hosts.
            type: list
            elements: str
          ports:
            description: TCP ports of the management connection (numbers or strings).
            type: list
            elements: raw
      rules:
        description:
          - The PFRULE list, in order. Each also carries C(table), C(figure), C(server_role),
            C(service) and C(direction), copied from the seed row.
        type: list
        elements: dict
        suboptions:
          id:
            description: Rule id, unique in the policy, for example C(central-t20-f14-out).
            type: str
          protocol:
            description: Transport protocol.
            type: str
            choices: [tcp, udp]
          src:
            description: Source addresses (IPs or CIDRs); null for any.
            type: list
            elements: str
          dst:
            description: Destination addresses (IPs or CIDRs); null for any.
            type: list
            elements: str
          sport:
            description: Source ports, C(N) or C(N-M); null for any.
            type: list
            elements: str
          dport:
            description: Destination ports, C(N) or C(N-M); null for any.
            type: list
            elements: str
          src_zone:
            description: Zone the first packet comes from.
            type: str
            choices: [internet, perimeter, internal]
          dst_zone:
            description: Zone the first packet goes to.
            type: str
            choices: [internet, perimeter, internal]
          chain:
            description: C(forward) on a network firewall; C(input) or C(output) on a host firewall.
            type: str
            choices: [forward, input, output]
          comment:
            description: Text carried by every rendered rule (rule id, seed table, figure, role, service).
            type: str
      no_nat:
        description:
          - The perimeter server addresses this firewall must not translate (network firewalls
            only), each with the server roles that use it; the C(av_edge) entries are the page's
            minimum. The Linux modules check that nothing translates them (their option
            C(nat_check)); pfsense_ruleset keeps C(Do not NAT) rules for them (its option C(no_nat)).
          - When absent they are derived from the rules' perimeter-side addresses.
        type: list
        elements: dict
        suboptions:
          address:
            description: IP address of the perimeter server.
            type: str
          roles:
            description: Server roles using that address (C(av_edge), C(access_edge), ...).
            type: list
            elements: str
"""

    LINUX = r"""
options:
  mode:
    description: C(network) (forward chain) or C(host) (input/output chains). Used with O(rules).
    type: str
    choices: [network, host]
    default: network
  management:
    description:
      - "C({sources: [CIDR, ...], ports: [22]}): who may always reach the firewall itself.
        Used with O(rules). Must not be empty: the management connection is never cut."
    type: dict
  lock_timeout:
    description:
      - Seconds to wait for another run of the collection on this host (file lock in /run/lock)
        before failing with nothing changed. Two runs never interleave their read, apply and persist.
    type: int
    default: 120
  conntrack_flush:
    description:
      - After a correction removes an accept rule, delete the conntrack entries of the connections
        that rule let in and no desired rule allows (C(conntrack -D)); otherwise they keep flowing,
        as replies, until they time out. Only entries of the removed rule's chain are considered
        (forward, input or output of this host). Needs the C(conntrack) tool (a warning without it).
      - In check mode the entries are listed, not deleted. C(false) keeps them.
    type: bool
    default: true
  nat_check:
    description:
      - "NAT that would translate the A/V Edge's address on this firewall's side (the page: the
        firewalls must not NAT it): C(fail) (default) stops before anything is changed, naming
        table, chain and rule; C(warn) only warns."
      - "The A/V addresses are the FIREWALL's C(no_nat) list when the policy gives one, else the
        perimeter-side addresses of its C(av_edge) rules."
    type: str
    choices: [fail, warn]
    default: fail
"""
