"""iptables backend end to end: the real iptables_ruleset module, run by the real ansible-playbook,
against real iptables (the distribution's default, nft backend) inside a fresh network namespace
per test (prefix ``ocsipt-``).

Needs root, ``ip``, ``iptables-save`` and ``iptables-restore``; skipped with the reason otherwise.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables as I
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
from inventory_loader import example
from netns_harness import deploy_argv, module_result, packet_probe, playbook, run, run_ansible
from netns_harness import markers, netns_fixture

OWNED = ("OCS-EDGE-IN", "OCS-EDGE-FWD", "OCS-EDGE-OUT", "OCS-EDGE-MGMT")

pytestmark = markers("iptables", ("ip", "iptables", "iptables-save", "iptables-restore"))

netns = netns_fixture("ocsipt")


# ----------------------------------------------------------------------------- helpers

def ipt(ns, *args, check=True):
    return run(["ip", "netns", "exec", ns, "iptables"] + list(args), check=check)


def save(ns):
    """iptables-save -t filter without the timestamp comment lines."""
    out = run(["ip", "netns", "exec", ns, "iptables-save", "-t", "filter"]).stdout
    return [l for l in out.splitlines() if not l.startswith("#")]


def _owned_line(line):
    if line.startswith(":"):
        return line[1:].split()[0] in OWNED
    return line.startswith("-A ") and (line.split()[1] in OWNED or any(
        re.search(r"-[jg] %s\b" % c, line) for c in OWNED))


def owned(ns):
    return [l for l in save(ns) if _owned_line(l)]


def others(ns):
    """Every filter line that is not an owned chain, owned rule or jump to one, in order."""
    return [l for l in save(ns) if not _owned_line(l)]


def live_state(ns):
    return I.parse_save("\n".join(save(ns)))


def chain_rules(ns, chain):
    return [l for l in save(ns) if l.startswith("-A %s " % chain)]


def policy_firewall(topology, host):
    return build_policy(example(topology))["firewalls"][host]


@pytest.fixture
def fw_int():
    """single_site's internal firewall (platform iptables in the example), with interfaces added."""
    fw = policy_firewall("single_site", "fw-int")
    assert fw["platform"] == "iptables"
    return dict(fw, interfaces={"perimeter": "eth1", "internal": "eth0"})


def args_for(firewall, tmp_path, **kw):
    args = {"firewall": firewall, "name": "fw-int", "persist_path": str(tmp_path / "iptables" / "rules.v4")}
    args.update(kw)
    return args


def apply(ns, tmp_path, args, **kw):
    doc, proc = playbook(ns, tmp_path, [{"name": "ipt", "ocs.edge_firewall.iptables_ruleset": args}], **kw)
    return module_result(doc), proc


# What other software puts into the filter table: docker's chains and FORWARD jumps, fail2ban's
# chain and INPUT jump, an admin's rules in INPUT/FORWARD/OUTPUT. Must stay byte-identical.
OTHERS = """*filter
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
:f2b-sshd - [0:0]
-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd
-A INPUT -p tcp -m tcp --dport 25 -m comment --comment "admin: smtp" -j ACCEPT
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A OUTPUT -d 192.0.2.1/32 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-USER -j RETURN
-A f2b-sshd -s 192.0.2.66/32 -j REJECT --reject-with icmp-port-unreachable
-A f2b-sshd -j RETURN
COMMIT
"""


def add_others(ns):
    run(["ip", "netns", "exec", ns, "iptables-restore", "--noflush"], input=OTHERS)
    lines = others(ns)
    assert "-A DOCKER-USER -j RETURN" in lines and ":f2b-sshd - [0:0]" in lines
    return lines


def check_jumps_first(ns, builtins=("INPUT", "FORWARD")):
    live = live_state(ns)
    for b in builtins:
        heads = [j for j in live["jumps"][b] if not j["text"].endswith("-j OCS-EDGE-MGMT")]
        assert len(heads) == 1, live["jumps"]
        assert heads[0]["pos"] == 1
        assert chain_rules(ns, b)[0].endswith("-j %s" % ("OCS-EDGE-IN" if b == "INPUT" else
                                                         "OCS-EDGE-FWD" if b == "FORWARD" else "OCS-EDGE-OUT"))
    # management is accepted by OCS-EDGE-MGMT, jumped to last from INPUT (after other software's bans)
    assert chain_rules(ns, "INPUT")[-1].endswith("-j OCS-EDGE-MGMT")


