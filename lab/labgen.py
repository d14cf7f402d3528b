#!/usr/bin/env python3
"""Lab descriptions: one per molecule scenario, and the inventory that matches it.

Each scenario below is a compact description of an edge deployment (the same hosts as
the example inventory of its topology under inventories/, with lab addresses). From it
this script writes, into molecule/<scenario>/:

  lab.json               networks, containers, interfaces, addresses, VIPs, routes
                         (read by molecule/shared/create.yml, destroy.yml and lab/probe.py)
  inventory/hosts.yml    the Ansible inventory of the lab (valid for the policy engine)
  inventory/group_vars/all.yml

    lab/labgen.py            # (re)write every scenario
    lab/labgen.py --check    # exit 1 when a committed file differs from what it would write

Addresses: scenario number S (1-5) owns 10.(200+S).0.0/16, one /24 per network:
  .1 Internet, .2/.3 perimeter external/internal side of the central site, .4 internal
  network, .12/.13 perimeter external/internal side of the remote site branch1.
The host (podman) holds .254 of every network; nothing routes through it: every route
in a container points at a firewall container (.1 central, .2 branch1). Networks are
created --internal (no NAT, no default route to the host). stdlib only.
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOLECULE = ROOT / "molecule"
IMAGE_DEFAULT = "localhost/ocs-lab:bookworm"

# Network kinds: zone of the policy model, and the /24 number per site.
KINDS = {
    "inet": {"zone": "internet", "net": {None: 1}},
    "pext": {"zone": "perimeter", "net": {"central": 2, "branch1": 12}},
    "pint": {"zone": "perimeter", "net": {"central": 3, "branch1": 13}},
    "lan": {"zone": "internal", "net": {None: 4}},
}

# Hosts: edges give (internal octet, external octet or {role: octet}); the addresses are on
# the pint / pext network of their site. VIPs are held by the site's load-balancer stand-in.
SCENARIOS = {
    "consolidated": {
        "index": 1, "topology": "consolidated", "sites": {"central": "central"},
        "director": 10,
        "firewalls": {"fw-ext": ("central", "external", "nftables"),
                      "fw-int": ("central", "internal", "nftables")},
        "edges": {
            "edge1": {"roles": ["access_edge", "web_conferencing_edge", "av_edge"], "int": 10,
                      "ext": {"access_edge": 10, "web_conferencing_edge": 11, "av_edge": 12}},
            "rp1": {"roles": ["reverse_proxy"], "int": 5, "ext": 5, "host_fw": "nftables"},
        },
        "arrays": {},
    },
    "single_site": {
        "index": 2, "topology": "single_site", "sites": {"central": "central"},
        "next_hop": 20,
        "firewalls": {"fw-ext": ("central", "external", "nftables"),
                      "fw-int": ("central", "internal", "iptables")},
        "edges": {
            "rp1": {"roles": ["reverse_proxy"], "int": 5, "ext": 5, "host_fw": "nftables"},
            "ae1": {"roles": ["access_edge"], "int": 10, "ext": 10},
            "wc1": {"roles": ["web_conferencing_edge"], "int": 11, "ext": 11},
            "av1": {"roles": ["av_edge"], "int": 12, "ext": 12},
        },
        "arrays": {},
    },
    "scaled_single_site": {
        "index": 3, "topology": "scaled_single_site", "sites": {"central": "central"},
        "director": 10,
        "firewalls": {"fw-ext": ("central", "external", "iptables"),
                      "fw-int": ("central", "internal", "nftables")},
        "edges": {
            "rp1": {"roles": ["reverse_proxy"], "int": 5, "ext": 5, "host_fw": "nftables"},
            "ae1": {"roles": ["access_edge"], "array": "ae_array", "int": 31, "ext": 31},
            "ae2": {"roles": ["access_edge"], "array": "ae_array", "int": 32, "ext": 32},
            "wc1": {"roles": ["web_conferencing_edge"], "array": "wc_array", "int": 41, "ext": 41},
            "wc2": {"roles": ["web_conferencing_edge"], "array": "wc_array", "int": 42, "ext": 42},
            "av1": {"roles": ["av_edge"], "array": "av_array", "int": 51, "ext": 51},
            "av2": {"roles": ["av_edge"], "array": "av_array", "int": 52, "ext": 52},
        },
        "arrays": {"ae_array": ("access_edge", "central", 30, 30),
                   "wc_array": ("web_conferencing_edge", "central", 40, 40),
                   "av_array": ("av_edge", "central", 50, 50)},
    },
    "multi_site": {
        "index": 4, "topology": "multi_site", "sites": {"central": "central", "branch1": "remote"},
        "director": 10,
        "firewalls": {"fw-ext-central": ("central", "external", "nftables"),
                      "fw-int-central": ("central", "internal", "nftables"),
                      "fw-ext-branch1": ("branch1", "external", "nftables"),
                      "fw-int-branch1": ("branch1", "internal", "nftables")},
        "edges": {
            "rp1": {"roles": ["reverse_proxy"], "int": 5, "ext": 5, "host_fw": "nftables"},
            "ae1": {"roles": ["access_edge"], "array": "ae_array", "int": 31, "ext": 31},
            "ae2": {"roles": ["access_edge"], "array": "ae_array", "int": 32, "ext": 32},
            "wc1": {"roles": ["web_conferencing_edge"], "array": "wc_array", "int": 41, "ext": 41},
            "av1": {"roles": ["av_edge"], "array": "av_array", "int": 51, "ext": 51},
            "av2": {"roles": ["av_edge"], "array": "av_array", "int": 52, "ext": 52},
            "rp-b1": {"site": "branch1", "roles": ["reverse_proxy"], "int": 5, "ext": 5,
                      "host_fw": "iptables"},
            "wc-b1": {"site": "branch1", "roles": ["web_conferencing_edge"], "int": 11, "ext": 11},
            "av-b1": {"site": "branch1", "roles": ["av_edge"], "int": 13, "ext": 13},
        },
        "arrays": {"ae_array": ("access_edge", "central", 30, 30),
                   "wc_array": ("web_conferencing_edge", "central", 40, 40),
                   "av_array": ("av_edge", "central", 50, 50)},
    },
    "scaled_remote_site": {
        "index": 5, "topology": "scaled_remote_site", "sites": {"branch1": "remote"},
        "director": 10,
        "firewalls": {"fw-ext-branch1": ("branch1", "external", "nftables"),
                      "fw-int-branch1": ("branch1", "internal", "nftables")},
        "edges": {
            "rp-b1": {"site": "branch1", "roles": ["reverse_proxy"], "int": 5, "ext": 5,
                      "host_fw": "nftables"},
            "wc-b1": {"site": "branch1", "roles": ["web_conferencing_edge"], "array": "wc_b1_array",
                      "int": 41, "ext": 41},
            "wc-b2": {"site": "branch1", "roles": ["web_conferencing_edge"], "array": "wc_b1_array",
                      "int": 42, "ext": 42},
            "av-b1": {"site": "branch1", "roles": ["av_edge"], "array": "av_b1_array", "int": 51, "ext": 51},
            "av-b2": {"site": "branch1", "roles": ["av_edge"], "array": "av_b1_array", "int": 52, "ext": 52},
        },
        "arrays": {"wc_b1_array": ("web_conferencing_edge", "branch1", 40, 40),
                   "av_b1_array": ("av_edge", "branch1", 50, 50)},
    },
}

# Fixed host octets: firewalls .1 (central) / .2 (branch1) on every network they touch,
# load balancer .200, clients .100, the host's bridge .254.
FW_OCTET = {"central": 1, "branch1": 2}
IFNAMES = {"external": ("inet", "pext"), "internal": ("pint", "lan")}


def net24(index, kind, site):
    n = KINDS[kind]["net"]
    return "10.%d.%d" % (200 + index, n[None] if None in n else n[site])


def expand(name, spec):
    """The full lab description of one scenario."""
    idx = spec["index"]
    prefix = "ocs-%s-" % name
    sites = list(spec["sites"])
    networks = []
    for kind in ("inet", "pext", "pint", "lan"):
        for site in ([None] if None in KINDS[kind]["net"] else sites):
            p = net24(idx, kind, site)
            networks.append({
                "name": prefix + kind + ("" if site in (None, "central") else "-" + site),
                "kind": kind, "site": site, "zone": KINDS[kind]["zone"],
                "subnet": p + ".0/24", "gateway": p + ".254"})

    def net(kind, site=None):
        return next(n for n in networks if n["kind"] == kind and n["site"] in (None, site))

    def ip(kind, site, octet):
        return "%s.%d" % (net24(idx, kind, site), octet)

    def fw_addr(side, site, kind):
        return ip(kind, site, FW_OCTET[site])

    def site_of_fw(side):
        return {s: f for f, (s, sd, _p) in spec["firewalls"].items() if sd == side}

    containers = []

    def add(host, kind_label, ifaces, routes, forward=False, vips=None, **extra):
        c = {"host": host, "name": prefix + host, "kind": kind_label, "forward": forward,
             "interfaces": ifaces, "routes": routes, "vips": vips or []}
        c.update(extra)
        containers.append(c)

    # Which firewall site serves the Internet / internal network by default (first site).
    main_site = sites[0]
    inet_net = net("inet")
    lan_net = net("lan")
    for fw, (site, side, platform) in spec["firewalls"].items():
        k1, k2 = ("inet", "pext") if side == "external" else ("pint", "lan")
        n1 = net(k1, site)
        n2 = net(k2, site)
        add(fw, "firewall", [
            {"network": n1["name"], "ifname": IFNAMES[side][0], "ip": fw_addr(side, site, k1)},
            {"network": n2["name"], "ifname": IFNAMES[side][1], "ip": fw_addr(side, site, k2)},
        ], [], forward=True, side=side, site=site, platform=platform)

    def perimeter_routes(site):
        return [{"to": inet_net["subnet"], "via": fw_addr("external", site, "pext")},
                {"to": lan_net["subnet"], "via": fw_addr("internal", site, "pint")}]

    for host, e in spec["edges"].items():
        site = e.get("site", "central")
        ext = e["ext"] if isinstance(e["ext"], dict) else {"_": e["ext"]}
        ext_ips = sorted({ip("pext", site, o) for o in ext.values()}, key=_ipkey)
        add(host, "edge", [
            {"network": net("pext", site)["name"], "ifname": "pext", "ip": ext_ips[0]},
            {"network": net("pint", site)["name"], "ifname": "pint", "ip": ip("pint", site, e["int"])},
        ], perimeter_routes(site), site=site,
            vips=[{"ifname": "pext", "ip": a} for a in ext_ips[1:]])
    for site in sites:
        arrays = {a: v for a, v in spec["arrays"].items() if v[1] == site}
        if not arrays:
            continue
        vips = []
        for _a, (_role, _s, ivip, evip) in sorted(arrays.items()):
            vips += [{"ifname": "pext", "ip": ip("pext", site, evip)},
                     {"ifname": "pint", "ip": ip("pint", site, ivip)}]
        add("lb" if site == "central" else "lb-" + site, "loadbalancer", [
            {"network": net("pext", site)["name"], "ifname": "pext", "ip": ip("pext", site, 200)},
            {"network": net("pint", site)["name"], "ifname": "pint", "ip": ip("pint", site, 200)},
        ], perimeter_routes(site), site=site, vips=vips)

    # Internet client: default via the first site's external firewall, other sites' outside.
    ext_fws = site_of_fw("external")
    int_fws = site_of_fw("internal")
    inet_routes = [{"to": "default", "via": fw_addr("external", main_site, "inet")}]
    lan_routes = [{"to": "default", "via": fw_addr("internal", main_site, "lan")}]
    for site in sites[1:]:
        inet_routes.append({"to": net("pext", site)["subnet"], "via": fw_addr("external", site, "inet")})
        lan_routes.append({"to": net("pint", site)["subnet"], "via": fw_addr("internal", site, "lan")})
    assert set(ext_fws) == set(sites) and set(int_fws) == set(sites), name
    add("inet-client", "client", [
        {"network": inet_net["name"], "ifname": "inet", "ip": "%s.100" % net24(idx, "inet", None)}],
        inet_routes)
    add("int-client", "client", [
        {"network": lan_net["name"], "ifname": "lan", "ip": "%s.100" % net24(idx, "lan", None)}],
        lan_routes)
    server = "director" if "director" in spec else "nexthop"
    add(server, "server", [
        {"network": lan_net["name"], "ifname": "lan",
         "ip": "%s.%d" % (net24(idx, "lan", None), spec.get("director", spec.get("next_hop")))}],
        lan_routes)
    for c in containers:
        c["init"] = init_script(c)
        # podman run --network NAME:ip=IP,interface_name=IF (one per interface)
        c["podman_networks"] = ["%s:ip=%s,interface_name=%s" % (i["network"], i["ip"], i["ifname"])
                                for i in c["interfaces"]]
    return {
        "scenario": name, "topology": spec["topology"], "prefix": prefix, "index": idx,
        "image_default": IMAGE_DEFAULT,
        "management": ["10.%d.99.0/24" % (200 + idx)],
        "bridge_gateways": [n["gateway"] for n in networks],
        "networks": networks, "containers": containers,
        # molecule (default driver) reads how to reach each instance from this list
        "instance_config": [{"instance": c["host"], "address": c["name"], "user": "root",
                             "connection": "containers.podman.podman"} for c in containers],
    }


def _ipkey(a):
    return tuple(int(x) for x in a.split("."))


def init_script(c):
    """Shell run as the container's command before `sleep infinity`: VIPs and routes."""
    lines = ["set -e"]
    for v in c["vips"]:
        lines.append("ip addr add %s/24 dev %s" % (v["ip"], v["ifname"]))
    for r in c["routes"]:
        lines.append("ip route replace %s via %s" % (r["to"], r["via"]))
    lines.append("exec sleep infinity")
    return "; ".join(lines)


