"""Property-based: a hostile value in any inventory variable is a named error or a correct policy.

Hypothesis puts one generated value (injection characters, trailing newlines, lone surrogates,
wrong types, addresses no server can have, CIDR for an address, names too long for a platform,
boolean look-alikes, typos of variable names) into one variable of one example inventory, on one
host or on all of them (group_vars), and asserts:

- never an exception other than PolicyError (no traceback);
- a PolicyError names a host (or group_vars) and the variable, every message;
- an accepted policy is one every backend accepts too (nftables, iptables, pfSense, Windows
  renderers raise nothing: nothing is refused after other firewalls were changed), and no
  generated string with a character outside names and addresses reaches policy.json, the port
  matrix, the nftables script, the iptables rules or the Windows rule parameters.

The CI profile is derandomized (the same cases every run); OCS_HYPOTHESIS_PROFILE=dev explores
more, with a random seed.
"""
import copy
import ipaddress
import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory_loader import TOPOLOGIES, example

from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables as ipt
from ansible_collections.ocs.edge_firewall.plugins.module_utils import nftables as nft
from ansible_collections.ocs.edge_firewall.plugins.module_utils import pfsense_desired as pfs
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils import windows as win
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.matrix import port_matrix
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import (
    ALL_VARS,
    DEPLOYMENT_VARS,
    PolicyError,
    build_policy,
)

settings.register_profile("ci", max_examples=5000, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=20000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("OCS_HYPOTHESIS_PROFILE", "ci")

EXAMPLES = {t: example(t) for t in TOPOLOGIES}

# ------------------------------------------------------------------ hostile values

INJECT = ["\n", "\r", "\t", " ", ";", '"', "'", "`", "$", "{", "}", "\\", "#", "*", "|", ",", "/",
          "\x00", "\ud800", "\u200b", "\u00e9", "\uff1b"]
NAMES = ["eth0", "eth1", "wan", "lan", "opt1", "opt12", "OPT1", "DMZ", "dmz", "lo", "central", "branch1",
         "av_array", "wc_array", "a" * 15, "a" * 16, "b" * 24, "b" * 25, "h" * 63, "h" * 64, "-x", ".x", "x"]
ADDRESSES = ["0.0.0.0", "0.1.2.3", "255.255.255.255", "224.0.0.5", "239.1.1.1", "127.0.0.1", "169.254.1.1",
             "240.0.0.1", "10.10.1.10/24", "10.10.1.10/32", "172.16.1.10\n", " 172.16.1.10", "172.016.1.10",
             "172.16.1", "1", "::1", "fd00::1", "::ffff:1.2.3.4", "8.8.8.8", "203.0.113.99", "10.99.0.0/24",
             "10.99.0.1/24", "0.0.0.0/0", "10.0.0.0/8", "1.2.3.4/33", "1.2.3.4/-1", "10.99.0.0/255.255.255.0"]
WORDS = ["true", "false", "yes", "no", "on", "off", "1", "0", "True", "FALSE", "y", "n", "enabled", ""]
ROLES = ["reverse_proxy", "access_edge", "web_conferencing_edge", "av_edge", "mediation"]
TOPOS = list(TOPOLOGIES) + ["star", "Single_Site"]
PORTS = ["22", "0", "65535", "65536", "22-80", "2222\n", "22;", "-1"]


def _inject(base, char, where):
    pos = {"start": 0, "end": len(base), "middle": len(base) // 2}[where]
    return base[:pos] + char + base[pos:]


injected = st.builds(_inject, st.sampled_from(NAMES + ADDRESSES + ROLES + TOPOS + PORTS), st.sampled_from(INJECT),
                     st.sampled_from(["start", "middle", "end"]))
texts = st.one_of(st.sampled_from(NAMES + ADDRESSES + WORDS + ROLES + TOPOS + PORTS), injected, injected,
                  st.text(max_size=12))
scalars = st.one_of(texts, st.none(), st.booleans(), st.integers(-2, 70000), st.floats(allow_nan=True))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(texts, st.integers(0, 3)), inner, max_size=3)),
    max_leaves=6)