# ------------------------------------------------------------------------------- tests

def test_persist_keeps_the_rules_file_of_others_and_restores_at_boot(netns, tmp_path, fw_int):
    """iptables' own persistence and rendering: iptables-save prints what the module rendered,
    the rules file keeps another tool's tables and chains, and a boot-time restore gives the same
    owned chains with the jumps at position 1. (Apply, no-op, check mode, drift, invalid input,
    absent: tests/integration/test_backend_contract.py.)"""
    ns = netns.first
    add_others(ns)
    args = args_for(fw_int, tmp_path)
    persist = Path(args["persist_path"])
    persist.parent.mkdir()
    persist.write_text("# saved by netfilter-persistent\n*nat\n:PREROUTING ACCEPT [0:0]\n"
                       "-A PREROUTING -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 80\nCOMMIT\n"
                       "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:ADMIN - [0:0]\n"
                       "-A INPUT -j ADMIN\n-A ADMIN -s 198.51.100.0/24 -j ACCEPT\nCOMMIT\n")
    foreign_persist = persist.read_text()

    res, proc = apply(ns, tmp_path, args)
    assert res["changed"] is True, proc.stdout[-3000:]
    rendered = [l for l in res["rules"].splitlines() if l not in ("*filter", "COMMIT")]
    assert sorted(owned(ns)) == sorted(rendered)
    assert [l for l in owned(ns) if not l.startswith("-A INPUT")] == [l for l in rendered if not l.startswith("-A INPUT")]
    assert chain_rules(ns, "OCS-EDGE-FWD")[-1].endswith("-j DROP")
    check_jumps_first(ns)
    assert all("--comment" in l for l in owned(ns) if l.startswith("-A "))

    text = persist.read_text()
    assert I.strip_persist(text) == foreign_persist
    persisted_owned = [l for l in text.splitlines() if _owned_line(l)]
    assert sorted(persisted_owned) == sorted(l for l in res["rules"].splitlines() if l not in ("*filter", "COMMIT"))
    fresh = netns()
    run(["ip", "netns", "exec", fresh, "iptables-restore"], input=text)
    assert owned(fresh) == owned(ns)
    check_jumps_first(fresh)
    assert "-A ADMIN -s 198.51.100.0/24 -j ACCEPT" in save(fresh)
    mtime = persist.stat().st_mtime_ns
    apply(ns, tmp_path, args)
    assert persist.stat().st_mtime_ns == mtime and persist.read_text() == text


def test_check_mode_reports_the_transaction(netns, tmp_path, fw_int):
    ns = netns.first
    res, _ignored = apply(ns, tmp_path, args_for(fw_int, tmp_path), check=True)
    assert res["transaction"].startswith("*filter\n") and res["transaction"].endswith("COMMIT\n")
    assert owned(ns) == []


def test_ipv6_address_is_a_clear_error_not_a_silent_drop(netns, tmp_path, fw_int):
    ns = netns.first
    bad = json.loads(json.dumps(fw_int))
    bad["rules"][0]["src"] = ["172.16.1.5", "2001:db8:1::5"]
    res, proc = apply(ns, tmp_path, args_for(bad, tmp_path))
    assert res.get("failed") is True
    assert "rules[0] (%s).src[1]: 2001:db8:1::5 is an IPv6 address; the iptables backend enforces IPv4 only" \
        % bad["rules"][0]["id"] in res["msg"]
    assert owned(ns) == []


def _netns_runner(ns):
    def run_in(argv, data=None):
        p = subprocess.run(["ip", "netns", "exec", ns] + argv, input=data, capture_output=True, text=True, check=False)
        return p.returncode, p.stdout, p.stderr
    return run_in


