"""The network-namespace harness of the backend integration tests (nftables, iptables).

Each test gets fresh namespaces (``netns_fixture(prefix)``), runs the real ansible-playbook inside
one (``playbook``, ``run_ansible``) and, for the packet-level probe, wires a router namespace
between a client and a server (``router_topology``, ``servers``, ``connect``).
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_LOCAL_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ANSIBLE_PLAYBOOK = str(_LOCAL_PLAYBOOK) if _LOCAL_PLAYBOOK.exists() else "ansible-playbook"


def skip_reason(what, tools):
    """Why the tests cannot run here (None when they can): root, ``tools`` and ansible-playbook."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, %s)" % what
    for tool in tools:
        if not shutil.which(tool):
            return "needs %s on PATH" % tool
    if not _LOCAL_PLAYBOOK.exists() and not shutil.which("ansible-playbook"):
        return "needs ansible-playbook"
    return None


def markers(what, tools):
    """pytestmark of a backend's test module: integration, skipped with the reason."""
    reason = skip_reason(what, tools)
    return [pytest.mark.integration, pytest.mark.skipif(reason is not None, reason=str(reason))]


def run(argv, check=True, **kw):
    proc = subprocess.run(argv, capture_output=True, text=True, **kw, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed rc=%s\n%s\n%s" % (argv, proc.returncode, proc.stdout, proc.stderr))
    return proc


def new_netns(prefix):
    name = "%s-%d-%s" % (prefix, os.getpid(), uuid.uuid4().hex[:6])
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])
    return name


def netns_fixture(prefix):
    """A fixture ``netns``: ``netns.first`` is a fresh namespace, ``netns()`` makes another;
    all are deleted after the test."""
    @pytest.fixture
    def netns():
        names = []

        def make():
            names.append(new_netns(prefix))
            return names[-1]
        make.first = make()
        yield make
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return netns


def playbook(ns, tmp_path, tasks, check=False, diff=True, extra_vars=None, name="play"):
    """Run a tiny playbook on localhost (connection local) inside the namespace; return the
    JSON callback's document and the process."""
    book = [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]
    path = tmp_path / ("%s-%s.yml" % (name, uuid.uuid4().hex[:6]))
    path.write_text(json.dumps(book, indent=1))
    argv = ["ip", "netns", "exec", ns, ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % sys.executable, str(path)]
    if extra_vars:
        vpath = tmp_path / ("vars-%s.json" % uuid.uuid4().hex[:6])
        vpath.write_text(json.dumps(extra_vars))
        argv += ["-e", "@%s" % vpath]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    return run_ansible(argv)


def deploy_argv(ns, inventory, limit, extra_vars):
    """argv of the deploy playbook, example inventory ``inventory``, limited to ``limit``, run
    inside the namespace (connection local); ``extra_vars`` are "name=value" strings."""
    argv = ["ip", "netns", "exec", ns, ANSIBLE_PLAYBOOK, str(REPO / "playbooks" / "deploy_edge_firewalls.yml"),
            "-i", str(REPO / "inventories" / inventory),
            "-e", "ocs_deploy_limit=%s" % limit, "-e", "ansible_connection=local",
            "-e", "ansible_python_interpreter=%s" % sys.executable]
    for var in extra_vars:
        argv += ["-e", var]
    return argv


def run_ansible(argv):
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(REPO), check=False)
    try:
        doc = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        raise AssertionError("no JSON from ansible-playbook rc=%s\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    return doc, proc


def module_result(doc, play=-1, host="localhost", task_name=None):
    for task in reversed(doc["plays"][play]["tasks"]):
        if task_name is None or task["task"]["name"] == task_name:
            if host in task["hosts"]:
                return task["hosts"][host]
    raise AssertionError("no result for %s/%s" % (host, task_name))


# --------------------------------------------------------------------- packet-level probe

SERVER = r"""
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(8)
    while True:
        c, _ = s.accept(); c.sendall(b"ok"); c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)
    print(c.recv(2).decode())
except OSError as exc:
    print("blocked: %s" % exc)
"""


def connect(ns, host, port):
    """'ok' when a TCP connection from ns to host:port is answered, else 'blocked: ...'."""
    return run(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, host, str(port)]).stdout.strip()


