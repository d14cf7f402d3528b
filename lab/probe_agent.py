#!/usr/bin/env python3
"""The probe agent, run inside the lab's containers (podman exec; the lab folder is mounted
at /ocs-lab). stdlib only: the containers have python3 and nothing else.

    python3 /ocs-lab/probe.py listen --tcp 443,5061 --udp 3478 --addrs 10.0.0.1 --lifetime 120
    python3 /ocs-lab/probe.py probe < probes.json > results.json

listen: TCP and UDP listeners on every probed port; each answer carries the peer address the
listener saw ("OCS <peer> <peer port> <local> <local port>"), so the controller can tell a
NATed flow from a direct one. probe: the probes of one client, in parallel, each bound to its
source address and port; the status is open, refused, timeout, unreachable or error.
"""
import json
import os
import selectors
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 1.5
PIDFILE = "/tmp/ocs-listen.pid"


def _listen_sockets(sel, tcp, udp, addrs):
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
        for addr in addrs:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, "udp")


def _take_pidfile():
    try:        # a listener left by an interrupted run goes first
        with open(PIDFILE) as f:
            os.kill(int(f.read().strip()), 15)
    except (OSError, ValueError):
        pass
    with open(PIDFILE, "w") as f:
        f.write(str(os.getpid()))


def _answer(key):
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


def agent_listen(args):
    sel = selectors.DefaultSelector()
    _listen_sockets(sel, [int(p) for p in args.tcp.split(",") if p],
                    [int(p) for p in args.udp.split(",") if p], [a for a in args.addrs.split(",") if a])
    _take_pidfile()
    print("READY", flush=True)
    end = time.time() + args.lifetime
    while time.time() < end:
        for key, _ev in sel.select(timeout=1):
            _answer(key)
    return 0


def _exchange(s, proto, dst, dport, timeout):
    """Connect and read the listener's one-line answer (UDP: resend until answered)."""
    s.connect((dst, dport))
    if proto == "tcp":
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        return data
    deadline = time.time() + timeout
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
    return data


def one_probe(p):
    proto, src, sport, dst, dport = p["protocol"], p["src"], p["sport"] or 0, p["dst"], p["dport"]
    res = {"key": p["key"], "status": "error", "peer": None, "detail": ""}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((src, sport))
        s.settimeout(p.get("timeout", TIMEOUT))
        data = _exchange(s, proto, dst, dport, p.get("timeout", TIMEOUT))
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
        results = list(ex.map(one_probe, probes))
    json.dump(results, sys.stdout)
    return 0


def add_arguments(sub):
    a = sub.add_parser("listen", help="(in a container) answer on TCP/UDP ports")
    a.add_argument("--tcp", default="")
    a.add_argument("--udp", default="")
    a.add_argument("--addrs", default="", help="local addresses for the UDP sockets")
    a.add_argument("--lifetime", type=float, default=300)
    sub.add_parser("probe", help="(in a container) run probes read as JSON from stdin")


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="probe agent (runs inside a lab container)")
    add_arguments(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(argv)
    return agent_listen(args) if args.cmd == "listen" else agent_probe(args)


if __name__ == "__main__":
    sys.exit(main())