# Values of the shape a variable expects, with hostile leaves: they get past the type checks.
SHAPED = {
    "ocs_site": texts,
    "ocs_array": texts,
    "ocs_topology": texts,
    "ocs_director": texts,
    "ocs_next_hop": texts,
    "ocs_allow_nonpublic_av_addresses": st.one_of(st.sampled_from(WORDS), st.booleans(), st.integers(-1, 2), values),
    "ocs_edge_roles": st.lists(st.one_of(st.sampled_from(ROLES), texts), min_size=0, max_size=3),
    "ocs_internal_ip": st.one_of(texts, st.dictionaries(st.sampled_from(ROLES), texts, max_size=3)),
    "ocs_external_ip": st.one_of(texts, st.dictionaries(st.sampled_from(ROLES), texts, max_size=3)),
    "ocs_management_networks": st.lists(texts, max_size=3),
    "ocs_management_ports": st.lists(st.one_of(texts, st.integers(-1, 70000)), max_size=3),
    "ocs_firewall_interfaces": st.dictionaries(st.sampled_from(["internet", "perimeter", "internal", "dmz"]),
                                               texts, max_size=3),
    "ocs_sites": st.dictionaries(texts, st.fixed_dictionaries({"kind": st.one_of(
        st.sampled_from(["central", "remote"]), texts)}), max_size=3),
    "ocs_director_members": st.lists(st.one_of(st.sampled_from(ADDRESSES), texts), max_size=3),
    "ocs_role_ports": st.dictionaries(st.sampled_from(ROLES), st.one_of(
        st.sampled_from(PORTS), st.integers(-1, 70000), st.floats(), texts), max_size=2),
    "ocs_reverse_proxy_intranet_443_outbound": st.one_of(st.sampled_from(WORDS), st.booleans(), values),
    "ocs_intranet_networks": st.lists(st.one_of(st.sampled_from(ADDRESSES), texts), max_size=3),
}
# ocs_extra_rules: a valid rule with one field (or one key) hostile, so the field checks are reached.
_EXTRA_RULE = {"name": "dns", "site": "central", "firewall": "internal", "direction": "outbound",
               "protocol": "udp", "service": "DNS", "local_addresses": ["10.10.1.10"], "local_ports": ["53"],
               "remote_addresses": ["10.10.0.0/16"], "remote_ports": ["1024-65535"], "reason": "site DNS"}


@st.composite
def _extra_rules(draw):
    rule = dict(_EXTRA_RULE)
    field = draw(st.sampled_from(sorted(rule) + ["<key>"]))
    if field == "<key>":
        rule[draw(st.one_of(texts, st.integers(0, 3)))] = draw(values)
    elif field.endswith(("_addresses", "_ports")) and draw(st.booleans()):
        rule[field] = draw(st.lists(st.one_of(st.sampled_from(ADDRESSES + PORTS), texts, scalars), max_size=3))
    else:
        rule[field] = draw(st.one_of(texts, values))
    return [rule] + ([dict(_EXTRA_RULE)] if draw(st.booleans()) else [])


SHAPED["ocs_extra_rules"] = _extra_rules()


# ------------------------------------------------------------------ mutations

def _hosts_with(hv, var):
    return sorted(h for h, v in hv.items() if var in v) or sorted(hv)


