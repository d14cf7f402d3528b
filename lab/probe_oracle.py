"""The lab's oracle: what the policy says each probe must do.

The evaluator itself is the collection's (plugins/plugin_utils/flowquery.py, the same one
`ocs.edge_firewall.edge_flow_query` and playbooks/query_flow.yml use); this file only tells it
where each lab address is (the lab's Internet uses private addresses) and which host firewalls
the lab enforces (the Linux ones: Windows hosts are Linux containers without one).
"""
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOWQUERY = REPO / "plugins" / "plugin_utils" / "flowquery.py"
LAB_HOST_PLATFORMS = ("nftables", "iptables")


def _load_flowquery():
    """The collection's evaluator, loaded from its file (no Ansible needed on this side)."""
    name = "ocs_edge_firewall_flowquery"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FLOWQUERY)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


flowquery = _load_flowquery()
parse_ports = flowquery.parse_ports


class Lab:
    """The lab description (lab.json, written by lab/labgen.py): who holds which address."""

    def __init__(self, lab):
        self.lab = lab
        self.nets = {n["name"]: n for n in lab["networks"]}
        self.addr = {}      # ip -> (container, network)
        self.ctr = {c["host"]: c for c in lab["containers"]}
        for c in lab["containers"]:
            for i in c["interfaces"]:
                self.addr[i["ip"]] = (c, self.nets[i["network"]])
            ifnet = {i["ifname"]: self.nets[i["network"]] for i in c["interfaces"]}
            for v in c["vips"]:
                self.addr[v["ip"]] = (c, ifnet[v["ifname"]])

    def net_of(self, ip):
        return self.addr[ip][1]

    def owner(self, ip):
        return self.addr[ip][0]

    def first_ip(self, host, kind=None):
        c = self.ctr[host]
        for i in c["interfaces"]:
            if kind is None or self.nets[i["network"]]["kind"] == kind:
                return i["ip"]
        return None


class Policy:
    """Would this first packet pass the lab's firewalls, per the policy?"""

    def __init__(self, policy, lab):
        self.p = policy
        self.lab = lab

    def query(self, proto, src, sport, dst, dport):
        """The collection's answer, with the lab's networks saying where each address is."""
        sn, dn = self.lab.net_of(src), self.lab.net_of(dst)
        return flowquery.evaluate(self.p, proto, src, dst, dport, sport=sport,
                                  src_zone=sn["zone"], dst_zone=dn["zone"], src_site=sn["site"],
                                  dst_site=dn["site"], host_platforms=LAB_HOST_PLATFORMS)

    def path_firewall(self, src, dst):
        """The firewall container that routes between the two addresses' lab networks (None:
        no route: the lab connects Internet-perimeter external side, perimeter internal side-LAN)."""
        sn, dn = self.lab.net_of(src), self.lab.net_of(dst)
        pair = {sn["kind"], dn["kind"]}
        if pair == {"inet", "pext"}:
            side, site = "external", (dn if dn["kind"] == "pext" else sn)["site"]
        elif pair == {"pint", "lan"}:
            side, site = "internal", (dn if dn["kind"] == "pint" else sn)["site"]
        else:
            return None
        for name, fw in self.p["firewalls"].items():
            if fw["mode"] == "network" and fw["side"] == side and fw["site"] == site:
                return name
        return None

    def allowed(self, proto, src, sport, dst, dport):
        """(allowed, rule ids that let it through, why not)"""
        ans = self.query(proto, src, sport, dst, dport)
        return ans["allowed"], (ans["rules"] if ans["allowed"] else []), ("" if ans["allowed"] else ans["why"])

    def answer(self, proto, src, sport, dst, dport):
        """The query's answer in short, for the probe reports: rule ids, or who denies and the
        nearest rules."""
        ans = self.query(proto, src, sport, dst, dport)
        denied = [h for h in ans["hops"] if not h["allowed"]]
        return {"allowed": ans["allowed"], "rules": ans["rules"] if ans["allowed"] else [],
                "why": "" if ans["allowed"] else ans["why"],
                "denied_by": [h["firewall"] for h in denied],
                "nearest": sorted({n["rule"] for h in denied for n in h["nearest"]})}