def inventory(name, spec, lab):
    """hosts.yml and group_vars/all.yml text for the scenario."""
    by_host = {c["host"]: c for c in lab["containers"]}
    idx = spec["index"]
    out = ["---",
           "# Lab inventory of molecule scenario %s, written by lab/labgen.py from the lab" % name,
           "# description (molecule/%s/lab.json): do not edit, edit lab/labgen.py. Same hosts as" % name,
           "# inventories/%s/, lab addresses; every host is a podman container." % spec["topology"],
           "all:", "  children:", "    ocs_lab:", "      vars:",
           "        ansible_connection: containers.podman.podman",
           "        ansible_python_interpreter: /usr/bin/python3",
           "        ocs_linux_become: false        # podman exec is already root",
           "        # the containers have no init system to enable a boot service with; the reboot",
           "        # step (molecule/shared/reboot.yml) runs the units' start commands instead",
           "        ocs_nftables_boot_loader: false",
           "        ocs_iptables_boot_loader: false",
           "      children:", "        ocs_firewalls:", "          hosts:"]
    for fw, (site, side, platform) in spec["firewalls"].items():
        c = by_host[fw]
        ifs = {("internet" if i["ifname"] == "inet" else "internal" if i["ifname"] == "lan" else "perimeter"):
               i["ifname"] for i in c["interfaces"]}
        out += ["            %s:" % fw,
                "              ansible_host: %s" % c["name"],
                "              ocs_site: %s" % site,
                "              ocs_firewall_side: %s" % side,
                "              ocs_firewall_platform: %s" % platform,
                "              ocs_firewall_interfaces: {%s}" % ", ".join(
                    "%s: %s" % kv for kv in sorted(ifs.items()))]
    out += ["        ocs_edge_servers:", "          hosts:"]
    for host, e in spec["edges"].items():
        site = e.get("site", "central")
        if isinstance(e["ext"], dict):
            ext = "{%s}" % ", ".join("%s: %s.%d" % (r, net24(idx, "pext", site), o) for r, o in e["ext"].items())
        else:
            ext = "%s.%d" % (net24(idx, "pext", site), e["ext"])
        parts = ["ansible_host: %s" % by_host[host]["name"], "ocs_site: %s" % site,
                 "ocs_edge_roles: [%s]" % ", ".join(e["roles"])]
        if "array" in e:
            parts.append("ocs_array: %s" % e["array"])
        parts += ["ocs_internal_ip: %s.%d" % (net24(idx, "pint", site), e["int"]), "ocs_external_ip: %s" % ext]
        if e.get("host_fw"):
            parts.append("ocs_host_firewall: %s" % e["host_fw"])
        out.append("            %s:" % host)
        out += ["              %s" % x for x in parts]
    out += ["        ocs_lab_others:",
            "          # Not managed by the collection: load-balancer stand-ins (they hold the VIPs),",
            "          # the Director / next hop, the Internet client and the internal client.",
            "          hosts:"]
    for c in lab["containers"]:
        if c["kind"] in ("loadbalancer", "client", "server"):
            out.append("            %s: {ansible_host: %s}" % (c["host"], c["name"]))
    hosts = "\n".join(out) + "\n"

    g = ["---", "# Written by lab/labgen.py (molecule scenario %s); see docs/policy-model.md." % name,
         "ocs_topology: %s" % spec["topology"]]
    if len(spec["sites"]) > 1 or spec["topology"] in ("multi_site", "scaled_remote_site"):
        g.append("ocs_sites: {%s}" % ", ".join("%s: {kind: %s}" % kv for kv in spec["sites"].items()))
    lan = net24(idx, "lan", None)
    if "director" in spec:
        g.append("ocs_director: %s.%d" % (lan, spec["director"]))
    else:
        g.append("ocs_next_hop: %s.%d" % (lan, spec["next_hop"]))
    g.append("ocs_management_networks: [%s]" % ", ".join(lab["management"]))
    g.append("# Lab addresses are private: the A/V Edge external address cannot be public here.")
    g.append("ocs_allow_nonpublic_av_addresses: true")
    if spec["arrays"]:
        g.append("ocs_arrays:")
        for a, (role, site, ivip, evip) in spec["arrays"].items():
            g.append("  %s: {role: %s, site: %s, internal_vip: %s.%d, external_vip: %s.%d}" % (
                a, role, site, net24(idx, "pint", site), ivip, net24(idx, "pext", site), evip))
    g.append('ocs_policy_export_dir: "{{ playbook_dir }}/../out/molecule/%s/policy"' % name)
    return hosts, "\n".join(g) + "\n"


def files(name):
    spec = SCENARIOS[name]
    lab = expand(name, spec)
    hosts, allvars = inventory(name, spec, lab)
    d = MOLECULE / name
    return {
        d / "lab.json": json.dumps(lab, indent=1, sort_keys=False) + "\n",
        d / "inventory" / "hosts.yml": hosts,
        d / "inventory" / "group_vars" / "all.yml": allvars,
    }


def main(argv):
    check = "--check" in argv
    names = [a for a in argv if not a.startswith("-")] or list(SCENARIOS)
    bad = 0
    for name in names:
        for path, text in files(name).items():
            old = path.read_text() if path.exists() else None
            if old == text:
                continue
            if check:
                print("labgen: %s is not what lab/labgen.py writes" % path.relative_to(ROOT))
                bad = 1
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                print("labgen: wrote %s" % path.relative_to(ROOT))
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