@st.composite
def mutations(draw):
    """-> (topology, host vars, mutated host or None for group_vars, variable, value)."""
    topology = draw(st.sampled_from(TOPOLOGIES))
    hv = copy.deepcopy(EXAMPLES[topology])
    kind = draw(st.sampled_from(["var", "var", "var", "nested", "hostname", "typo", "interface"]))
    with_ifs = sorted(h for h, v in hv.items() if isinstance(v.get("ocs_firewall_interfaces"), dict))
    if kind == "interface" and with_ifs:  # one zone's interface name, the others kept valid
        host = draw(st.sampled_from(with_ifs))
        ifs = hv[host]["ocs_firewall_interfaces"] = dict(hv[host]["ocs_firewall_interfaces"])
        zone = draw(st.sampled_from(sorted(ifs)))
        ifs[zone] = draw(texts)
        return topology, hv, host, "ocs_firewall_interfaces.%s" % zone, ifs[zone]
    if kind == "hostname":
        old = draw(st.sampled_from(sorted(hv)))
        new = draw(texts)
        if new in hv:
            new = new + "\n"
        hv[new] = hv.pop(old)
        return topology, hv, new, "inventory_hostname", new
    if kind == "typo":
        # only the collection's own names are checked for typos (ansible_port is Ansible's)
        var = draw(st.sampled_from([v for v in ALL_VARS if v.startswith("ocs_")]))
        typo = draw(st.sampled_from([var[:-1], var + "s", var.replace("_", "-", 1), var.replace("ocs_", "ocs_x")]))
        host = draw(st.sampled_from(_hosts_with(hv, var)))
        hv[host][typo] = hv[host].pop(var, draw(values))
        return topology, hv, host, typo, None
    var = draw(st.sampled_from(ALL_VARS))
    value = draw(SHAPED[var] if var in SHAPED and draw(st.booleans()) else values)
    if kind == "nested" and isinstance(_first(hv, var), (dict, list)) and _first(hv, var):
        value = _nested(draw, copy.deepcopy(_first(hv, var)))
    if var in DEPLOYMENT_VARS and draw(st.booleans()):
        for h in hv.values():
            h[var] = value
        return topology, hv, None, var, value
    host = draw(st.sampled_from(_hosts_with(hv, var)))
    hv[host][var] = value
    return topology, hv, host, var, value


def _first(hv, var):
    return next((v[var] for v in hv.values() if var in v), None)


def _nested(draw, container):
    """Replace one leaf (or one key) somewhere inside a dict/list by a hostile value."""
    node = container
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return container
        key = draw(st.sampled_from(keys))
        if isinstance(node[key], (dict, list)) and node[key] and draw(st.booleans()):
            node = node[key]
            continue
        if isinstance(node, dict) and draw(st.booleans()):
            node[draw(texts)] = node.pop(key)
        else:
            node[key] = draw(values)
        return container


# ------------------------------------------------------------------ checks

_WHERE = re.compile(r"(host .+?|group_vars|inventory|site [A-Za-z0-9_.-]+): ", re.S)
# What may be in a rendered artifact besides names and addresses: nothing a hostile value brings.
_SAFE_TEXT = re.compile(r"[A-Za-z0-9_./:() -]*")   # the seed's service labels: "HTTP(S)"


# A valid value may have consequences elsewhere: what the error then names instead.
CONSEQUENCES = {
    "ocs_topology": ("topology",),
    "ocs_arrays": ("ocs_array",),
    "ocs_director": ("ocs_next_hop",),
    "ocs_sites": ("site",),
    "ocs_allow_nonpublic_av_addresses": ("publicly routable",),
}


def _named(errors, host, var, value):
    """The errors name the variable; for a valid value with consequences, the host and what it caused."""
    joined = "\n".join(errors)
    base = var.split(".")[0].split("[")[0]
    if base in joined or any(c in joined for c in CONSEQUENCES.get(base, ())):
        return True
    if var == "ocs_topology" and value in TOPOLOGIES:
        return True  # another valid topology: the inventory's hosts do not fit it, each error says where
    if var == "ocs_site" and isinstance(value, str) and ("site %r" % value) in joined:
        return True  # a valid new site name: the error is what the site may not carry
    return host is not None and any(e.startswith("host %s: ocs_" % host) for e in errors)


