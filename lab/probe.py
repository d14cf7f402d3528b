#!/usr/bin/env python3
"""Packet-level verifier of a lab: every flow of the policy answers, nothing else does.

Controller side (the host):

    lab/probe.py run --lab molecule/<s>/lab.json --policy out/molecule/<s>/policy/policy.json \\
                     --out out/molecule/<s> [--drift drift.json] [--name NAME]

  1. reads the exported policy and the lab description, builds the probe matrix:
     positive probes, one per seed rule (each rule of each network firewall), for each
     concrete address of the rule (VIPs included), TCP connect or UDP request/reply,
     port ranges sampled at both ends and inside (also for source-port ranges); negative
     probes: ports next to every range (49999, 60000), ports open on one role/address but
     not on another, the reverse of one-way rules, a source the rule does not name,
     Internet -> internal network and perimeter internal side, Internet -> 5062/8057 on
     every edge external address. Each probe's expected result comes from an evaluator of
     the policy itself (network firewall on the path + host firewall of the servers).
  2. starts listeners (TCP and UDP, every probed port, negative ones too, so a blocked
     probe is the firewall's doing and never a closed port) in the server containers;
     each answer carries the peer address the listener saw;
  3. runs the probes from the client containers in parallel (short timeouts), binding the
     rule's source address and source port;
  4. checks every container's routes: no route may point at the host (the podman bridge
     gateways), every routed hop must be a firewall container;
  5. writes probe-matrix.md and probe-matrix.xml (JUnit) into --out; exit status 1 when a
     probe or a route check fails.

  A positive probe passes when it is answered AND the listener saw the client's own
  address (no NAT: the A/V Edge must be reached un-NATed). A negative probe passes when
  it gets no answer (timeout or unreachable); "refused" means the packet got through.

  --drift FILE: a description of changes made to the live firewalls (see drift below);
  the run then expects the lab to behave like the policy WITH those changes, and reports
  which probes of the true policy the drift breaks (the verifier's own test: exactly
  those must fail against the true policy).

    lab/probe.py drift --lab LAB --policy POLICY --drift drift.json

  applies that drift to the live nftables/iptables firewalls (podman exec): deletes the
  rules with a given id, changes the port of another, adds a rogue allow rule.

Agent side (inside a container, via podman exec; the lab folder is mounted at /ocs-lab):

    python3 /ocs-lab/probe.py listen --tcp 443,5061 --udp 3478 --lifetime 120
    python3 /ocs-lab/probe.py probe < probes.json > results.json

stdlib only (the containers have python3 and nothing else).
"""
import argparse
import copy
import ipaddress
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
import xml.sax.saxutils as sx
from concurrent.futures import ThreadPoolExecutor

MOUNT = "/ocs-lab"
ANY_PORT = {"tcp": 41000, "udp": 41000}   # sample port when a rule says "any"
TIMEOUT = 1.5


# ============================================================================ agent side

def agent_listen(args):
    tcp = [int(p) for p in args.tcp.split(",") if p]
    udp = [int(p) for p in args.udp.split(",") if p]
    sel = selectors.DefaultSelector()
    for port in tcp:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("0.0.0.0", port))
        s.listen(128)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "tcp")
    # UDP: one socket per local address, so the reply leaves from the address the request
    # was sent to (a VIP or a secondary address), as a real server's would
    for port in udp:
        for addr in [a for a in args.addrs.split(",") if a]:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, "udp")
    try:        # a listener left by an interrupted run goes first
        with open("/tmp/ocs-listen.pid") as f:
            os.kill(int(f.read().strip()), 15)
    except (OSError, ValueError):
        pass
    with open("/tmp/ocs-listen.pid", "w") as f:
        f.write(str(os.getpid()))
    print("READY", flush=True)
    end = time.time() + args.lifetime
    while time.time() < end:
        for key, _ev in sel.select(timeout=1):
            s = key.fileobj
            try:
                if key.data == "tcp":
                    conn, peer = s.accept()
                    local = conn.getsockname()
                    conn.settimeout(1)
                    conn.sendall(("OCS %s %d %s %d\n" % (peer[0], peer[1], local[0], local[1])).encode())
                    conn.close()
                else:
                    _data, peer = s.recvfrom(2048)
                    local = s.getsockname()
                    s.sendto(("OCS %s %d %s %d\n" % (peer[0], peer[1], local[0], local[1])).encode(), peer)
            except OSError:
                pass
    return 0