def test_iptables_restore_rejection_is_atomic_and_explained(netns, tmp_path, fw_int):
    """What iptables-restore itself refuses (past the module's own checks): --test reports it with
    the line, and even a real restore of the same transaction changes nothing (one COMMIT)."""
    ns = netns.first
    add_others(ns)
    args = args_for(fw_int, tmp_path)
    apply(ns, tmp_path, args)
    live = save(ns)
    runner = I.Ipt(_netns_runner(ns))
    desired = I.desired_state(fw_int, "fw-int")
    state, _raw = runner.read()
    script = I.render_transaction(desired, state)
    lines = script.splitlines()
    idx = [i for i, l in enumerate(lines) if "t14-f5-out" in l][0]
    lines[idx] = lines[idx].replace("--dport 5061", "--dport 70000")
    bad = "\n".join(lines) + "\n"
    with pytest.raises(I.IptError) as err:
        runner.check(bad)
    msg = str(err.value)
    assert "validation (iptables-restore --noflush --test)" in msg and "nothing was changed" in msg
    assert "line: %d" % (idx + 1) in msg, msg
    with pytest.raises(I.IptError):
        runner.apply(bad)
    assert save(ns) == live


BREAKING_RESTORE = """#!/bin/sh
# Test double: validation (--test) sees the real transaction; the real apply gets the same
# transaction with its FORWARD jump (the line before COMMIT, after the flushes, the jump
# deletions and every rule) pointing to a chain that does not exist, so the real
# iptables-restore fails at the end of the transaction.
case " $* " in
  *" --test "*) exec %(real)s "$@" ;;
esac
touch %(marker)s
sed -e 's/^\\(-I FORWARD 1 .*\\)-j OCS-EDGE-FWD$/\\1-j OCS-EDGE-NOSUCH/' | exec %(real)s "$@"
"""


def test_failed_apply_through_the_module_leaves_previous_rules(netns, tmp_path, fw_int):
    """iptables-restore fails on the last line of a real transaction (after the flushes, jump
    deletions and most rules): nothing of it is in force, the error says what failed, nothing is
    persisted, and the next normal run repairs the drift."""
    ns = netns.first
    foreign = add_others(ns)
    args = args_for(fw_int, tmp_path)
    apply(ns, tmp_path, args)
    persisted = Path(args["persist_path"]).read_text()
    ipt(ns, "-I", "OCS-EDGE-FWD", "1", "-p", "tcp", "--dport", "23", "-j", "ACCEPT")
    ipt(ns, "-D", "INPUT", "1")
    drifted = save(ns)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "iptables-restore"
    marker = tmp_path / "fake-restore-ran"
    fake.write_text(BREAKING_RESTORE % {"real": shutil.which("iptables-restore"), "marker": marker})
    fake.chmod(0o755)
    (bindir / "iptables-save").symlink_to(shutil.which("iptables-save"))
    env_path = "%s:%s" % (bindir, os.environ["PATH"])
    task = [{"name": "ipt", "ocs.edge_firewall.iptables_ruleset": args, "environment": {"PATH": env_path}}]
    doc, proc = playbook(ns, tmp_path, task)
    res = module_result(doc)
    assert marker.exists(), "the module did not run the test double"
    assert res.get("failed") is True and proc.returncode != 0, res
    assert "OCS-EDGE-NOSUCH" in res["msg"], res["msg"]
    assert "apply (iptables-restore --noflush): iptables-restore rejected the transaction" in res["msg"]
    assert "Error occurred at line" in res["msg"] and "previous rule set is still in force" in res["msg"]
    assert save(ns) == drifted, "a failed transaction changed the live rules"
    assert Path(args["persist_path"]).read_text() == persisted
    fixed, _ignored = apply(ns, tmp_path, args)
    assert fixed["changed"] is True and "jump:INPUT" in fixed["created"]
    assert others(ns) == foreign
    check_jumps_first(ns)


