"""Every bad input is an error that names the host and the variable, before anything runs."""
import copy

import pytest

from inventory_loader import example

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import PolicyError, build_policy


def _set_all(hv, var, value):
    for h in hv.values():
        if value is None:
            h.pop(var, None)
        else:
            h[var] = value


def broken(topology, change):
    hv = copy.deepcopy(example(topology))
    change(hv)
    with pytest.raises(PolicyError) as info:
        build_policy(hv)
    return str(info.value), info.value.errors


CASES = {
    "missing address": ("single_site", lambda hv: hv["ae1"].pop("ocs_internal_ip"),
                        ["host ae1: ocs_internal_ip: is required"]),
    "malformed address": ("single_site", lambda hv: hv["ae1"].update(ocs_internal_ip="172.16.1.300"),
                          ["host ae1: ocs_internal_ip: '172.16.1.300' is not an IPv4 address"]),
    "non-canonical address": ("single_site", lambda hv: hv["ae1"].update(ocs_internal_ip="172.016.1.10"),
                              ["host ae1: ocs_internal_ip: '172.016.1.10'"]),
    "ipv6 address": ("single_site", lambda hv: hv["av1"].update(ocs_internal_ip="fd00::12"),
                     ["host av1: ocs_internal_ip: 'fd00::12' is IPv6"]),
    "per-role address missing": ("consolidated", lambda hv: hv["edge1"]["ocs_external_ip"].pop("av_edge"),
                                 ["host edge1: ocs_external_ip.av_edge: is required"]),
    "access edge at a remote site": (
        "multi_site", lambda hv: hv["wc-b1"].update(ocs_edge_roles=["web_conferencing_edge", "access_edge"]),
        ["host wc-b1: ocs_edge_roles: role access_edge is not allowed at remote site 'branch1'"]),
    "second A/V Edge at a multi_site remote site": (
        "multi_site", lambda hv: hv["wc-b2"].update(ocs_edge_roles=["av_edge"]),
        ["host wc-b2: ocs_edge_roles: topology multi_site allows a single A/V Edge Server"]),
    "VIP row without a VIP": ("scaled_single_site", lambda hv: _set_all(hv, "ocs_arrays", {
        **hv["av1"]["ocs_arrays"], "av_array": {"role": "av_edge", "external_vip": "203.0.113.50"}}),
        ["host av1: ocs_arrays.av_array.internal_vip: is not set, but table 20 row 1 (figure 12)"]),
    "array member without an array": ("scaled_single_site", lambda hv: hv["wc2"].pop("ocs_array"),
                                      ["host wc2: ocs_array: is not set, but table 19 row 2 (figure 6)"]),
    "undefined array": ("scaled_single_site", lambda hv: hv["wc2"].update(ocs_array="nope"),
                        ["host wc2: ocs_array: 'nope' is not defined in ocs_arrays"]),
    "A/V external address not public": (
        "scaled_single_site", lambda hv: _set_all(hv, "ocs_allow_nonpublic_av_addresses", False),
        ["host av1: ocs_external_ip: 203.0.113.51 is not a publicly routable address",
         "group_vars: ocs_arrays.av_array.external_vip: 203.0.113.50 is not a publicly routable"]),
    "next hop missing": ("single_site", lambda hv: _set_all(hv, "ocs_next_hop", None),
                         ["host ae1: ocs_next_hop: neither ocs_director nor ocs_next_hop is set"]),
    "address claimed twice": ("scaled_single_site", lambda hv: hv["av2"].update(ocs_internal_ip="172.16.1.51"),
                              ["host av2: ocs_internal_ip: address 172.16.1.51 is also claimed by host av1"]),
    "VIP equal to a server address": (
        "scaled_single_site", lambda hv: hv["wc1"].update(ocs_external_ip="203.0.113.30"),
        ["address 203.0.113.30 is also claimed by"]),
    "injection in an address": ("single_site", lambda hv: hv["wc1"].update(ocs_internal_ip="172.16.1.11; drop"),
                                ["host wc1: ocs_internal_ip: '172.16.1.11; drop' contains characters"]),
    "injection in a site name": ("multi_site", lambda hv: hv["av-b1"].update(ocs_site='branch1" accept'),
                                 ["host av-b1: ocs_site: 'branch1\" accept' must be a plain name"]),
    "newline in an interface name": (
        "consolidated", lambda hv: hv["fw-ext"].update(ocs_firewall_interfaces={"internet": "eth0\nflush", "perimeter": "eth1"}),
        ["host fw-ext: ocs_firewall_interfaces.internet: 'eth0\\nflush' must be a plain name"]),
    "quote in a host name": ("single_site", lambda hv: hv.update({"bad'host": dict(hv.pop("wc1"))}),
                             ["host bad'host: inventory_hostname:"]),
    "unknown role": ("single_site", lambda hv: hv["wc1"].update(ocs_edge_roles=["mediation"]),
                     ["host wc1: ocs_edge_roles: unknown role(s) ['mediation']"]),
    "unknown topology": ("single_site", lambda hv: _set_all(hv, "ocs_topology", "star"),
                         ["group_vars: ocs_topology: 'star' is not one of"]),
    "deployment var differs between hosts": ("single_site", lambda hv: hv["av1"].update(ocs_topology="consolidated"),
                                             ["ocs_topology: is 'consolidated' here but 'single_site' on host"]),
    "pfSense without interfaces": ("single_site", lambda hv: hv["fw-ext"].pop("ocs_firewall_interfaces"),
                                   ["host fw-ext: ocs_firewall_interfaces: is required on pfSense"]),
    "wrong zone for the side": ("consolidated", lambda hv: hv["fw-int"].update(
        ocs_firewall_interfaces={"internet": "eth0", "perimeter": "eth1"}),
        ["host fw-int: ocs_firewall_interfaces.internet: an internal firewall sits between perimeter and internal"]),
    "Linux firewall without management network": (
        "consolidated", lambda hv: hv["fw-int"].update(ocs_management_networks=[]),
        ["host fw-int: ocs_management_networks: is required and must not be empty"]),
    "management CIDR with host bits": (
        "consolidated", lambda hv: hv["fw-int"].update(ocs_management_networks=["10.99.0.1/24"]),
        ["host fw-int: ocs_management_networks[0]: '10.99.0.1/24' has host bits set"]),
    "bad management port": ("consolidated", lambda hv: hv["fw-int"].update(ocs_management_ports=["22;"]),
                            ["host fw-int: ocs_management_ports[0]: '22;' is not a TCP port number"]),
    "windows as a network firewall": ("consolidated", lambda hv: hv["fw-int"].update(ocs_firewall_platform="windows"),
                                      ["host fw-int: ocs_firewall_platform: 'windows' is not one of",
                                       "set ocs_host_firewall on the server"]),
    "unknown host firewall": ("consolidated", lambda hv: hv["rp1"].update(ocs_host_firewall="ufw"),
                              ["host rp1: ocs_host_firewall: 'ufw' is not one of"]),
    "site on a single-site topology": ("single_site", lambda hv: hv["av1"].update(ocs_site="branch9"),
                                       ["host av1: ocs_site: topology single_site has one site"]),
    # issue 11: what a hostile inventory got through
    "trailing newline in an interface name": (
        "consolidated", lambda hv: hv["fw-ext"].update(ocs_firewall_interfaces={"internet": "eth0\n", "perimeter": "eth1"}),
        ["host fw-ext: ocs_firewall_interfaces.internet: 'eth0\\n' must be a plain name"]),
    "trailing newline in a site name": ("multi_site", lambda hv: hv["av-b1"].update(ocs_site="branch1\n"),
                                        ["host av-b1: ocs_site: 'branch1\\n' must be a plain name"]),
    "trailing newline in a host name": ("single_site", lambda hv: hv.update({"wc1\n": dict(hv.pop("wc1"))}),
                                        ["host wc1\n: inventory_hostname: 'wc1\\n' must be a plain name"]),
    "string 'false' is not a boolean true": (
        "scaled_single_site", lambda hv: _set_all(hv, "ocs_allow_nonpublic_av_addresses", "false"),
        ["host av1: ocs_external_ip: 203.0.113.51 is not a publicly routable address"]),
    "list as a boolean": ("scaled_single_site", lambda hv: _set_all(hv, "ocs_allow_nonpublic_av_addresses", [False]),
                          ["group_vars: ocs_allow_nonpublic_av_addresses: must be a boolean (true/false), got a list"]),
    "unspecified address": ("single_site", lambda hv: hv["ae1"].update(ocs_internal_ip="0.0.0.0"),
                            ["host ae1: ocs_internal_ip: 0.0.0.0 is in 0.0.0.0/8"]),
    "broadcast address": ("single_site", lambda hv: hv["ae1"].update(ocs_external_ip="255.255.255.255"),
                          ["host ae1: ocs_external_ip: 255.255.255.255 is the limited broadcast address"]),
    "multicast A/V address": ("single_site", lambda hv: hv["av1"].update(ocs_external_ip="224.0.0.5"),
                              ["host av1: ocs_external_ip: 224.0.0.5 is a multicast address"]),
    "loopback Director": ("single_site", lambda hv: _set_all(hv, "ocs_director", "127.0.0.1"),
                          ["group_vars: ocs_director: 127.0.0.1 is a loopback address"]),
    "link-local VIP": ("scaled_single_site", lambda hv: _set_all(hv, "ocs_arrays", {
        **hv["av1"]["ocs_arrays"], "av_array": dict(hv["av1"]["ocs_arrays"]["av_array"], internal_vip="169.254.1.1")}),
        ["group_vars: ocs_arrays.av_array.internal_vip: 169.254.1.1 is a link-local address"]),
    "reserved address": ("single_site", lambda hv: hv["wc1"].update(ocs_internal_ip="240.0.0.1"),
                         ["host wc1: ocs_internal_ip: 240.0.0.1 is in the reserved range"]),
    "CIDR where an address is expected": ("single_site", lambda hv: _set_all(hv, "ocs_director", "10.10.1.10/24"),
                                          ["group_vars: ocs_director: '10.10.1.10/24' is a network (CIDR)"]),
    "Linux interface name over 15 characters": (
        "consolidated", lambda hv: hv["fw-int"].update(ocs_firewall_interfaces={"perimeter": "a" * 16, "internal": "eth0"}),
        ["host fw-int: ocs_firewall_interfaces.perimeter: 'aaaaaaaaaaaaaaaa' is not a Linux interface name"]),
    "pfSense interface id in upper case": (
        "single_site", lambda hv: hv["fw-ext"].update(ocs_firewall_interfaces={"internet": "WAN", "perimeter": "OPT1"}),
        ["host fw-ext: ocs_firewall_interfaces.internet: 'WAN' is not a pfSense interface id",
         "host fw-ext: ocs_firewall_interfaces.perimeter: 'OPT1' is not a pfSense interface id"]),
    "pfSense interface description instead of id": (
        "single_site", lambda hv: hv["fw-ext"].update(ocs_firewall_interfaces={"internet": "wan", "perimeter": "DMZ"}),
        ["host fw-ext: ocs_firewall_interfaces.perimeter: 'DMZ' is not a pfSense interface id"]),
    "any management network on iptables": (
        "single_site", lambda hv: hv["fw-int"].update(ocs_management_networks=["0.0.0.0/0"]),
        ["host fw-int: ocs_management_networks[0]: 0.0.0.0/0 (any address) is not supported on iptables"]),
    "null roles": ("single_site", lambda hv: hv["wc1"].update(ocs_edge_roles=None),
                   ["host wc1: ocs_edge_roles: is null"]),
    "typo in a variable name": ("single_site", lambda hv: hv["wc1"].update(ocs_edge_role=hv["wc1"].pop("ocs_edge_roles")),
                                ["host wc1: ocs_edge_role: is not a variable of ocs.edge_firewall; did you mean ocs_edge_roles?"]),
    "empty management ports": ("consolidated", lambda hv: hv["fw-int"].update(ocs_management_ports=[]),
                               ["host fw-int: ocs_management_ports: is empty"]),
    "internal address equal to external": (
        "single_site", lambda hv: hv["wc1"].update(ocs_external_ip=hv["wc1"]["ocs_internal_ip"]),
        ["host wc1: ocs_internal_ip: address 172.16.1.11 is also this server's ocs_external_ip"]),
    "injection in an unused array's site": ("scaled_single_site", lambda hv: _set_all(hv, "ocs_arrays", {
        **hv["av1"]["ocs_arrays"], "spare": {"role": "av_edge", "site": 'x" accept'}}),
        ["group_vars: ocs_arrays.spare.site: 'x\" accept' must be a plain name"]),
    "unused array at an unknown site": ("scaled_single_site", lambda hv: _set_all(hv, "ocs_arrays", {
        **hv["av1"]["ocs_arrays"], "spare": {"role": "av_edge", "site": "nowhere"}}),
        ["group_vars: ocs_arrays.spare.site: 'nowhere' is not a site of this deployment"]),
    "topology as a list": ("single_site", lambda hv: _set_all(hv, "ocs_topology", ["single_site"]),
                           ["group_vars: ocs_topology: ['single_site'] is not one of"]),
    "topology as a dict": ("single_site", lambda hv: _set_all(hv, "ocs_topology", {"a": 1}),
                           ["group_vars: ocs_topology: {'a': 1} is not one of"]),
    "null site": ("multi_site", lambda hv: hv["av-b1"].update(ocs_site=None), ["host av-b1: ocs_site: is null"]),
    "lone surrogate in a site": ("multi_site", lambda hv: hv["av-b1"].update(ocs_site="b\ud800"),
                                 ["host av-b1: ocs_site: 'b\\ud800' must be a plain name"]),
    "roles as a list of lists": ("single_site", lambda hv: hv["wc1"].update(ocs_edge_roles=[["av_edge"]]),
                                 ["host wc1: ocs_edge_roles: unknown role(s) [['av_edge']]"]),
    "array keys of mixed types": ("scaled_single_site", lambda hv: _set_all(hv, "ocs_arrays", {
        **hv["av1"]["ocs_arrays"], "x": {"role": "av_edge", 1: 2, "b": 3}}),
        ["group_vars: ocs_arrays.x: unknown key(s) 'b', 1"]),
    # ocs_intranet_networks is checked whether or not the 443 opt-in is on (off in the examples)
    "intranet networks as a string": ("single_site", lambda hv: _set_all(hv, "ocs_intranet_networks", "10.10.0.0/16"),
                                      ["group_vars: ocs_intranet_networks: must be a non-empty list of the "
                                       "intranet's IPv4 networks (CIDRs), got a string '10.10.0.0/16'"]),
    "intranet networks empty": ("single_site", lambda hv: _set_all(hv, "ocs_intranet_networks", []),
                                ["group_vars: ocs_intranet_networks: must be a non-empty list"]),
    "intranet networks as any": ("single_site", lambda hv: _set_all(hv, "ocs_intranet_networks", "any"),
                                 ["group_vars: ocs_intranet_networks: must be a non-empty list"]),
    "intranet network not a CIDR": ("single_site", lambda hv: _set_all(hv, "ocs_intranet_networks", ["intranet"]),
                                    ["group_vars: ocs_intranet_networks[0]: 'intranet' is not an IPv4 address or CIDR"]),
    "intranet network with host bits": (
        "single_site", lambda hv: _set_all(hv, "ocs_intranet_networks", ["10.10.0.0/16", "10.20.0.1/16"]),
        ["group_vars: ocs_intranet_networks[1]: '10.20.0.1/16' has host bits set (did you mean 10.20.0.0/16?)"]),
    "intranet network of any address": ("single_site", lambda hv: _set_all(hv, "ocs_intranet_networks", ["0.0.0.0/0"]),
                                        ["group_vars: ocs_intranet_networks[0]: 0.0.0.0/0 is any address"]),
    "intranet network with a control character": (
        "single_site", lambda hv: _set_all(hv, "ocs_intranet_networks", ["10.10.0.0/16\x00"]),
        ["group_vars: ocs_intranet_networks[0]: '10.10.0.0/16\\x00' is not an IPv4 address or CIDR"]),
    "intranet network with a newline": (
        "single_site", lambda hv: _set_all(hv, "ocs_intranet_networks", ["10.10.0.0/16\n"]),
        ["group_vars: ocs_intranet_networks[0]: '10.10.0.0/16\\n' is not an IPv4 address or CIDR"]),
    "intranet network as a number": ("single_site", lambda hv: _set_all(hv, "ocs_intranet_networks", [10]),
                                     ["group_vars: ocs_intranet_networks[0]: must be an IPv4 address or CIDR "
                                      "string, got a number 10"]),
    "intranet network IPv6": ("single_site", lambda hv: _set_all(hv, "ocs_intranet_networks", ["fd00::/8"]),
                              ["group_vars: ocs_intranet_networks[0]: 'fd00::/8' is IPv6"]),
    "intranet network with host bits, opt-in on": (
        "single_site", lambda hv: (_set_all(hv, "ocs_intranet_networks", ["10.20.0.1/16"]),
                                   _set_all(hv, "ocs_reverse_proxy_intranet_443_outbound", True)),
        ["group_vars: ocs_intranet_networks[0]: '10.20.0.1/16' has host bits set"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_error_names_host_and_variable(name):
    topology, change, needles = CASES[name]
    text, _ignored = broken(topology, change)
    for needle in needles:
        assert needle in text, "%s\n--- got:\n%s" % (needle, text)


def test_all_errors_reported_at_once():
    def two(hv):
        hv["ae1"].pop("ocs_internal_ip")
        hv["av1"]["ocs_external_ip"] = "999.1.1.1"
    _ignored, errors = broken("single_site", two)
    assert any(e.startswith("host ae1: ocs_internal_ip") for e in errors)
    assert any(e.startswith("host av1: ocs_external_ip") for e in errors)


def test_nonpublic_opt_out_is_a_warning():
    policy = build_policy(example("scaled_single_site"))
    assert any("203.0.113.51 is not a publicly routable" in w and "ocs_allow_nonpublic_av_addresses" in w
               for w in policy["warnings"])


def test_public_av_address_needs_no_opt_out():
    hv = copy.deepcopy(example("single_site"))
    _set_all(hv, "ocs_allow_nonpublic_av_addresses", False)
    hv["av1"]["ocs_external_ip"] = "8.8.4.4"
    policy = build_policy(hv)
    assert not any("publicly routable" in w for w in policy["warnings"])


def test_director_replaces_next_hop_and_any():
    hv = copy.deepcopy(example("single_site"))
    _set_all(hv, "ocs_director", "10.10.1.10")
    rules = {r["id"]: r for r in build_policy(hv)["rules"]}
    assert rules["central-t14-f5-in"]["remote_addresses"] == ["10.10.1.10"]
    assert rules["central-t14-f5-out"]["remote_addresses"] == ["10.10.1.10"]


@pytest.mark.parametrize("word,expected", [("false", False), ("no", False), ("0", False), ("off", False),
                                           ("True", True), ("yes", True), ("1", True), (0, False), (1, True)])
def test_boolean_words_are_parsed_strictly(word, expected):
    hv = copy.deepcopy(example("scaled_single_site"))
    _set_all(hv, "ocs_allow_nonpublic_av_addresses", word)
    if expected:
        assert any("allowed by ocs_allow_nonpublic_av_addresses" in w for w in build_policy(hv)["warnings"])
    else:
        with pytest.raises(PolicyError, match="203.0.113.51 is not a publicly routable"):
            build_policy(hv)


def test_every_error_at_once_with_a_bad_topology():
    def many(hv):
        _set_all(hv, "ocs_topology", "star")
        hv["ae1"]["ocs_internal_ip"] = "0.0.0.0"
        hv["wc1"]["ocs_edge_role"] = ["x"]
    _ignored, errors = broken("single_site", many)
    assert any(e.startswith("group_vars: ocs_topology:") for e in errors)
    assert any(e.startswith("host ae1: ocs_internal_ip: 0.0.0.0") for e in errors)
    assert any(e.startswith("host wc1: ocs_edge_role:") for e in errors)


def test_lab_and_role_variables_are_known():
    hv = copy.deepcopy(example("single_site"))
    hv["fw-int"].update(ocs_nftables_table="x", ocs_lab_name="lab", ocs_verify_policy={}, ocs_policy={})
    build_policy(hv)
