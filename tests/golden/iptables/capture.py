#!/usr/bin/env python3
"""Capture the real `iptables-save -t filter` outputs the unit tests parse (needs root).

    source .venv/bin/activate && python tests/golden/iptables/capture.py

For each hand-written input (inputs/<case>.json) it creates a fresh network namespace
(prefix ``ocsipt-cap-``), loads rules of other software (docker, fail2ban, an admin), applies
the rendered transaction and saves:

* <case>.live.save            the owned chains as applied, next to the foreign ones
* lab_network.legacy.save     the same with iptables-legacy (its save format)
* lab_network.drift.save      after drift made with the iptables CLI: a rule added by hand,
                              a port and an address changed, a rule deleted, the FORWARD jump
                              moved to the end, a duplicate INPUT jump
* lab_network.handtyped.save  the desired rules typed by hand in other but equivalent forms
                              (no /32, netmask with host bits, multiport for one port,
                              -m state instead of conntrack, icmp type by name)
"""
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / ".cache" / "collections"))

from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables as I  # noqa: E402

FOREIGN = """*filter
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
:f2b-sshd - [0:0]
-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd
-A INPUT -p tcp -m tcp --dport 25 -m comment --comment "admin: smtp" -j ACCEPT
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-USER -j RETURN
-A f2b-sshd -s 192.0.2.66/32 -j REJECT --reject-with icmp-port-unreachable
-A f2b-sshd -j RETURN
COMMIT
"""


def sh(ns, argv, data=None):
    p = subprocess.run(["ip", "netns", "exec", ns] + argv, input=data, capture_output=True, text=True, check=False)
    if p.returncode:
        raise SystemExit("%s: %s" % (argv, p.stderr))
    return p.stdout


def save(ns, tool="iptables-save"):
    return "".join(l + "\n" for l in sh(ns, [tool, "-t", "filter"]).splitlines() if not l.startswith("#"))


def fresh(legacy=False):
    ns = "ocsipt-cap-%s" % uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    restore = "iptables-legacy-restore" if legacy else "iptables-restore"
    sh(ns, [restore, "--noflush"], FOREIGN)
    return ns


def load(ns, desired, legacy=False):
    restore = "iptables-legacy-restore" if legacy else "iptables-restore"
    sh(ns, [restore, "--noflush"], I.render_transaction(desired, None))


def rule_no(ns, chain, needle):
    lines = [l for l in save(ns).splitlines() if l.startswith("-A %s " % chain)]
    return str([i for i, l in enumerate(lines, 1) if needle in l][0]), lines


def main():
    namespaces = []
    try:
        for path in sorted((HERE / "inputs").glob("*.json")):
            case = path.stem
            desired = I.desired_state(json.loads(path.read_text()), case)
            ns = fresh()
            namespaces.append(ns)
            load(ns, desired)
            (HERE / ("%s.live.save" % case)).write_text(save(ns))

        desired = I.desired_state(json.loads((HERE / "inputs" / "lab_network.json").read_text()), "lab_network")
        ns = fresh(legacy=True)
        namespaces.append(ns)
        load(ns, desired, legacy=True)
        (HERE / "lab_network.legacy.save").write_text(save(ns, "iptables-legacy-save"))

        ns = fresh()
        namespaces.append(ns)
        load(ns, desired)
        ipt = ["iptables"]
        sh(ns, ipt + ["-I", "OCS-EDGE-FWD", "3", "-s", "198.51.100.9", "-p", "tcp", "--dport", "23", "-j", "ACCEPT"])
        n, lines = rule_no(ns, "OCS-EDGE-FWD", "t18-f5-in")
        sh(ns, ipt + ["-R", "OCS-EDGE-FWD", n] + I.tokenize(lines[int(n) - 1].replace("--dport 5061", "--dport 5062"))[2:])
        n, lines = rule_no(ns, "OCS-EDGE-FWD", "-d 172.16.1.52/32 -i eth0 -o eth1 -p udp -m udp --dport 3478")
        sh(ns, ipt + ["-R", "OCS-EDGE-FWD", n] + I.tokenize(lines[int(n) - 1].replace("-d 172.16.1.52/32", "-d 172.16.1.53/32"))[2:])
        n, _ignored = rule_no(ns, "OCS-EDGE-FWD", "any TCP from the reverse proxy")
        sh(ns, ipt + ["-D", "OCS-EDGE-FWD", n])
        n, lines = rule_no(ns, "FORWARD", "-j OCS-EDGE-FWD")
        sh(ns, ipt + ["-D", "FORWARD", n])
        sh(ns, ipt + ["-A", "FORWARD"] + I.tokenize(lines[int(n) - 1])[2:])
        sh(ns, ipt + ["-A", "INPUT", "-j", "OCS-EDGE-IN"])
        (HERE / "lab_network.drift.save").write_text(save(ns))

        ns = fresh()
        namespaces.append(ns)
        sh(ns, ["iptables-restore", "--noflush"],
           "*filter\n:OCS-EDGE-IN - [0:0]\n:OCS-EDGE-FWD - [0:0]\n:OCS-EDGE-MGMT - [0:0]\nCOMMIT\n")
        for kind, chain in (("IN", "INPUT"), ("FWD", "FORWARD")):
            sh(ns, ipt + ["-I", chain, "1", "-m", "comment", "--comment", I.BASE_COMMENTS["jump"], "-j", "OCS-EDGE-" + kind])
        multiport_done = False
        for chain, rules in desired["chains"].items():
            for rule in rules:
                text = rule["text"].replace("/32 ", " ")
                text = text.replace("-m conntrack --ctstate RELATED,ESTABLISHED", "-m state --state ESTABLISHED,RELATED")
                text = text.replace("--icmp-type 8", "--icmp-type echo-request")
                text = text.replace("-s 10.10.0.0/16", "-s 10.10.7.9/255.255.0.0")
                if not multiport_done and "-m tcp --dport 5061 " in text:
                    text = text.replace("-m tcp --dport 5061 ", "-m multiport --dports 5061 ")
                    multiport_done = True
                sh(ns, ipt + ["-A", chain] + I.tokenize(text))
        sh(ns, ipt + ["-A", "INPUT", "-m", "comment", "--comment", I.BASE_COMMENTS["tail"], "-j", "OCS-EDGE-MGMT"])
        (HERE / "lab_network.handtyped.save").write_text(save(ns))
    finally:
        for ns in namespaces:
            subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root (network namespaces)")
    main()