def _strings(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield path + (k,), str(k)
            yield from _strings(v, path + (k,))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(v, path + (i,))
    elif isinstance(value, str):
        yield path, value


def _artifacts(policy):
    """policy.json, the port matrix and every backend's render of the policy's firewalls."""
    out = {"policy.json": json.dumps(policy, indent=2, ensure_ascii=False), "port-matrix.md": port_matrix(policy)}
    for name, fw in policy["firewalls"].items():
        platform = fw["platform"]
        if platform == "nftables":
            out[name] = nft.render_script(nft.NftBackend(name, None).desired(fw))
        elif platform == "iptables":
            out[name] = ipt.render_rules(ipt.IptBackend(name, None).desired(fw))
        elif platform == "pfsense":
            out[name] = repr(pfs.desired_state(fw, name))
        elif platform == "windows":
            out[name] = json.dumps(win.desired(fw, name=name), ensure_ascii=False)
    return out


def check(topology, hv, host, var, value):
    try:
        policy = build_policy(hv)
    except PolicyError as exc:
        assert exc.errors
        for error in exc.errors:
            assert _WHERE.match(error), error
        assert _named(exc.errors, host, var, value), (var, value, exc.errors)
        if host is not None and var != "inventory_hostname":
            assert any(host in e for e in exc.errors) or any(e.startswith("group_vars") for e in exc.errors), \
                (host, exc.errors)
        return "error"
    _oracles(policy, hv, host, var, value)
    artifacts = _artifacts(policy)   # a backend error here is a refusal after other firewalls changed
    for text in artifacts.values():
        text.encode("utf-8")          # no lone surrogate
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
    # Inventory text reaches the renders only through the policy: every string in it (but the
    # warnings, which quote values) is a name, an address, a port or the seed's own words.
    for path, text in _strings(policy):
        if path[0] == "warnings" or path[-1] == "reason":  # quoted values; a site rule's own one-line reason
            assert "\n" not in text and "\r" not in text, text
        elif path[-1] == "comment":   # the extras' own wording around validated names
            text = text.replace("extra rule, not on the seed page", "").replace("note, opt-in", "")
            assert _SAFE_TEXT.fullmatch(text), "foreign token %r at %s" % (text, "/".join(map(str, path)))
        else:
            assert _SAFE_TEXT.fullmatch(text), "foreign token %r at %s" % (text, "/".join(map(str, path)))
    return "policy"


_TRUE = ("true", "yes", "on", "y", "t", "1")
_NOT_A_HOST = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4",
                                                 "240.0.0.0/4")]


def _oracles(policy, hv, host, var, value):
    """What an accepted policy must say about the mutated variable."""
    assert var.split(".")[0] in ALL_VARS or var == "inventory_hostname", "unknown %s accepted" % var
    if var == "ocs_allow_nonpublic_av_addresses" and value is not None and any("allowed by ocs_allow" in w for w in policy["warnings"]):
        assert value is True or value == 1 or (isinstance(value, str) and value.strip().lower() in _TRUE), value
    if var == "ocs_intranet_networks" and value is not None:  # checked with the 443 opt-in off too
        assert isinstance(value, list) and value, value
        for net in value:
            parsed = ipaddress.IPv4Network(net)
            assert parsed.prefixlen > 0 and net == (str(parsed) if "/" in net else str(parsed.network_address)), net
    for rule in policy["rules"]:
        for addr in (rule["local_addresses"] or []) + (rule["remote_addresses"] or []):
            if (rule.get("extra") or rule.get("note")) and "/" in addr:  # site rules take canonical CIDRs
                assert str(ipaddress.IPv4Network(addr)) == addr, addr
                continue
            ip = ipaddress.ip_address(addr)           # a server's address, never a network
            assert not any(ip in n for n in _NOT_A_HOST), addr
    for name, fw in policy["firewalls"].items():
        assert fw["management"]["ports"] or fw["platform"] in ("pfsense", "windows") or not fw["management"]["sources"]
        for ifname in fw["interfaces"].values():
            if fw["platform"] == "pfsense":
                assert re.fullmatch(r"wan|lan|opt[1-9][0-9]*", ifname), ifname
            else:
                assert len(ifname) <= 15, ifname
    if host is not None and host in hv and "ocs_edge_roles" in hv[host]:
        named = {s for r in policy["rules"] for s in r["servers"]}
        assert host in named or host in policy["firewalls"], "server %s dropped without a word" % host


@settings(settings.get_profile(PROFILE))
@given(mutations())
def test_hostile_value_is_a_named_error_or_a_correct_policy(case):
    check(*case)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_examples_render_on_every_backend(topology):
    """The property's own baseline: every unmutated example passes the same checks."""
    assert check(topology, copy.deepcopy(EXAMPLES[topology]), None, "ocs_topology", None) == "policy"
