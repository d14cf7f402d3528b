"""Aerleon's rendering, loaded as the firewall, answers every probe as the collection's own rules.

Per example firewall (network mode: a router namespace with the firewall's interface names
between one namespace per zone; host mode: the server namespace and a peer): the collection's
own rule set (module_utils.nftables, what nft_ruleset applies) is loaded and a deterministic
probe set is sent; then conntrack is flushed, Aerleon's rendering of the exported policy
(aclgen, target nftables) replaces it and the same probes are sent again. The answers must be
equal, probe by probe, and the seed flows must pass. Aerleon's iptables output is checked the
same way on a sample of four firewalls.

Probes: every PFRULE with each of its addresses (a representative address of the zone where it
says any), the ends of each port range (or one sample port for any), then the same flow one port
outside each range, from a source the rule does not list, in reverse, with the other protocol;
management to the firewall itself from the management network and from elsewhere. TCP: an
answer (connected or refused by the kernel) means the SYN passed; UDP: an echo listener answers.
"""
import ipaddress
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inventory_loader import REPO, TOPOLOGIES, example, load_hostvars
from netns_harness import markers, netns_fixture, run

from ansible_collections.ocs.edge_firewall.plugins.module_utils import nftables as N
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.aerleon_export import aerleon_files
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy

ACLGEN = Path(sys.executable).parent / "aclgen"
pytestmark = markers("Aerleon nftables probes", ("ip", "nft", "conntrack")) + [
    pytest.mark.skipif(not ACLGEN.exists(), reason="needs Aerleon's aclgen (requirements-dev.txt)")]

netns = netns_fixture("ocsaer")

# A stand-in address for "any" in each zone, and a port for "any" outside the client's
# ephemeral range (so no probe is ever the reply of another).
ANY_ADDRESS = {"internet": "198.51.100.77", "internal": "10.10.99.77", "perimeter": "172.16.99.77",
               "peer": "10.10.99.78", "self": "172.16.99.79"}
ANY_PORT = 20000
# The example inventories, and the fixture that uses every opt-in beyond the page.
INVENTORIES = {t: example(t) for t in TOPOLOGIES}
INVENTORIES["extras"] = load_hostvars(REPO / "tests" / "fixtures" / "extras_inventory")
EPHEMERAL = "30000 39999"

PROBE = r"""
import errno, json, selectors, socket, sys, time
probes = json.load(sys.stdin)
sel, socks, out = selectors.DefaultSelector(), {}, {}
for key, (src, sport, dst, proto, dport) in probes.items():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, sport or 0)); s.setblocking(False)
    if proto == "tcp":
        s.connect_ex((dst, dport)); sel.register(s, selectors.EVENT_WRITE, key)
    else:
        s.connect((dst, dport)); s.send(b"probe"); sel.register(s, selectors.EVENT_READ, key)
    socks[key] = s
deadline = time.time() + 2.0
while len(out) < len(probes) and time.time() < deadline:
    for k, _ in sel.select(timeout=0.2):
        key, s = k.data, k.fileobj
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if probes[key][3] == "udp" and not err:
            try:
                s.recv(16)
            except OSError as exc:
                err = exc.errno
        out[key] = "pass" if err in (0, errno.ECONNREFUSED) else "error %s" % errno.errorcode.get(err, err)
        sel.unregister(s)
for key in probes:
    out.setdefault(key, "blocked")
print(json.dumps(out))
"""

ECHO = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for item in sys.argv[1:]:
    addr, port = item.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, int(port)))
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for k, _ in sel.select():
        data, peer = k.fileobj.recvfrom(64); k.fileobj.sendto(data, peer)