def _one_probe(p):
    proto, src, sport, dst, dport = p["protocol"], p["src"], p["sport"] or 0, p["dst"], p["dport"]
    res = {"key": p["key"], "status": "error", "peer": None, "detail": ""}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((src, sport))
        s.settimeout(p.get("timeout", TIMEOUT))
        if proto == "tcp":
            s.connect((dst, dport))
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
        else:
            s.connect((dst, dport))
            deadline = time.time() + p.get("timeout", TIMEOUT)
            data = b""
            while time.time() < deadline and not data:
                s.send(("PROBE %s\n" % dst).encode())
                s.settimeout(min(0.5, max(0.05, deadline - time.time())))
                try:
                    data = s.recv(2048)
                except socket.timeout:
                    continue
            if not data:
                raise socket.timeout()
        words = data.decode(errors="replace").split()
        if len(words) >= 3 and words[0] == "OCS":
            res.update(status="open", peer=words[1], detail="peer %s:%s" % (words[1], words[2]))
        else:
            res.update(status="open", detail="unexpected answer %r" % data[:60])
    except socket.timeout:
        res.update(status="timeout")
    except ConnectionRefusedError:
        res.update(status="refused")
    except OSError as e:
        res.update(status="unreachable" if e.errno in (101, 113, 110) else "error", detail=str(e))
    finally:
        s.close()
    return res


def agent_probe(_args):
    probes = json.load(sys.stdin)
    with ThreadPoolExecutor(max_workers=128) as ex:
        results = list(ex.map(_one_probe, probes))
    json.dump(results, sys.stdout)
    return 0


# ============================================================================ policy model

def _ports(spec):
    """[(lo, hi)] of a PFRULE port list; None = any."""
    if spec is None:
        return None
    out = []
    for p in spec:
        lo, _sep, hi = str(p).partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def _in_ports(port, spec):
    rng = _ports(spec)
    return rng is None or any(lo <= port <= hi for lo, hi in rng)


def _in_addrs(ip, spec):
    if spec is None:
        return True
    a = ipaddress.ip_address(ip)
    return any(a in ipaddress.ip_network(x, strict=False) for x in spec)


class Lab:
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
    """Evaluator: would this first packet pass the lab's firewalls, per the policy?"""

    def __init__(self, policy, lab):
        self.p = policy
        self.lab = lab

    def path_firewall(self, src, dst):
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

    @staticmethod
    def match(r, proto, src, sport, dst, dport):
        return (r["protocol"] == proto and _in_addrs(src, r["src"]) and _in_addrs(dst, r["dst"])
                and _in_ports(sport, r["sport"]) and _in_ports(dport, r["dport"]))

    def allowed(self, proto, src, sport, dst, dport):
        """(allowed, rule ids that let it through, why not)"""
        fw = self.path_firewall(src, dst)
        if fw is None:
            return False, [], "no firewall path (%s -> %s)" % (self.lab.net_of(src)["kind"], self.lab.net_of(dst)["kind"])
        ids = [r["id"] for r in self.p["firewalls"][fw]["rules"]
               if r["chain"] == "forward" and self.match(r, proto, src, sport, dst, dport)]
        if not ids:
            return False, [], "no rule on %s" % fw
        # host firewalls (Linux ones are enforced in the lab): input of the destination
        dhost = self.lab.owner(dst)["host"]
        hfw = self.p["firewalls"].get(dhost)
        if hfw and hfw["mode"] == "host" and hfw["platform"] in ("nftables", "iptables"):
            if not any(r["chain"] == "input" and self.match(r, proto, src, sport, dst, dport)
                       for r in hfw["rules"]):
                return False, [], "host firewall of %s" % dhost
        return True, ids, ""


