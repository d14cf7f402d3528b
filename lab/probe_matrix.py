"""The probe matrix: which flows to try across a lab, and what each must do.

Positive probes: one per rule of each network firewall, for each concrete address of the
rule (VIPs included), port ranges sampled at both ends and inside (source-port ranges too).
Negative probes: ports next to every range, ports open on one role/address but not on
another, the reverse of one-way rules, a source the rule does not name, Internet -> internal
network and perimeter internal side, Internet -> 5062/8057 on every edge external address.
Each probe's expectation and rule ids come from the oracle (probe_oracle.Policy), so a
candidate negative the policy allows after all is dropped, never mis-expected.
"""
import ipaddress
import time

from probe_agent import TIMEOUT
from probe_oracle import Lab, Policy, parse_ports

ANY_PORT = {"tcp": 41000, "udp": 41000}   # sample port when a rule says "any"


def samples(spec, default):
    """Ports to probe for a rule's port list: single ports, ranges at both ends and inside."""
    if spec is None:
        return [default]
    out = []
    for lo, hi in parse_ports(spec):
        out += [lo] if lo == hi else [lo, (lo + hi + 1) // 2, hi]
    return out


def _ip_sort(a):
    return ipaddress.ip_address(a)


def _next_slice(scenario, n=6):
    path = "/tmp/ocs-lab-probe-slice-%s" % scenario
    try:
        with open(path) as f:
            last = int(f.read().strip())
    except (OSError, ValueError):
        last = int(time.time()) % n
    cur = (last + 1) % n
    try:
        with open(path, "w") as f:
            f.write(str(cur))
    except OSError:
        pass
    return cur


class Matrix:
    """Collects probes, each checked against the oracle and never twice the same flow."""

    def __init__(self, policy, lab, eph_base):
        self.L = Lab(lab)
        self.ev = Policy(policy, self.L)
        self.probes = []
        self.seen = set()
        self.eph_base = eph_base

    def rep(self, zone):
        """Representative client address for "any" in a zone."""
        if zone == "internet":
            return self.L.first_ip("inet-client")
        if zone == "internal":
            return self.L.first_ip("int-client")
        raise ValueError(zone)

    def ends(self, r):
        """(sources, destinations) of a rule: its addresses, or a client for "any"."""
        return r["src"] or [self.rep(r["src_zone"])], r["dst"] or [self.rep(r["dst_zone"])]

    def add(self, kind, label, rule, proto, src, sport, dst, dport, expect=None):
        key = (proto, src, sport or 0, dst, dport)
        if key in self.seen:
            return
        # "any" source port: a fixed one outside every port the policy names (the kernel's
        # ephemeral range 32768-60999 overlaps the RTP range 50000-59999)
        fixed = bool(sport)
        if not sport:
            sport = self.eph_base + len(self.probes)
        answer = self.ev.answer(proto, src, sport, dst, dport)
        allowed, ids, why = answer["allowed"], answer["rules"], answer["why"]
        if expect is None:
            expect = allowed
        if expect != allowed:
            return      # candidate negative the policy allows after all (or vice versa): skip
        self.seen.add(key)
        self.probes.append({
            "key": "p%d" % len(self.probes), "kind": kind, "label": label, "rule": rule,
            "protocol": proto, "src": src, "sport": sport, "sport_fixed": fixed, "dst": dst, "dport": dport,
            "client": self.L.owner(src)["host"], "server": self.L.owner(dst)["host"],
            "expect": "open" if expect else "blocked", "why": ", ".join(ids) if allowed else why,
            # an allowed flow may take longer on a loaded machine; a denied one costs its timeout
            "timeout": TIMEOUT * 2 if expect else TIMEOUT,
            "answer": {k: answer[k] for k in ("allowed", "rules", "denied_by", "nearest")},
        })


def positives(m, net_fws):
    """Every rule, every concrete address, port samples."""
    for fw in net_fws.values():
        for r in fw["rules"]:
            proto = r["protocol"]
            srcs, dsts = m.ends(r)
            for s in srcs:
                for d in dsts:
                    for sp in (samples(r["sport"], 0) if r["sport"] else [0]):
                        for dp in samples(r["dport"], ANY_PORT[proto]):
                            m.add("allowed", "%s %s" % (r["service"], r["direction"]), r["id"],
                                  proto, s, sp, d, dp, expect=True)


def range_negatives(m, r):
    """Ports next to the rule's destination and source port ranges."""
    proto = r["protocol"]
    srcs, dsts = m.ends(r)
    for lo, hi in (parse_ports(r["dport"]) or []):
        if hi > lo:
            for s in srcs[:1]:
                for d in dsts:
                    for dp in (lo - 1, hi + 1):
                        m.add("denied", "next to range %d-%d" % (lo, hi), r["id"], proto, s, 0, d, dp, False)
    for lo, hi in (parse_ports(r["sport"]) or []):
        if hi > lo:
            for s in srcs:
                for sp in (lo - 1, hi + 1):
                    m.add("denied", "source port next to range %d-%d" % (lo, hi), r["id"],
                          proto, s, sp, dsts[0], samples(r["dport"], ANY_PORT[proto])[0], False)


def direction_negatives(m, r):
    """The reverse of a one-way rule; a source the rule does not name (same zone)."""
    proto = r["protocol"]
    srcs, dsts = m.ends(r)
    for d in dsts:
        for s in srcs[:2]:
            for dp in samples(r["dport"], ANY_PORT[proto])[:1]:
                m.add("denied", "reverse of one-way rule", r["id"], proto, d, 0, s, dp, False)
    if r["src"] is not None and r["src_zone"] == "internal":
        for dp in samples(r["dport"], ANY_PORT[proto])[:1]:
            m.add("denied", "source not named by the rule", r["id"], proto,
                  m.L.first_ip("int-client"), 0, dsts[0], dp, False)


def address_negatives(m, rules):
    """Ports open on one address/role but not on another (same firewall, same zones)."""
    opened = {}
    for r in rules:
        if r["dst"] is None:
            continue
        for d in r["dst"]:
            for dp in samples(r["dport"], ANY_PORT[r["protocol"]])[:1]:
                opened.setdefault((r["src_zone"], r["dst_zone"]), {}).setdefault(d, set()).add(
                    (r["protocol"], dp, (r["src"] or [m.rep(r["src_zone"])])[0]))
    for per_dst in opened.values():
        allports = set().union(*per_dst.values())
        for d in sorted(per_dst, key=_ip_sort):
            for proto, dp, s in sorted(allports):
                m.add("denied", "open on another address, not on this one", "", proto, s, 0, d, dp, False)


def zone_negatives(m, lab):
    """Internet -> internal network and perimeter internal side; Internet -> 5062/8057 on edges."""
    inet = m.L.first_ip("inet-client")
    for c in lab["containers"]:
        for i in c["interfaces"]:
            kind = m.L.nets[i["network"]]["kind"]
            if kind in ("lan", "pint"):
                where = "internal network" if kind == "lan" else "perimeter internal side"
                for proto, dp in (("tcp", 443), ("tcp", 5061), ("udp", 3478)):
                    m.add("denied", "Internet to the %s" % where, "", proto, inet, 0, i["ip"], dp, False)
            if kind == "pext" and c["kind"] in ("edge", "loadbalancer"):
                addrs = [i["ip"]] + [v["ip"] for v in c["vips"] if v["ifname"] == "pext"]
                for a in addrs:
                    for dp in (5062, 8057):
                        m.add("denied", "Internet to %d on the edge" % dp, "", "tcp", inet, 0, a, dp, False)


def build_matrix(policy, lab, eph_slice=None):
    """The probes for a lab and its policy (list of dicts; see Matrix.add for the keys)."""
    # source ports for "any": 42000-47999, the next 1000-port slice on each run, so a run
    # never reuses the 4-tuples (conntrack entries, TIME_WAIT) of the runs just before it
    if eph_slice is None:
        eph_slice = _next_slice(lab["scenario"])
    m = Matrix(policy, lab, 42000 + 1000 * eph_slice)
    net_fws = {n: f for n, f in sorted(policy["firewalls"].items()) if f["mode"] == "network"}
    positives(m, net_fws)
    for fw in net_fws.values():
        for r in fw["rules"]:
            range_negatives(m, r)
            direction_negatives(m, r)
        address_negatives(m, fw["rules"])
    zone_negatives(m, lab)
    return m.probes