"""


# ------------------------------------------------------------------------------ probe set

def _sample(ports):
    """Ports to try for a PFRULE port list: both ends of each range; ANY_PORT for any."""
    if ports is None:
        return [ANY_PORT]
    out = []
    for p in ports:
        lo, _, hi = p.partition("-")
        out += [int(lo)] + ([int(hi)] if hi else [])
    return out


def _outside(ports):
    """One port just outside each end of each range (nothing outside "any")."""
    out = []
    for p in ports or []:
        lo, _, hi = p.partition("-")
        out += [int(lo) - 1, int(hi or lo) + 1]
    return [p for p in out if 0 < p < 65536]


def _addresses(values, zone):
    """The rule's addresses (a host inside each network), or the zone's stand-in for any."""
    return [_host_in(v) if "/" in v else v for v in values] if values else [ANY_ADDRESS[zone]]


def probes(firewall):
    """{key: (src_zone, src, sport, dst_zone, dst, proto, dport)} for one FIREWALL, and the keys
    of the seed flows themselves. Host mode: the zones are "self" and "peer"."""
    out, seen, seed = {}, set(), set()

    def add(tag, src_zone, src, sport, dst_zone, dst, proto, dport):
        if (src, sport, dst, proto, dport) in seen:
            return None
        seen.add((src, sport, dst, proto, dport))
        key = "%s %s:%s>%s:%s/%s" % (tag, src, sport or "*", dst, dport, proto)
        out[key] = (src_zone, src, sport, dst_zone, dst, proto, dport)
        return key

    for p in firewall["rules"]:
        sz, dz = p["src_zone"], p["dst_zone"]
        if firewall["mode"] == "host":
            sz, dz = ("self", "peer") if p["chain"] == "output" else ("peer", "self")
        srcs, dsts = _addresses(p["src"], sz), _addresses(p["dst"], dz)
        sports = _sample(p["sport"]) if p["sport"] else [None]
        other = "udp" if p["protocol"] == "tcp" else "tcp"
        for src, dst, sport, dport in itertools.product(srcs, dsts, sports, _sample(p["dport"])):
            seed.add(add(p["id"], sz, src, sport, dz, dst, p["protocol"], dport))
            add(p["id"] + " other-protocol", sz, src, sport, dz, dst, other, dport)
            add(p["id"] + " reverse", dz, dst, None, sz, src, p["protocol"], sport or ANY_PORT)
        for dport in _outside(p["dport"]):
            add(p["id"] + " dport-outside", sz, srcs[0], sports[0], dz, dsts[0], p["protocol"], dport)
        for sport in _outside(p["sport"]):
            add(p["id"] + " sport-outside", sz, srcs[0], sport, dz, dsts[0], p["protocol"], _sample(p["dport"])[0])
        if p["src"]:
            add(p["id"] + " unlisted-source", sz, ANY_ADDRESS[sz], sports[0], dz, dsts[0], p["protocol"],
                _sample(p["dport"])[0])
    return out, seed - {None}


# ------------------------------------------------------------------------------ topology

def _zones(firewall):
    if firewall["mode"] == "host":
        return ["self", "peer"]
    zones = []
    for p in firewall["rules"]:
        for z in (p["src_zone"], p["dst_zone"]):
            if z not in zones:
                zones.append(z)
    return zones


def _link(fw_ns, ns, index, ifname):
    """veth fw_ns:ifname 100.64.<index>.1/30 <-> ns:up0 100.64.<index>.2/30, ns routes via the firewall."""
    run(["ip", "link", "add", "up0", "netns", ns, "type", "veth", "peer", "name", ifname, "netns", fw_ns])
    run(["ip", "-n", fw_ns, "addr", "add", "100.64.%d.1/30" % index, "dev", ifname])
    run(["ip", "-n", ns, "addr", "add", "100.64.%d.2/30" % index, "dev", "up0"])
    for ns_, dev in ((fw_ns, ifname), (ns, "up0")):
        run(["ip", "-n", ns_, "link", "set", dev, "up"])
    run(["ip", "-n", ns, "route", "add", "default", "via", "100.64.%d.1" % index])
    run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=%s" % EPHEMERAL])


def build(netns, firewall, probe_set):
    """Namespaces and addresses for the probe set -> ({zone: ns, "fw": ns}, management probes).

    Network mode: the firewall namespace routes between one namespace per zone, on interfaces
    named as the inventory names them. Host mode: the firewall namespace is the server."""
    fw_ns = netns.first
    zones = _zones(firewall)
    addrs = {z: set() for z in zones}
    for sz, src, _, dz, dst, _, _ in probe_set.values():
        addrs[sz].add(src)
        addrs[dz].add(dst)
    mgmt = (firewall.get("management") or {}).get("sources") or []
    client_zone = zones[-1]
    mgmt_addr = [_host_in(mgmt[0])] if mgmt else []
    addrs[client_zone].update(mgmt_addr)
    ns_of = {"fw": fw_ns}
    for i, zone in enumerate(zones):
        if zone == "self":
            ns_of[zone] = fw_ns
            continue
        ns_of[zone] = netns()
        ifname = (firewall.get("interfaces") or {}).get(zone) or ("z%d%s" % (i, zone))[:15]
        _link(fw_ns, ns_of[zone], i, ifname)
        batch(ns_of[zone], ["addr add %s/32 dev up0" % a for a in sorted(addrs[zone])])
        batch(fw_ns, ["route add %s/32 via 100.64.%d.2" % (a, i) for a in sorted(addrs[zone])]
              + ["addr add %s/32 dev %s" % (a, ifname) for a in sorted(addrs.get("self", ())) if zone == "peer"])
    run(["ip", "netns", "exec", fw_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    run(["ip", "netns", "exec", fw_ns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=%s" % EPHEMERAL])
    extra = {}
    if mgmt_addr:  # to the firewall's own address on the management client's link
        own = "100.64.%d.1" % zones.index(client_zone)
        for port in firewall["management"]["ports"][:1] + ["23"]:
            extra["management %s>%s:%s/tcp" % (mgmt_addr[0], own, port)] = (
                client_zone, mgmt_addr[0], None, "fw", own, "tcp", int(port))
        if firewall["mode"] == "network":
            other = zones[0]
            src = sorted(addrs[other])[0]
            extra["management-from-elsewhere %s>fw:%s/tcp" % (src, firewall["management"]["ports"][0])] = (
                other, src, None, "fw", "100.64.0.1", "tcp", int(firewall["management"]["ports"][0]))
    return ns_of, extra


def batch(ns, commands):
    """Many `ip` commands in one process."""
    if commands:
        run(["ip", "-n", ns, "-batch", "-"], input="\n".join(commands) + "\n")


def _host_in(net):
    n = ipaddress.ip_network(net)
    return str(n.network_address + 7 if n.num_addresses > 8 else n.network_address)


def send(ns_of, probe_set):
    """Run every probe from its source namespace, all namespaces at once."""
    by_ns = {}
    for key, (sz, src, sport, dz, dst, proto, dport) in probe_set.items():
        by_ns.setdefault(ns_of[sz], {})[key] = (src, sport, dst, proto, dport)
    procs = [(subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", PROBE], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), batch)
             for ns, batch in by_ns.items()]
    answers = {}
    for proc, batch in procs:
        out, err = proc.communicate(json.dumps(batch), timeout=60)
        assert proc.returncode == 0, err
        answers.update(json.loads(out))
    return answers


def echo_servers(ns_of, probe_set):
    """UDP echo listeners bound to each probed address and port (replies leave from that address)."""
    binds = {}
    for sz, src, sport, dz, dst, proto, dport in probe_set.values():
        if proto == "udp":
            binds.setdefault(ns_of[dz], set()).add("%s:%d" % (dst, dport))
    procs = []
    for ns, items in binds.items():
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", ECHO] + sorted(items),
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        procs.append(p)
    return procs


# ------------------------------------------------------------------------------ rule sets

def iptables_restore_text(aerleon_text):
    """Aerleon's iptables output (-P/-N/-A lines) as an iptables-restore file for the filter table."""
    policies, chains, rules = {}, [], []
    for line in aerleon_text.splitlines():
        words = line.split()
        if line.startswith("-P "):
            policies[words[1]] = words[2]
        elif line.startswith("-N "):
            chains.append(words[1])
        elif line.startswith("-A "):
            rules.append(line)
    head = [":%s %s [0:0]" % (c, policies.get(c, "ACCEPT")) for c in ("INPUT", "FORWARD", "OUTPUT")]
    return "\n".join(["*filter"] + head + [":%s - [0:0]" % c for c in chains] + rules + ["COMMIT", ""])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Aerleon's nftables and iptables output of every example firewall:
    {(topology, firewall): text}, {(topology, firewall, "iptables"): text}."""
    out = {}
    for topology, hostvars in INVENTORIES.items():
        root = tmp_path_factory.mktemp(topology)
        for rel, text in aerleon_files(build_policy(hostvars)).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        run([str(ACLGEN), "--base_directory", str(root / "policies"), "--definitions_directory",
             str(root / "def"), "--output_directory", str(root / "acls")])
        for path in (root / "acls").glob("*.nft"):
            out[(topology, path.stem)] = path.read_text()
            out[(topology, path.stem, "iptables")] = (root / "acls" / path.stem).read_text()
    return out


def load(fw_ns, script, tool="nftables"):
    """Replace whatever filters the firewall namespace with `script`; forget every connection."""
    run(["ip", "netns", "exec", fw_ns, "nft", "flush", "ruleset"])
    run(["ip", "netns", "exec", fw_ns, "conntrack", "-F"], check=False)
    if tool == "iptables":
        run(["ip", "netns", "exec", fw_ns, "iptables-restore"], input=iptables_restore_text(script))
    else:
        run(["ip", "netns", "exec", fw_ns, "nft", "-f", "-"], input=script)


CASES = [(t, name) for t, hv in INVENTORIES.items() for name, fw in build_policy(hv)["firewalls"].items()
         if fw["platform"] != "windows"]


def answers(netns, topology, name, aerleon_text, tool="nftables"):
    """(own answers, Aerleon's answers, seed flow keys) for one example firewall."""
    firewall = build_policy(INVENTORIES[topology])["firewalls"][name]
    probe_set, seed = probes(firewall)
    ns_of, extra = build(netns, firewall, probe_set)
    probe_set.update(extra)
    servers = echo_servers(ns_of, probe_set)
    try:
        # the collection's reference rendering (an iptables/pfSense firewall gets the same rules)
        load(ns_of["fw"], N.render_script(N.desired_table(dict(firewall, platform="nftables"), name)))
        own = send(ns_of, probe_set)
        load(ns_of["fw"], aerleon_text, tool)
        theirs = send(ns_of, probe_set)
    finally:
        for p in servers:
            p.kill()
            p.wait()
    return own, theirs, seed


@pytest.mark.parametrize("topology,name", CASES, ids=["%s-%s" % c for c in CASES])
def test_aerleon_nftables_answers_like_the_collection(topology, name, netns, rendered):
    own, theirs, seed = answers(netns, topology, name, rendered[(topology, name)])
    assert not {k: v for k, v in own.items() if v != "pass" and (k in seed or v.startswith("error"))}
    differ = {k: (own[k], theirs[k]) for k in own if own[k] != theirs[k]}
    assert not differ, differ
    assert "blocked" in own.values()
    print("%s %s: %d probes (%d seed flows), %d pass, %d blocked, same answers" % (
        topology, name, len(own), len(seed), list(own.values()).count("pass"), list(own.values()).count("blocked")))


# Aerleon's iptables rendering, on a sample: the fixture with every opt-in, and the two
# host-mode (nftables reverse proxy) and two network firewalls of the consolidated example.
IPTABLES_CASES = [("extras", "fw-ext"), ("extras", "fw-int"), ("consolidated", "fw-ext"), ("consolidated", "rp1")]


@pytest.mark.skipif(not shutil.which("iptables-restore"), reason="needs iptables-restore")
@pytest.mark.parametrize("topology,name", IPTABLES_CASES, ids=["%s-%s" % c for c in IPTABLES_CASES])
def test_aerleon_iptables_answers_like_the_collection(topology, name, netns, rendered):
    own, theirs, seed = answers(netns, topology, name, rendered[(topology, name, "iptables")], "iptables")
    assert not {k: v for k, v in own.items() if v != "pass" and (k in seed or v.startswith("error"))}
    differ = {k: (own[k], theirs[k]) for k in own if own[k] != theirs[k]}
    assert not differ, differ
    print("%s %s (iptables): %d probes, same answers" % (topology, name, len(own)))


def test_a_missing_term_is_seen(netns, rendered):
    """The comparison can fail: without one term, exactly that rule's seed flows differ."""
    text = rendered[("consolidated", "fw-int")]
    assert "jump central-t12-f14-out\n" in text
    own, theirs, seed = answers(netns, "consolidated", "fw-int", text.replace("jump central-t12-f14-out\n", ""))
    differ = {k for k in own if own[k] != theirs[k]}
    assert differ == {k for k in seed if k.startswith("central-t12-f14-out ")}