def apply_drift(policy, drift):
    """The policy as the drifted firewalls enforce it (for the evaluator)."""
    p = copy.deepcopy(policy)
    for fwname, d in drift.items():
        fw = p["firewalls"][fwname]
        rules = []
        for r in fw["rules"]:
            if r["id"] in d.get("delete", []):
                continue
            ch = d.get("change_port")
            if ch and r["id"] == ch["id"]:
                r = dict(r, dport=[str(ch["to"])])
            rules.append(r)
        for rogue in d.get("rogue", []):
            rules.append(dict(rogue, id="rogue", chain="forward", sport=rogue.get("sport"),
                              src=rogue.get("src"), dst=rogue.get("dst")))
        fw["rules"] = rules
    return p


# ============================================================================ probe matrix

def _samples(spec, default):
    """Ports to probe for a rule's port list: single ports, ranges at both ends and inside."""
    if spec is None:
        return [default]
    out = []
    for lo, hi in _ports(spec):
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


def build_matrix(policy, lab):
    L = Lab(lab)
    ev = Policy(policy, L)
    probes = []
    seen = set()
    # source ports for "any": 42000-47999, the next 1000-port slice on each run, so a run
    # never reuses the 4-tuples (conntrack entries, TIME_WAIT) of the runs just before it
    eph_base = 42000 + 1000 * _next_slice(lab["scenario"])

    def rep(zone, side_kind, site, exclude=None):
        """Representative client/server address for "any" in a zone."""
        if zone == "internet":
            return L.first_ip("inet-client")
        if zone == "internal":
            return L.first_ip("int-client")
        raise ValueError(zone)

    def add(kind, label, rule, proto, src, sport, dst, dport, expect=None):
        key = (proto, src, sport or 0, dst, dport)
        if key in seen:
            return
        # "any" source port: a fixed one outside every port the policy names (the kernel's
        # ephemeral range 32768-60999 overlaps the RTP range 50000-59999)
        fixed = bool(sport)
        if not sport:
            sport = eph_base + len(probes)
        allowed, ids, why = ev.allowed(proto, src, sport, dst, dport)
        if expect is None:
            expect = allowed
        if expect != allowed:
            return      # candidate negative the policy allows after all (or vice versa): skip
        seen.add(key)
        probes.append({
            "key": "p%d" % len(probes), "kind": kind, "label": label, "rule": rule,
            "protocol": proto, "src": src, "sport": sport, "sport_fixed": fixed, "dst": dst, "dport": dport,
            "client": L.owner(src)["host"], "server": L.owner(dst)["host"],
            "expect": "open" if expect else "blocked", "why": ", ".join(ids) if allowed else why,
            # an allowed flow may take longer on a loaded machine; a denied one costs its timeout
            "timeout": TIMEOUT * 2 if expect else TIMEOUT,
        })

    net_fws = {n: f for n, f in sorted(policy["firewalls"].items()) if f["mode"] == "network"}
    # ---- positives: every rule, every concrete address, port samples
    for fwname, fw in net_fws.items():
        for r in fw["rules"]:
            proto = r["protocol"]
            srcs = r["src"] or [rep(r["src_zone"], None, fw["site"])]
            dsts = r["dst"] or [rep(r["dst_zone"], None, fw["site"])]
            for s in srcs:
                for d in dsts:
                    for sp in (_samples(r["sport"], 0) if r["sport"] else [0]):
                        for dp in _samples(r["dport"], ANY_PORT[proto]):
                            add("allowed", "%s %s" % (r["service"], r["direction"]), r["id"],
                                proto, s, sp, d, dp, expect=True)
    # ---- negatives
    for fwname, fw in net_fws.items():
        rules = fw["rules"]
        for r in rules:
            proto = r["protocol"]
            srcs = r["src"] or [rep(r["src_zone"], None, fw["site"])]
            dsts = r["dst"] or [rep(r["dst_zone"], None, fw["site"])]
            # ports next to ranges (destination and source ranges)
            for lo, hi in (_ports(r["dport"]) or []):
                if hi > lo:
                    for s in srcs[:1]:
                        for d in dsts:
                            for dp in (lo - 1, hi + 1):
                                add("denied", "next to range %d-%d" % (lo, hi), r["id"], proto, s, 0, d, dp, False)
            for lo, hi in (_ports(r["sport"]) or []):
                if hi > lo:
                    for s in srcs:
                        for sp in (lo - 1, hi + 1):
                            add("denied", "source port next to range %d-%d" % (lo, hi), r["id"],
                                proto, s, sp, dsts[0], _samples(r["dport"], ANY_PORT[proto])[0], False)
            # reverse of a one-way rule: the destination opens toward the source
            for d in dsts:
                for s in srcs[:2]:
                    for dp in _samples(r["dport"], ANY_PORT[proto])[:1]:
                        add("denied", "reverse of one-way rule", r["id"], proto, d, 0, s, dp, False)
            # a source the rule does not name (same zone)
            if r["src"] is not None and r["src_zone"] == "internal":
                for dp in _samples(r["dport"], ANY_PORT[proto])[:1]:
                    add("denied", "source not named by the rule", r["id"], proto,
                        L.first_ip("int-client"), 0, dsts[0], dp, False)
        # ports open on one address/role but not on another (same firewall, same zones)
        opened = {}
        for r in rules:
            if r["dst"] is None:
                continue
            for d in r["dst"]:
                for dp in _samples(r["dport"], ANY_PORT[r["protocol"]])[:1]:
                    opened.setdefault((r["src_zone"], r["dst_zone"]), {}).setdefault(d, set()).add(
                        (r["protocol"], dp, (r["src"] or [rep(r["src_zone"], None, fw["site"])])[0]))
        for zones, per_dst in opened.items():
            allports = set().union(*per_dst.values())
            for d in sorted(per_dst, key=_ip_sort):
                for proto, dp, s in sorted(allports):
                    add("denied", "open on another address, not on this one", "", proto, s, 0, d, dp, False)
    # Internet -> internal network and perimeter internal side; Internet -> 5062/8057 on edges
    inet = L.first_ip("inet-client")
    for c in lab["containers"]:
        for i in c["interfaces"]:
            kind = L.nets[i["network"]]["kind"]
            if kind in ("lan", "pint"):
                for proto, dp in (("tcp", 443), ("tcp", 5061), ("udp", 3478)):
                    add("denied", "Internet to the %s" % ("internal network" if kind == "lan" else "perimeter internal side"),
                        "", proto, inet, 0, i["ip"], dp, False)
            if kind == "pext" and c["kind"] in ("edge", "loadbalancer"):
                addrs = [i["ip"]] + [v["ip"] for v in c["vips"] if v["ifname"] == "pext"]
                for a in addrs:
                    for dp in (5062, 8057):
                        add("denied", "Internet to %d on the edge" % dp, "", "tcp", inet, 0, a, dp, False)
    return probes


