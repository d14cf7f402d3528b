"""Running the probe matrix in a podman lab: listeners in the servers, probes from the
clients (both through lab/probe_agent.py, mounted at /ocs-lab), route checks."""
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from probe_oracle import Lab

MOUNT = "/ocs-lab"
AGENT = MOUNT + "/probe_agent.py"


def podman(*args, **kw):
    return subprocess.run(["podman"] + list(args), capture_output=True, text=True, **kw)


def check(proc):
    if proc.returncode != 0:
        raise RuntimeError("%s: %s" % (proc.args, proc.stderr))
    return proc


def start_listeners(lab, probes):
    """A listener on every probed port (negative ones too, so a blocked probe is the
    firewall's doing and never a closed port) in each server container."""
    L = Lab(lab)
    listen = {}
    for p in probes:
        listen.setdefault(L.ctr[p["server"]]["name"], {"tcp": set(), "udp": set()})[p["protocol"]].add(p["dport"])
    addrs = {c["name"]: [i["ip"] for i in c["interfaces"]] + [v["ip"] for v in c["vips"]]
             for c in lab["containers"]}
    procs = []
    for name, ports in sorted(listen.items()):
        pr = subprocess.Popen(
            ["podman", "exec", name, "python3", AGENT, "listen",
             "--tcp", ",".join(map(str, sorted(ports["tcp"]))),
             "--udp", ",".join(map(str, sorted(ports["udp"]))), "--lifetime", "300",
             "--addrs", ",".join(addrs[name])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append((name, pr))
    return procs


def wait_ready(procs):
    for name, pr in procs:
        line = pr.stdout.readline()
        if "READY" not in line:
            raise RuntimeError("listener in %s did not start: %s %s" % (name, line, pr.stderr.read()))


def stop_listeners(procs):
    def stop(name):
        podman("exec", name, "sh", "-c", "kill $(cat /tmp/ocs-listen.pid 2>/dev/null) 2>/dev/null; true")
    with ThreadPoolExecutor(max_workers=16) as ex:
        list(ex.map(stop, [name for name, _pr in procs]))
    for _name, pr in procs:
        pr.kill()


def run_probes(lab, probes):
    """All clients at once, each running its probes in parallel: {probe key: result}."""
    L = Lab(lab)
    by_client = {}
    for p in probes:
        by_client.setdefault(L.ctr[p["client"]]["name"], []).append(p)
    results, errors = {}, []

    def comm(name, ps):
        pr = subprocess.Popen(["podman", "exec", "-i", name, "python3", AGENT, "probe"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = pr.communicate(json.dumps(ps), timeout=120)
        if pr.returncode != 0:
            errors.append("probes from %s failed: %s" % (name, err))
            return
        for r in json.loads(out):
            results[r["key"]] = r
    threads = [threading.Thread(target=comm, args=item) for item in sorted(by_client.items())]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:     # their probes are reported as "no result" and fail
        sys.stderr.write(e + "\n")
    return results


def judge(probes, results):
    """An allowed probe passes when answered AND the listener saw the client's own address
    (no NAT); a denied one when unanswered ("refused" means the packet got through)."""
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


def run_matrix(lab, probes):
    procs = start_listeners(lab, probes)
    try:
        wait_ready(procs)
        results = run_probes(lab, probes)
    finally:
        stop_listeners(procs)
    return judge(probes, results)


def _route_check(c, out, gws, fw_ips):
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
    return {"container": c["host"], "ok": ok, "detail": "; ".join(detail) or "connected networks only"}


def route_checks(lab):
    """No route in any container may use the host (bridge gateway); hops are firewalls."""
    gws = set(lab["bridge_gateways"])
    fw_ips = {i["ip"] for c in lab["containers"] if c["kind"] == "firewall" for i in c["interfaces"]}
    with ThreadPoolExecutor(max_workers=16) as ex:
        outs = list(ex.map(lambda c: podman("exec", c["name"], "ip", "-j", "route", "show"), lab["containers"]))
    return [_route_check(c, out, gws, fw_ips) for c, out in zip(lab["containers"], outs)]