def router_topology(netns):
    """client 10.10.1.10 -- ri<tag> router (forwarding) rp<tag> -- server 172.16.1.31.

    -> (router, client, server, tag); the router is ``netns.first``."""
    router, client, server = netns.first, netns(), netns()
    tag = uuid.uuid4().hex[:5]
    links = [("c" + tag, client, "10.10.1.10/24", "ri" + tag, "10.10.1.1/24"),
             ("s" + tag, server, "172.16.1.31/24", "rp" + tag, "172.16.1.1/24")]
    for end, ns, addr, rend, raddr in links:
        run(["ip", "link", "add", end, "netns", ns, "type", "veth", "peer", "name", rend, "netns", router])
        run(["ip", "-n", ns, "addr", "add", addr, "dev", end])
        run(["ip", "-n", ns, "link", "set", end, "up"])
        run(["ip", "-n", router, "addr", "add", raddr, "dev", rend])
        run(["ip", "-n", router, "link", "set", rend, "up"])
        run(["ip", "-n", ns, "route", "add", "default", "via", raddr.split("/", maxsplit=1)[0]])
    run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    return router, client, server, tag


def router_firewall(platform, tag):
    """The router's FIREWALL: one seed rule client -> server tcp/5061, management tcp/2222 from the client."""
    return {
        "platform": platform, "mode": "network",
        "interfaces": {"internal": "ri" + tag, "perimeter": "rp" + tag},
        "management": {"sources": ["10.10.1.10/32"], "ports": ["2222"]},
        "rules": [{"id": "central-t18-f5-out", "protocol": "tcp", "src": ["10.10.1.10"], "dst": ["172.16.1.31"],
                   "sport": None, "dport": ["5061"], "src_zone": "internal", "dst_zone": "perimeter",
                   "chain": "forward", "comment": "ocs central-t18-f5-out table 18 figure 5 access_edge SIP/MTLS"}],
    }


@contextlib.contextmanager
def servers(listeners):
    """Start a TCP server per (namespace, [ports]) that answers 'ok'; stopped on exit."""
    procs = []
    try:
        for ns, ports in listeners:
            p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER] + list(ports),
                                 stdout=subprocess.PIPE, text=True)
            procs.append(p)
            assert p.stdout.readline().strip() == "ready"
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def packet_probe(netns, platform, apply_firewall):
    """internal client 10.10.1.10 -> router (the firewall) -> perimeter server 172.16.1.31.

    ``apply_firewall(router, firewall)`` enforces the FIREWALL on the router and returns the
    module result. Checks: before, no filtering; after, only the seed's direction and port pass,
    and only the management network reaches the router's management port."""
    router, client, server, tag = router_topology(netns)
    with servers(((server, ["5061", "5062"]), (client, ["5061"]), (router, ["2222", "2223"]))):
        assert connect(client, "172.16.1.31", 5062) == "ok"                 # before: no filtering
        res = apply_firewall(router, router_firewall(platform, tag))
        assert res["changed"] is True
        assert connect(client, "172.16.1.31", 5061) == "ok"                 # the seed's direction and port
        assert connect(client, "172.16.1.31", 5062).startswith("blocked")  # another port: dropped
        assert connect(server, "10.10.1.10", 5061).startswith("blocked")   # the reverse direction: dropped
        assert connect(client, "10.10.1.1", 2222) == "ok"                   # management to the router itself
        assert connect(client, "10.10.1.1", 2223).startswith("blocked")    # anything else to the router
        assert connect(server, "172.16.1.1", 2222).startswith("blocked")   # not from the management net