# ============================================================================ running

def podman(*args, **kw):
    return subprocess.run(["podman"] + list(args), capture_output=True, text=True, check=False, **kw)


def run_matrix(lab, probes):
    L = Lab(lab)
    listen = {}
    for p in probes:
        listen.setdefault(L.ctr[p["server"]]["name"], {"tcp": set(), "udp": set()})[p["protocol"]].add(p["dport"])
    addrs = {c["name"]: [i["ip"] for i in c["interfaces"]] + [v["ip"] for v in c["vips"]]
             for c in lab["containers"]}
    procs = []
    try:
        for name, ports in sorted(listen.items()):
            pr = subprocess.Popen(
                ["podman", "exec", name, "python3", MOUNT + "/probe.py", "listen",
                 "--tcp", ",".join(map(str, sorted(ports["tcp"]))),
                 "--udp", ",".join(map(str, sorted(ports["udp"]))), "--lifetime", "300",
                 "--addrs", ",".join(addrs[name])],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append((name, pr))
        for name, pr in procs:
            line = pr.stdout.readline()
            if "READY" not in line:
                raise RuntimeError("listener in %s did not start: %s %s" % (name, line, pr.stderr.read()))
        by_client = {}
        for p in probes:
            by_client.setdefault(L.ctr[p["client"]]["name"], []).append(p)
        runs = []
        for name, ps in sorted(by_client.items()):
            pr = subprocess.Popen(["podman", "exec", "-i", name, "python3", MOUNT + "/probe.py", "probe"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            runs.append((name, pr, json.dumps(ps)))
        results = {}
        threads = []

        def comm(name, pr, data):
            out, err = pr.communicate(data, timeout=120)
            if pr.returncode != 0:
                raise RuntimeError("probes from %s failed: %s" % (name, err))
            for r in json.loads(out):
                results[r["key"]] = r
        for name, pr, data in runs:
            t = threading.Thread(target=comm, args=(name, pr, data))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
    finally:
        def stop(name):
            podman("exec", name, "sh", "-c", "kill $(cat /tmp/ocs-listen.pid 2>/dev/null) 2>/dev/null; true")
        with ThreadPoolExecutor(max_workers=16) as ex:
            list(ex.map(stop, [name for name, _pr in procs]))
        for _name, pr in procs:
            pr.kill()
    for p in probes:
        r = results.get(p["key"], {"status": "error", "peer": None, "detail": "no result"})
        p["status"], p["peer"], p["detail"] = r["status"], r["peer"], r["detail"]
        if p["expect"] == "open":
            p["ok"] = r["status"] == "open" and r["peer"] == p["src"]
            if r["status"] == "open" and r["peer"] != p["src"]:
                p["detail"] += " (NAT? expected peer %s)" % p["src"]
        else:
            p["ok"] = r["status"] in ("timeout", "unreachable")
    return probes


def route_checks(lab):
    """No route in any container may use the host (bridge gateway); hops are firewalls."""
    gws = set(lab["bridge_gateways"])
    fw_ips = {i["ip"] for c in lab["containers"] if c["kind"] == "firewall" for i in c["interfaces"]}
    with ThreadPoolExecutor(max_workers=16) as ex:
        outs = list(ex.map(lambda c: podman("exec", c["name"], "ip", "-j", "route", "show"), lab["containers"]))
    checks = []
    for c, out in zip(lab["containers"], outs):
        ok, detail = True, []
        try:
            routes = json.loads(out.stdout)
        except ValueError:
            routes, ok = [], False
            detail.append("cannot read routes: %s" % out.stderr.strip())
        for r in routes:
            gw = r.get("gateway")
            if gw in gws:
                ok = False
                detail.append("route %s via the host %s" % (r.get("dst"), gw))
            elif gw and gw not in fw_ips:
                ok = False
                detail.append("route %s via %s, not a firewall" % (r.get("dst"), gw))
            elif gw:
                detail.append("%s via %s" % (r.get("dst"), gw))
        checks.append({"container": c["host"], "ok": ok, "detail": "; ".join(detail) or "connected networks only"})
    return checks


# ============================================================================ reports

def _fmt_port(p):
    return str(p["dport"]) if not p["sport_fixed"] else "%d (from %d)" % (p["dport"], p["sport"])


def write_reports(out, name, probes, routes, diffs=None, title_extra=""):
    os.makedirs(out, exist_ok=True)
    npass = sum(p["ok"] for p in probes) + sum(r["ok"] for r in routes)
    ntot = len(probes) + len(routes)
    md = ["# Probe matrix: %s%s" % (name, title_extra), "",
          "%d of %d checks passed (%d allowed flows, %d denied flows, %d route checks)." % (
              npass, ntot, sum(p["expect"] == "open" for p in probes),
              sum(p["expect"] == "blocked" for p in probes), len(routes)), "",
          "Allowed flows pass when answered and the server saw the client's own address (no NAT);",
          "denied flows pass when unanswered (a listener is on every probed port).", ""]
    if diffs is not None:
        md += ["## Drift detected by packets", "",
               "Probes of the true policy that the drift breaks (%d):" % len(diffs), ""]
        md += ["- %s %s %s:%s -> %s:%s (%s, expected %s)" % (
            p["rule"] or p["label"], p["protocol"], p["src"], p["sport"] or "*", p["dst"], p["dport"],
            p["label"], p["true_expect"]) for p in diffs] + [""]
    md += ["| result | expect | got | rule / reason | proto | client | source | server | destination | port | detail |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in sorted(probes, key=lambda p: (p["ok"], p["expect"] != "open", p["rule"], p["dst"], p["dport"])):
        md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            "PASS" if p["ok"] else "**FAIL**", p["expect"], p["status"],
            (p["rule"] + " " if p["rule"] else "") + p["label"], p["protocol"], p["client"], p["src"],
            p["server"], p["dst"], _fmt_port(p), (p["detail"] or p["why"]).replace("|", "/")))
    md += ["", "## Routes", "", "| result | container | routes |", "| --- | --- | --- |"]
    for r in routes:
        md.append("| %s | %s | %s |" % ("PASS" if r["ok"] else "**FAIL**", r["container"], r["detail"]))
    with open(os.path.join(out, "probe-matrix.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    fails = ntot - npass
    x = ['<?xml version="1.0" encoding="UTF-8"?>',
         '<testsuites><testsuite name="%s" tests="%d" failures="%d">' % (sx.escape("probe-matrix." + name), ntot, fails)]
    for p in probes:
        cname = "%s %s %s:%s -> %s %s:%s %s" % (p["expect"], p["client"], p["src"], p["sport"] or "*",
                                                p["server"], p["dst"], p["dport"], p["protocol"])
        x.append('<testcase classname="%s" name="%s">' % (sx.quoteattr(p["rule"] or p["label"])[1:-1],
                                                          sx.quoteattr(cname + " " + p["label"])[1:-1]))
        if not p["ok"]:
            x.append('<failure message=%s/>' % sx.quoteattr("expected %s, got %s %s" % (p["expect"], p["status"], p["detail"])))
        x.append("</testcase>")
    for r in routes:
        x.append('<testcase classname="routes" name=%s>' % sx.quoteattr(r["container"]))
        if not r["ok"]:
            x.append('<failure message=%s/>' % sx.quoteattr(r["detail"]))
        x.append("</testcase>")
    x.append("</testsuite></testsuites>")
    with open(os.path.join(out, "probe-matrix.xml"), "w") as f:
        f.write("\n".join(x) + "\n")
    return fails


def print_summary(probes, routes, stream=sys.stdout):
    w = stream.write
    w("%-7s %-8s %-11s %-34s %-4s %-12s -> %-12s %-16s %s\n" % (
        "result", "expect", "got", "rule / reason", "prot", "client", "server", "destination", "port"))
    for p in sorted(probes, key=lambda p: (p["ok"], p["expect"] != "open", p["rule"], p["dst"], p["dport"])):
        w("%-7s %-8s %-11s %-34s %-4s %-12s -> %-12s %-16s %s\n" % (
            "PASS" if p["ok"] else "FAIL", p["expect"], p["status"],
            ((p["rule"] + " " if p["rule"] else "") + p["label"])[:34], p["protocol"], p["client"],
            p["server"], p["dst"], _fmt_port(p)))
    for r in routes:
        w("%-7s routes of %s: %s\n" % ("PASS" if r["ok"] else "FAIL", r["container"], r["detail"]))


def cmd_run(args):
    with open(args.lab) as f:
        lab = json.load(f)
    with open(args.policy) as f:
        policy = json.load(f)
    name = args.name or lab["scenario"]
    start = time.time()
    probes = build_matrix(policy, lab)
    diffs = None
    if args.drift:
        with open(args.drift) as f:
            drift = json.load(f)
        ev = Policy(apply_drift(policy, drift), Lab(lab))
        diffs = []
        for p in probes:
            allowed = ev.allowed(p["protocol"], p["src"], p["sport"], p["dst"], p["dport"])[0]
            now = "open" if allowed else "blocked"
            if now != p["expect"]:
                p["true_expect"] = p["expect"]
                p["expect"] = now
                diffs.append(p)
    run_matrix(lab, probes)
    routes = route_checks(lab)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "probe-results.json"), "w") as f:
        json.dump({"probes": probes, "routes": routes}, f, indent=1)
    fails = write_reports(args.out, name, probes, routes, diffs,
                          " (drifted firewalls: expectations of the drifted policy)" if args.drift else "")
    if not args.quiet:
        print_summary(probes, routes)
    print("probe matrix %s: %d probes (%d allowed, %d denied) + %d route checks, %d failed, %.1f s; "
          "report: %s/probe-matrix.md, JUnit: %s/probe-matrix.xml" % (
              name, len(probes), sum(p["expect"] == "open" for p in probes),
              sum(p["expect"] == "blocked" for p in probes), len(routes), fails, time.time() - start,
              args.out, args.out))
    if diffs is not None:
        print("drift: %d probes of the true policy now behave differently (listed in the report):" % len(diffs))
        for p in diffs:
            print("  %s %s %s -> %s:%s, true policy: %s, now: %s" % (
                p["rule"] or p["label"], p["protocol"], p["src"], p["dst"], p["dport"], p["true_expect"], p["status"]))
        missing = drift_detected(diffs, drift)
        for m in missing:
            print("drift NOT detected: %s" % m)
        if missing or not diffs:
            return 1
    return 1 if fails else 0


# ============================================================================ drift

def _nft_rule_lines(ctr, chain):
    out = podman("exec", ctr, "nft", "-a", "list", "chain", "inet", "ocs_edge", chain)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout.splitlines()


def cmd_drift(args):
    """Apply a drift description to the live firewalls (nftables: table inet ocs_edge;
    iptables: the rules with the ocs comment)."""
    with open(args.lab) as f:
        lab = json.load(f)
    with open(args.policy) as f:
        policy = json.load(f)
    if args.drift and os.path.exists(args.drift):
        with open(args.drift) as f:
            drift = json.load(f)
    else:
        drift = default_drift(policy, lab)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "drift.json"), "w") as f:
            json.dump(drift, f, indent=1)
        print("drift: description written to %s" % os.path.join(args.out, "drift.json"))
    L = Lab(lab)
    for fwname, d in drift.items():
        ctr = L.ctr[fwname]["name"]
        platform = policy["firewalls"][fwname]["platform"]
        if platform == "nftables":
            lines = _nft_rule_lines(ctr, "forward")
            for rid in d.get("delete", []):
                hs = [re.search(r"# handle (\d+)", ln).group(1) for ln in lines
                      if ('comment "ocs %s ' % rid) in ln]
                if not hs:
                    raise RuntimeError("%s: no rule %s to delete" % (fwname, rid))
                for h in hs:
                    _check(podman("exec", ctr, "nft", "delete", "rule", "inet", "ocs_edge", "forward", "handle", h))
            ch = d.get("change_port")
            if ch:
                for ln in lines:
                    if ('comment "ocs %s ' % ch["id"]) in ln:
                        h = re.search(r"# handle (\d+)", ln).group(1)
                        body = re.sub(r"\s*# handle \d+$", "", ln).strip()
                        body = re.sub(r"dport \S+", "dport %d" % ch["to"], body, count=1)
                        _check(podman("exec", ctr, "nft", "replace", "rule", "inet", "ocs_edge", "forward",
                                      "handle", h, body))
            for rg in d.get("rogue", []):
                rule = "%s ip daddr %s %s dport %s accept comment \"rogue: added by hand\"" % (
                    "", ",".join(rg["dst"]) if len(rg["dst"]) == 1 else "{ %s }" % ", ".join(rg["dst"]),
                    rg["protocol"], ",".join(rg["dport"]))
                _check(podman("exec", ctr, "nft", "insert", "rule", "inet", "ocs_edge", "forward", rule.strip()))
        elif platform == "iptables":
            out = podman("exec", ctr, "iptables", "-S")
            _check(out)
            rules = out.stdout.splitlines()
            for rid in d.get("delete", []):
                hits = [r for r in rules if ("ocs %s " % rid) in r and r.startswith("-A ")]
                if not hits:
                    raise RuntimeError("%s: no rule %s to delete" % (fwname, rid))
                for r in hits:
                    _check(podman("exec", ctr, "sh", "-c", "iptables " + r.replace("-A ", "-D ", 1)))
            ch = d.get("change_port")
            if ch:
                for r in rules:
                    if ("ocs %s " % ch["id"]) in r and r.startswith("-A "):
                        _check(podman("exec", ctr, "sh", "-c", "iptables " + r.replace("-A ", "-D ", 1)))
                        new = re.sub(r"--dport \S+", "--dport %d" % ch["to"], r, count=1)
                        _check(podman("exec", ctr, "sh", "-c", "iptables " + new))
            chain = next((r.split()[1] for r in rules if r.startswith("-A ") and "ocs " in r
                          and " -j ACCEPT" in r and "--dport" in r), "FORWARD")
            for rg in d.get("rogue", []):
                _check(podman("exec", ctr, "iptables", "-I", chain, "1", "-p", rg["protocol"], "-d", ",".join(rg["dst"]),
                              "--dport", ",".join(rg["dport"]).replace("-", ":"), "-m", "comment",
                              "--comment", "rogue: added by hand", "-j", "ACCEPT"))
        else:
            raise RuntimeError("%s: platform %s: no drift support" % (fwname, platform))
        print("drift applied to %s (%s): %s" % (fwname, platform, json.dumps(d)))
    return 0