def test_host_mode_reverse_proxy(netns, tmp_path):
    ns = netns.first
    fw = dict(policy_firewall("consolidated", "rp1"), platform="iptables")
    assert fw["mode"] == "host"
    args = args_for(fw, tmp_path, name="rp1")
    res, _ignored = apply(ns, tmp_path, args)
    assert res["changed"] is True
    live = live_state(ns)
    assert set(live["chains"]) == {"OCS-EDGE-IN", "OCS-EDGE-OUT", "OCS-EDGE-MGMT"}
    check_jumps_first(ns, ("INPUT", "OUTPUT"))
    assert "FORWARD" not in live["jumps"]
    assert chain_rules(ns, "OCS-EDGE-IN")[-1].endswith("-j DROP")
    assert not chain_rules(ns, "OCS-EDGE-OUT")[-1].endswith("-j DROP"), "output policy accept: no final drop"
    assert any(l.startswith("-A OCS-EDGE-IN -s 10.99.0.0/24 -p tcp -m tcp --dport 22 ") for l in save(ns))
    assert any(l.startswith("-A OCS-EDGE-MGMT -s 10.99.0.0/24 -p tcp -m tcp --dport 22 ") for l in save(ns))
    text = "\n".join(save(ns))
    for rule in fw["rules"]:
        assert '--comment "%s"' % rule["comment"] in text
    res2, _ignored = apply(ns, tmp_path, args)
    assert res2["changed"] is False
    # switching the same host to network mode removes the now unused OUT chain and its jump
    net = dict(fw, mode="network", rules=[])
    res3, _ignored = apply(ns, tmp_path, args_for(net, tmp_path, name="rp1"))
    assert "chain:OCS-EDGE-OUT" in res3["removed"] and "jump:OUTPUT" in res3["removed"]
    assert set(live_state(ns)["chains"]) == {"OCS-EDGE-IN", "OCS-EDGE-FWD", "OCS-EDGE-MGMT"} and "OUTPUT" not in live_state(ns)["jumps"]


def test_role_one_module_call_check_and_diff(netns, tmp_path, fw_int):
    ns = netns.first
    tasks = [{"name": "role", "ansible.builtin.include_role": {"name": "ocs.edge_firewall.iptables"}}]
    extra = {"ocs_firewall": fw_int, "ocs_firewall_name": "fw-int",
             "ocs_iptables_persist_path": str(tmp_path / "d" / "rules.v4"),
             "ocs_iptables_boot_loader": False}     # not the distribution's file; no init on the test machine
    doc, proc = playbook(ns, tmp_path, tasks, check=True, extra_vars=extra)
    assert proc.returncode == 0, proc.stdout[-3000:]
    calls = [t for t in doc["plays"][0]["tasks"] if "Enforce the rule set in the owned chains" in t["task"]["name"]]
    assert len(calls) == 1, "one module call per firewall"
    assert calls[0]["hosts"]["localhost"]["changed"] is True
    assert owned(ns) == [], "check mode created chains"
    doc, proc = playbook(ns, tmp_path, tasks, extra_vars=extra)
    assert proc.returncode == 0 and doc["stats"]["localhost"]["changed"] >= 1
    assert len(chain_rules(ns, "OCS-EDGE-FWD")) > 3
    doc, proc = playbook(ns, tmp_path, tasks, extra_vars=extra)
    assert doc["stats"]["localhost"]["changed"] == 0
    # the role refuses a rule set meant for another platform
    doc, proc = playbook(ns, tmp_path, tasks, extra_vars=dict(extra, ocs_firewall=dict(fw_int, platform="nftables")))
    assert proc.returncode != 0 and "with platform iptables" in proc.stdout


def test_deploy_playbook_on_single_site_fw_int(netns, tmp_path):
    """The deploy playbook, example inventory single_site (fw-int: ocs_firewall_platform: iptables),
    limited to fw-int, run inside the namespace."""
    ns = netns.first
    before = add_others(ns)
    argv = deploy_argv(ns, "single_site", "fw-int", ["ocs_iptables_persist_path=%s" % (tmp_path / "rules.v4"),
                                                     "ocs_iptables_boot_loader=false"])
    doc, proc = run_ansible(argv)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert doc["stats"]["fw-int"]["changed"] >= 1
    fw = policy_firewall("single_site", "fw-int")
    text = "\n".join(chain_rules(ns, "OCS-EDGE-FWD"))
    assert all('--comment "%s"' % r["comment"] in text for r in fw["rules"])
    check_jumps_first(ns)
    assert others(ns) == before
    doc, proc = run_ansible(argv + ["--check", "--diff"])
    assert proc.returncode == 0 and doc["stats"]["fw-int"]["changed"] == 0


# --------------------------------------------------------------------- packet-level probe

def test_packets_through_router_namespace(netns, tmp_path):
    """internal client 10.10.1.10 -> router (the firewall, iptables) -> perimeter server 172.16.1.31."""
    packet_probe(netns, "iptables",
                 lambda router, firewall: apply(router, tmp_path, args_for(firewall, tmp_path, name="lab-router"))[0])