def default_drift(policy, lab):
    """Drift for every network firewall: delete a required rule (external: the A/V RTP/UDP
    inbound rule; internal: the PSOM 8057 rule or the first), change the port of another,
    add a rogue allow rule that opens one of the matrix's denied flows through it."""
    L = Lab(lab)
    ev = Policy(policy, L)
    probes = build_matrix(policy, lab)
    drift = {}
    for name, fw in sorted(policy["firewalls"].items()):
        if fw["mode"] != "network" or fw["platform"] not in ("nftables", "iptables"):
            continue
        rules = fw["rules"]
        if fw["side"] == "external":
            dele = [r for r in rules if r["protocol"] == "udp" and r["dport"] and "-" in r["dport"][0]
                    and r["direction"] == "inbound"] or rules[:1]
        else:
            dele = [r for r in rules if r["dport"] == ["8057"]] or rules[:1]
        dele = dele[:1]
        change = next((r for r in rules if r not in dele and r["dport"] and "-" not in r["dport"][0]
                       and r["id"] != dele[0]["id"]), None)
        d = {"delete": [dele[0]["id"]]}
        if change:
            d["change_port"] = {"id": change["id"], "to": int(change["dport"][0]) + 1}
        # rogue: the first denied flow through this firewall, to an edge server or VIP
        # preferably, that the rogue rule really opens (no host firewall behind it)
        cands = [p for p in probes if p["expect"] == "blocked" and not p["sport_fixed"]
                 and ev.path_firewall(p["src"], p["dst"]) == name]
        cands.sort(key=lambda p: (L.owner(p["dst"])["kind"] not in ("edge", "loadbalancer"),
                                  not p["label"].startswith("Internet to 8057")))
        for neg in cands:
            rogue = {"protocol": neg["protocol"], "dst": [neg["dst"]], "dport": [str(neg["dport"])]}
            ev2 = Policy(apply_drift(policy, {name: {"rogue": [rogue]}}), L)
            if ev2.allowed(neg["protocol"], neg["src"], neg["sport"], neg["dst"], neg["dport"])[0]:
                d["rogue"] = [rogue]
                break
        drift[name] = d
    return drift


def drift_detected(diffs, drift):
    """What of the drift the packets did not show (empty: every change was seen)."""
    rules = {p["rule"] for p in diffs}
    missing = []
    for fw, d in drift.items():
        for rid in d.get("delete", []) + ([d["change_port"]["id"]] if d.get("change_port") else []):
            if rid not in rules:
                missing.append("%s: change of rule %s not seen by any probe" % (fw, rid))
        for rg in d.get("rogue", []):
            if not any(p["true_expect"] == "blocked" and p["dst"] in rg["dst"] for p in diffs):
                missing.append("%s: rogue rule %s not seen by any probe" % (fw, json.dumps(rg)))
    return missing


def _check(proc):
    if proc.returncode != 0:
        raise RuntimeError("%s: %s" % (proc.args, proc.stderr))
    return proc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("listen")
    a.add_argument("--tcp", default="")
    a.add_argument("--udp", default="")
    a.add_argument("--addrs", default="", help="local addresses for the UDP sockets")
    a.add_argument("--lifetime", type=float, default=300)
    sub.add_parser("probe")
    for n in ("run", "drift", "matrix"):
        a = sub.add_parser(n)
        a.add_argument("--lab", required=True)
        a.add_argument("--policy", required=True)
        a.add_argument("--out", default=".")
        a.add_argument("--drift")
        a.add_argument("--name")
        a.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "listen":
        return agent_listen(args)
    if args.cmd == "probe":
        return agent_probe(args)
    if args.cmd == "drift":
        return cmd_drift(args)
    if args.cmd == "matrix":
        with open(args.lab) as f:
            lab = json.load(f)
        with open(args.policy) as f:
            policy = json.load(f)
        json.dump(build_matrix(policy, lab), sys.stdout, indent=1)
        return 0
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
