"""Linux firewalls under faults (issue #12, the Linux part of #13 and #11): the real modules and
roles, run by the real ansible-playbook against real nftables/iptables in fresh network
namespaces (prefix ``ocsflt-``), the way an operator's bad day goes: drift the module cannot
parse, other software's rules, NAT of the A/V Edge, hostile values, concurrent runs, a deploy
that would cut the SSH connection.

Needs root, ``ip``, ``nft``, ``iptables``; skipped with the reason otherwise.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from netns_harness import (connect, markers, module_result, netns_fixture, playbook, router_firewall,
                           router_topology, run, run_ansible, servers, ANSIBLE_PLAYBOOK)

pytestmark = markers("nftables and iptables", ("ip", "nft", "iptables", "iptables-save", "iptables-restore"))

netns = netns_fixture("ocsflt")


# ----------------------------------------------------------------------------- helpers

def nft(ns, *args, check=True):
    return run(["ip", "netns", "exec", ns, "nft"] + list(args), check=check)


def nft_file(ns, tmp_path, text):
    path = tmp_path / ("x-%s.nft" % uuid.uuid4().hex[:6])
    path.write_text(text)
    return nft(ns, "-f", str(path))


def ipt(ns, *args, check=True):
    return run(["ip", "netns", "exec", ns, "iptables"] + list(args), check=check)


def ipt_save(ns, table="filter"):
    out = run(["ip", "netns", "exec", ns, "iptables-save", "-t", table]).stdout
    return [l for l in out.splitlines() if not l.startswith("#")]


def fw(platform, tag="x0000", **kw):
    out = router_firewall(platform, tag)
    out.update(kw)
    return out


AV_RULE = {"id": "central-t20-f12-in", "server_role": "av_edge", "protocol": "udp", "src": None,
           "dst": ["203.0.113.40"], "sport": None, "dport": ["3478"], "src_zone": "internet",
           "dst_zone": "perimeter", "chain": "forward",
           "comment": "ocs central-t20-f12-in table 20 figure 12 av_edge STUN/UDP"}


def nft_args(firewall, tmp_path, **kw):
    args = {"firewall": firewall, "name": "fw-ext", "persist_path": str(tmp_path / "nft" / "ocs_edge.nft"),
            "persist_conf": str(tmp_path / "nftables.conf")}
    args.update(kw)
    return args


def ipt_args(firewall, tmp_path, **kw):
    args = {"firewall": firewall, "name": "fw-int", "persist_path": str(tmp_path / "iptables" / "rules.v4")}
    args.update(kw)
    return args


def run_module(ns, tmp_path, module, args, **kw):
    doc, proc = playbook(ns, tmp_path, [{"name": "m", "ocs.edge_firewall.%s" % module: args}], **kw)
    return module_result(doc), proc


def nft_run(ns, tmp_path, args, **kw):
    return run_module(ns, tmp_path, "nft_ruleset", args, **kw)[0]


def ipt_run(ns, tmp_path, args, **kw):
    return run_module(ns, tmp_path, "iptables_ruleset", args, **kw)[0]


# ------------------------------------------------- 1. drift the module could not parse

def test_named_set_rule_in_owned_table_is_drift_and_replaced(netns, tmp_path):
    ns = netns.first
    args = nft_args(fw("nftables"), tmp_path)
    assert nft_run(ns, tmp_path, args)["changed"] is True
    nft(ns, "add", "set", "inet", "ocs_edge", "allow", "{ type ipv4_addr; elements = { 10.202.1.100 }; }")
    nft(ns, "insert", "rule", "inet", "ocs_edge", "forward", "ip", "saddr", "@allow", "accept")

    res = nft_run(ns, tmp_path, args, check=True)
    assert not res.get("failed"), res.get("msg")
    assert res["changed"] is True
    assert any("@allow" in r and r.startswith("rule:forward: ") for r in res["removed"]), res["removed"]
    assert any(r.startswith("set:allow") and "10.202.1.100" in r for r in res["removed"]), res["removed"]
    assert "@allow" in res["diff"][0]["before"] and "set allow" in res["diff"][0]["before"]
    assert "@allow" in nft(ns, "list", "table", "inet", "ocs_edge").stdout      # check mode touched nothing

    res = nft_run(ns, tmp_path, args)
    assert res["changed"] is True and not res.get("failed"), res.get("msg")
    listing = nft(ns, "list", "table", "inet", "ocs_edge").stdout
    assert "@allow" not in listing and "set allow" not in listing
    assert nft_run(ns, tmp_path, args)["changed"] is False


def test_dormant_table_and_unmodelled_objects_are_drift_and_replaced(netns, tmp_path):
    ns = netns.first
    args = nft_args(fw("nftables"), tmp_path)
    nft_run(ns, tmp_path, args)
    nft(ns, "add", "table", "inet", "ocs_edge", "{ flags dormant; }")
    nft(ns, "add", "counter", "inet", "ocs_edge", "sneaky")
    nft(ns, "add", "map", "inet", "ocs_edge", "m", "{ type ipv4_addr : verdict; }")
    nft(ns, "add", "chain", "inet", "ocs_edge", "extra")
    assert "flags dormant" in nft(ns, "list", "table", "inet", "ocs_edge").stdout

    res = nft_run(ns, tmp_path, args, check=True)
    assert not res.get("failed"), res.get("msg")
    assert res["changed"] is True
    removed = "\n".join(res["removed"])
    for expected in ("counter:sneaky", "map:m", "chain:extra"):
        assert expected in removed, (expected, res["removed"])
    assert "table:inet ocs_edge" in res["updated"], res["updated"]       # its flags
    assert "table flags dormant" in res["diff"][0]["before"]

    res = nft_run(ns, tmp_path, args)
    assert res["changed"] is True and not res.get("failed"), res.get("msg")
    listing = nft(ns, "list", "table", "inet", "ocs_edge").stdout
    assert "dormant" not in listing and "sneaky" not in listing and "chain extra" not in listing
    assert nft_run(ns, tmp_path, args)["changed"] is False


def test_foreign_dormant_table_is_not_a_crash(netns, tmp_path):
    """nft 1.0.6 prints invalid JSON for any table with flags: a foreign dormant table must not
    break the run either (its chains are inactive, so it is not reported)."""
    ns = netns.first
    nft(ns, "add", "table", "ip", "parked", "{ flags dormant; }")
    nft(ns, "add", "chain", "ip", "parked", "parkfw", "{ type filter hook forward priority 0; policy drop; }")
    res = nft_run(ns, tmp_path, nft_args(fw("nftables"), tmp_path))
    assert res["changed"] is True and not res.get("failed"), res.get("msg")
    assert not res["foreign"]["drops"]


# ------------------------------------------- 4. other software's rules undo the policy

def test_iptables_nft_forward_policy_drop_is_reported_and_fails(netns, tmp_path):
    ns = netns.first
    args = nft_args(fw("nftables"), tmp_path)
    assert nft_run(ns, tmp_path, args)["changed"] is True
    ipt(ns, "-P", "FORWARD", "DROP")          # what dockerd does

    res = nft_run(ns, tmp_path, args, check=True)
    assert res.get("failed") is True
    assert "table ip filter chain FORWARD" in res["msg"] and "policy drop" in res["msg"], res["msg"]
    assert "central-t18-f5-out" in res["msg"]
    res = nft_run(ns, tmp_path, args)
    assert res.get("failed") is True and "table ip filter chain FORWARD" in res["msg"]

    res = nft_run(ns, tmp_path, dict(args, foreign_check="warn"), check=True)
    assert not res.get("failed"), res.get("msg")
    assert any("table ip filter chain FORWARD" in d for d in res["foreign"]["drops"])
    assert any("table ip filter chain FORWARD" in w for w in res.get("warnings", []))


def test_foreign_rule_dropping_a_flow_is_named_and_accepting_chain_is_reported(netns, tmp_path):
    ns = netns.first
    nft_file(ns, tmp_path, """
table inet other {
    chain ofwd {
        type filter hook forward priority 10; policy accept;
        ip daddr 172.16.1.31 tcp dport 5061 drop comment "blocks the seed"
    }
    chain inp {
        type filter hook input priority 10; policy accept;
        ip saddr 192.0.2.0/24 drop
    }
}
""")
    res = nft_run(ns, tmp_path, nft_args(fw("nftables"), tmp_path), check=True)
    assert res.get("failed") is True
    assert 'table inet other chain ofwd' in res["msg"] and "blocks the seed" in res["msg"], res["msg"]
    assert "chain inp" not in res["msg"]           # does not touch the management flow (10.10.1.10/32)


def test_fail2ban_like_set_is_a_warning_not_a_failure(netns, tmp_path):
    ns = netns.first
    nft_file(ns, tmp_path, """
table inet f2b {
    set banned { type ipv4_addr; elements = { 192.0.2.66 } }
    chain input {
        type filter hook input priority -1; policy accept;
        ip saddr @banned drop
    }
}
""")
    res = nft_run(ns, tmp_path, nft_args(fw("nftables"), tmp_path))
    assert res["changed"] is True and not res.get("failed"), res.get("msg")
    assert any("inet f2b" in m and "may drop" in m for m in res["foreign"]["may_drop"]), res["foreign"]


# ------------------------------------------------------------- 6. NAT of the A/V Edge

def test_masquerade_of_av_edge_address_stops_the_deploy(netns, tmp_path):
    ns = netns.first
    firewall = fw("nftables", rules=[AV_RULE])
    nft_file(ns, tmp_path, """
table ip natted {
    chain post {
        type nat hook postrouting priority 100; policy accept;
        ip saddr 203.0.113.32/28 masquerade comment "hides the AV edge"
    }
}
""")
    res = nft_run(ns, tmp_path, nft_args(firewall, tmp_path), check=True)
    assert res.get("failed") is True
    assert "table ip natted chain post" in res["msg"] and "hides the AV edge" in res["msg"], res["msg"]
    assert "203.0.113.40" in res["msg"]
    res = nft_run(ns, tmp_path, nft_args(firewall, tmp_path))
    assert res.get("failed") is True
    assert nft(ns, "list", "tables").stdout.count("ocs_edge") == 0        # nothing applied
    res = nft_run(ns, tmp_path, nft_args(firewall, tmp_path, nat_check="warn"))
    assert not res.get("failed") and res["changed"] is True
    assert any("hides the AV edge" in n for n in res["nat"])


def test_masquerade_not_matching_av_edge_is_ignored(netns, tmp_path):
    ns = netns.first
    nft_file(ns, tmp_path, """
table ip natted {
    chain post {
        type nat hook postrouting priority 100; policy accept;
        ip saddr 10.0.0.0/8 masquerade
    }
}
""")
    res = nft_run(ns, tmp_path, nft_args(fw("nftables", rules=[AV_RULE]), tmp_path))
    assert not res.get("failed"), res.get("msg")
    assert res["nat"] == []


def test_iptables_nat_of_av_edge_is_detected(netns, tmp_path):
    ns = netns.first
    ipt(ns, "-t", "nat", "-A", "POSTROUTING", "-s", "203.0.113.40", "-j", "SNAT", "--to-source", "198.51.100.1")
    ipt(ns, "-t", "nat", "-A", "POSTROUTING", "-s", "10.0.0.0/8", "-j", "MASQUERADE")
    res = ipt_run(ns, tmp_path, ipt_args(fw("iptables", rules=[AV_RULE]), tmp_path), check=True)
    assert res.get("failed") is True
    assert "table nat chain POSTROUTING" in res["msg"] and "SNAT" in res["msg"], res["msg"]
    assert "MASQUERADE" not in res["msg"]
    res = ipt_run(ns, tmp_path, ipt_args(fw("iptables", rules=[AV_RULE]), tmp_path, nat_check="warn"))
    assert not res.get("failed") and res["changed"] is True


# ------------------------------------------------------------- 7. hostile values

def test_name_with_newline_cannot_inject_into_the_script(netns, tmp_path):
    ns = netns.first
    nft(ns, "add", "table", "ip", "keepme")
    res = nft_run(ns, tmp_path, nft_args(fw("nftables"), tmp_path, name="fw\nflush ruleset\n"))
    assert res["changed"] is True and not res.get("failed"), res.get("msg")
    assert "table ip keepme" in nft(ns, "list", "tables").stdout
    assert "\nflush ruleset" not in res["script"] and "fw\\nflush ruleset" in res["script"]


@pytest.mark.parametrize("bad", ['/x"\ninclude "/etc/shadow', "/a\nflush ruleset", "/a\\b", None])
def test_persist_paths_with_quote_or_newline_are_refused(netns, tmp_path, bad):
    ns = netns.first
    bad = "relative/path" if bad is None else str(tmp_path) + bad
    for var in ("persist_path", "persist_conf"):
        res = nft_run(ns, tmp_path, nft_args(fw("nftables"), tmp_path, **{var: bad}))
        assert res.get("failed") is True and var in res["msg"], res
    assert "ocs_edge" not in nft(ns, "list", "tables").stdout
    res = ipt_run(ns, tmp_path, ipt_args(fw("iptables"), tmp_path, persist_path=bad))
    assert res.get("failed") is True and "persist_path" in res["msg"]


@pytest.mark.parametrize("char", ["\r", "\v", "\f", "\x1c", "\x85", "\u2028", "\x00", "\t"])
def test_comment_characters_iptables_save_cannot_round_trip_are_refused(netns, tmp_path, char):
    ns = netns.first
    rule = dict(router_firewall("iptables", "x0000")["rules"][0], comment="ocs t18 f5%sevil" % char)
    res = ipt_run(ns, tmp_path, ipt_args(fw("iptables", rules=[rule]), tmp_path))
    assert res.get("failed") is True
    assert "comment" in res["msg"] and "rules[0]" in res["msg"], res["msg"]
    assert "still in force" not in res["msg"] or "nothing was changed" in res["msg"]
    assert not any("OCS-EDGE" in l for l in ipt_save(ns))       # refused before anything was applied
    res = nft_run(ns, tmp_path, nft_args(fw("nftables", rules=[rule]), tmp_path))
    assert res.get("failed") is True and "comment" in res["msg"]


# ------------------------------------------------------- 5. truth, temp files, conntrack

def test_no_temporary_script_files_are_left_and_stale_ones_are_cleaned(netns, tmp_path):
    ns = netns.first
    args = nft_args(fw("nftables"), tmp_path)
    nft_run(ns, tmp_path, args)
    # what a killed run of an older version / a run killed inside write_atomic leaves behind
    stale = [Path("/tmp/ocs_edge.killed%s.nft" % uuid.uuid4().hex[:6]),
             tmp_path / "nft" / (".ocs_edge.%s" % uuid.uuid4().hex[:6])]
    for path in stale:
        path.write_text("flush ruleset\n")
    before = set(glob.glob("/tmp/ocs_edge.*"))
    nft(ns, "add", "rule", "inet", "ocs_edge", "forward", "accept")
    res = nft_run(ns, tmp_path, args)
    assert res["changed"] is True
    assert not any(p.exists() for p in stale)
    assert set(glob.glob("/tmp/ocs_edge.*")) - before == set()


def test_failure_after_commit_says_the_new_rules_are_in_force(netns, tmp_path):
    ns = netns.first
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory must be")
    res = nft_run(ns, tmp_path, nft_args(fw("nftables"), tmp_path, persist_path=str(blocker / "ocs_edge.nft")))
    assert res.get("failed") is True
    assert "IS IN FORCE" in res["msg"] and "still in force" not in res["msg"], res["msg"]
    assert "ocs_edge" in nft(ns, "list", "tables").stdout
    res = ipt_run(ns, tmp_path, ipt_args(fw("iptables"), tmp_path, persist_path=str(blocker / "rules.v4")))
    assert res.get("failed") is True
    assert "IS IN FORCE" in res["msg"] and "still in force" not in res["msg"], res["msg"]
    assert any("OCS-EDGE-FWD" in l for l in ipt_save(ns))


# --------------------------------------------------------------- 4. concurrency

def test_two_concurrent_iptables_runs_leave_one_jump_per_chain(netns, tmp_path):
    ns = netns.first
    args = ipt_args(fw("iptables"), tmp_path)
    results = []

    def one():
        results.append(ipt_run(ns, tmp_path, args))
    threads = [threading.Thread(target=one) for _ignored in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not r.get("failed") for r in results), [r.get("msg") for r in results]
    lines = ipt_save(ns)
    assert len([l for l in lines if l.startswith("-A INPUT") and "OCS-EDGE-IN" in l]) == 1, lines
    assert len([l for l in lines if l.startswith("-A FORWARD") and "OCS-EDGE-FWD" in l]) == 1, lines
    assert sorted(r["changed"] for r in results) == [False, True]


def test_a_held_lock_makes_the_run_wait_then_fail_cleanly(netns, tmp_path):
    import fcntl
    from ansible_collections.ocs.edge_firewall.plugins.module_utils import lock
    ns = netns.first
    with open(lock.default_path(), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        started = time.time()
        res = nft_run(ns, tmp_path, nft_args(fw("nftables"), tmp_path, lock_timeout=2))
        waited = time.time() - started
    assert res.get("failed") is True and "another ocs.edge_firewall run holds" in res["msg"], res
    assert waited >= 2
    assert "ocs_edge" not in nft(ns, "list", "tables").stdout
    res = nft_run(ns, tmp_path, nft_args(fw("nftables"), tmp_path, lock_timeout=2))
    assert res["changed"] is True and not res.get("failed")


# ------------------------------------------------------------------ 5. conntrack

def _entries(ns, dport):
    out = run(["ip", "netns", "exec", ns, "conntrack", "-L", "-p", "tcp", "--dport", str(dport)], check=False).stdout
    return [l for l in out.splitlines() if "dport=%d" % dport in l]


@pytest.mark.skipif(shutil.which("conntrack") is None, reason="needs conntrack")
@pytest.mark.parametrize("platform", ["nftables", "iptables"])
def test_correction_deletes_conntrack_entries_of_flows_no_longer_allowed(netns, tmp_path, platform):
    router, client, server, tag = router_topology(netns)
    firewall = router_firewall(platform, tag)
    module = "nft_ruleset" if platform == "nftables" else "iptables_ruleset"
    args = (nft_args if platform == "nftables" else ipt_args)(firewall, tmp_path)
    with servers(((server, ["5061", "5062"]),)):
        assert run_module(router, tmp_path, module, args)[0]["changed"] is True
        if platform == "nftables":
            nft(router, "insert", "rule", "inet", "ocs_edge", "forward", "ip", "daddr", "172.16.1.31",
                "tcp", "dport", "5062", "accept")
        else:
            ipt(router, "-I", "OCS-EDGE-FWD", "3", "-d", "172.16.1.31", "-p", "tcp", "--dport", "5062", "-j", "ACCEPT")
        assert connect(client, "172.16.1.31", 5062) == "ok"        # the rogue allow works
        assert connect(client, "172.16.1.31", 5061) == "ok"
        assert _entries(router, 5062) and _entries(router, 5061)

        res = run_module(router, tmp_path, module, args, check=True)[0]
        assert any(":5062" in f for f in res["conntrack_deleted"]), res
        assert _entries(router, 5062)                              # check mode deletes nothing

        res = run_module(router, tmp_path, module, dict(args, conntrack_flush=False))[0]
        assert res["changed"] is True and "conntrack_deleted" not in res
        assert _entries(router, 5062)                              # kept on request

        if platform == "nftables":
            nft(router, "insert", "rule", "inet", "ocs_edge", "forward", "ip", "daddr", "172.16.1.31",
                "tcp", "dport", "5062", "accept")
        else:
            ipt(router, "-I", "OCS-EDGE-FWD", "3", "-d", "172.16.1.31", "-p", "tcp", "--dport", "5062", "-j", "ACCEPT")
        res = run_module(router, tmp_path, module, args)[0]
        assert res["changed"] is True and any(":5062" in f for f in res["conntrack_deleted"]), res
        assert not any(":5061" in f for f in res["conntrack_deleted"])
        assert not _entries(router, 5062)
        assert _entries(router, 5061)                              # still allowed: kept
        assert connect(client, "172.16.1.31", 5062).startswith("blocked")


# ------------------------------------------------------------- 2. lockout guard (real sshd)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _ssh_lab(netns, tmp_path):
    """ctl (10.77.<n>.2) -- fw (10.77.<n>.1, sshd on port 2222): -> (ctl, fw, inventory path)."""
    fwns, ctl = netns.first, netns()
    tag = uuid.uuid4().hex[:5]
    net = "10.77.%d" % (int(tag, 16) % 250)
    run(["ip", "link", "add", "c" + tag, "netns", ctl, "type", "veth", "peer", "name", "f" + tag, "netns", fwns])
    run(["ip", "-n", ctl, "addr", "add", net + ".2/24", "dev", "c" + tag])
    run(["ip", "-n", fwns, "addr", "add", net + ".1/24", "dev", "f" + tag])
    run(["ip", "-n", ctl, "link", "set", "c" + tag, "up"])
    run(["ip", "-n", fwns, "link", "set", "f" + tag, "up"])
    key = tmp_path / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hostkey")])
    auth = tmp_path / "authorized_keys"
    auth.write_text((tmp_path / "id_ed25519.pub").read_text())
    os.chmod(auth, 0o600)
    cfg = tmp_path / "sshd_config"
    cfg.write_text("Port 2222\nListenAddress %s.1\nHostKey %s\nPidFile %s\nAuthorizedKeysFile %s\n"
                   "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                   "UsePAM no\nStrictModes no\nAcceptEnv LANG\n"
                   % (net, tmp_path / "hostkey", tmp_path / "sshd.pid", auth))
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen(["ip", "netns", "exec", fwns, SSHD, "-D", "-e", "-f", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    inv = tmp_path / "hosts.yml"
    inv.write_text(json.dumps({"all": {"hosts": {"fw": {
        "ansible_host": net + ".1", "ansible_port": 2222, "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key), "ansible_python_interpreter": sys.executable,
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                   "-o ControlMaster=no -o ControlPath=none"}}}}))
    for _ignored in range(50):
        if run(["ip", "netns", "exec", fwns, "ss", "-ltn"], check=False).stdout.count(":2222"):
            break
        time.sleep(0.1)
    return ctl, fwns, inv, net, proc


def _role_over_ssh(ctl, tmp_path, inv, firewall, **extra):
    book = [{"hosts": "fw", "gather_facts": False, "roles": [{"role": "ocs.edge_firewall.nftables"}]}]
    path = tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:6])
    path.write_text(json.dumps(book))
    evars = dict({"ocs_firewall": firewall, "ocs_firewall_name": "fw-ext",
                  "ocs_nftables_persist_path": str(tmp_path / "p" / "ocs_edge.nft"),
                  "ocs_nftables_persist_conf": str(tmp_path / "nftables.conf"),
                  "ocs_nftables_boot_loader": False}, **extra)
    vpath = tmp_path / ("vars-%s.json" % uuid.uuid4().hex[:6])
    vpath.write_text(json.dumps(evars))
    doc, proc = run_ansible(["ip", "netns", "exec", ctl, ANSIBLE_PLAYBOOK, "-i", str(inv), str(path),
                             "-e", "@%s" % vpath])
    return doc, proc


@pytest.mark.skipif(not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None, reason="needs openssh-server")
def test_deploy_that_would_cut_the_ssh_connection_is_refused(netns, tmp_path):
    ctl, fwns, inv, net, sshd = _ssh_lab(netns, tmp_path)
    try:
        cut = fw("nftables", management={"sources": ["192.0.2.0/24"], "ports": ["2222"]})
        doc, proc = _role_over_ssh(ctl, tmp_path, inv, cut)
        assert proc.returncode != 0
        msg = json.dumps(doc)
        assert "%s.2" % net in msg and "2222" in msg and "ocs_management_networks" in msg, msg[-3000:]
        assert "ocs_allow_management_lockout" in msg
        assert "ocs_edge" not in nft(fwns, "list", "tables").stdout            # nothing applied

        wrong_port = fw("nftables", management={"sources": [net + ".0/24"], "ports": ["22"]})
        doc, proc = _role_over_ssh(ctl, tmp_path, inv, wrong_port)
        msg = json.dumps(doc)
        assert proc.returncode != 0 and "TCP port 2222" in msg and "ocs_management_ports" in msg

        good = fw("nftables", management={"sources": [net + ".0/24"], "ports": ["2222"]})
        doc, proc = _role_over_ssh(ctl, tmp_path, inv, good)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "ocs_edge" in nft(fwns, "list", "tables").stdout
        doc, proc = _role_over_ssh(ctl, tmp_path, inv, good)                   # SSH still reaches it
        assert proc.returncode == 0

        doc, proc = _role_over_ssh(ctl, tmp_path, inv, cut, ocs_allow_management_lockout=True)
        assert proc.returncode == 0, proc.stdout[-3000:]                       # applied on request
        assert "192.0.2.0/24" in nft(fwns, "list", "table", "inet", "ocs_edge").stdout
        doc, proc = _role_over_ssh(ctl, tmp_path, inv, good)                   # and now it is locked out
        assert proc.returncode != 0 and '"unreachable": true' in json.dumps(doc).lower(), proc.stdout[-2000:]
    finally:
        sshd.kill()
        sshd.wait()


def test_management_port_defaults_to_ansible_port():
    from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
    from inventory_loader import example
    inventory = example("single_site")
    inventory["fw-int"]["ansible_port"] = 2222
    firewalls = build_policy(inventory)["firewalls"]
    assert firewalls["fw-int"]["management"]["ports"] == ["2222"]
    inventory["fw-int"]["ocs_management_ports"] = [22, 2222]
    assert build_policy(inventory)["firewalls"]["fw-int"]["management"]["ports"] == ["22", "2222"]


# ---------------------------------------------------------------- 3. boot loader

def test_role_fails_clearly_where_the_boot_loader_cannot_be_enabled(netns, tmp_path):
    """This machine has no init system (no systemd): enabling nftables.service cannot work, so
    the role stops before the rule set is touched and names the opt-out."""
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd is running here: the role would really enable nftables.service")
    ns = netns.first
    evars = {"ocs_firewall": fw("nftables"), "ocs_firewall_name": "fw-ext",
             "ocs_nftables_persist_path": str(tmp_path / "p" / "ocs_edge.nft"),
             "ocs_nftables_persist_conf": str(tmp_path / "nftables.conf")}
    doc, proc = playbook(ns, tmp_path, [{"name": "role", "ansible.builtin.include_role": {
        "name": "ocs.edge_firewall.nftables"}}], extra_vars=evars)
    assert proc.returncode != 0
    msg = json.dumps(doc)
    assert "at boot" in msg and "ocs_nftables_boot_loader: false" in msg, msg[-3000:]
    assert "ocs_edge" not in nft(ns, "list", "tables").stdout
    evars["ocs_nftables_boot_loader"] = False
    doc, proc = playbook(ns, tmp_path, [{"name": "role", "ansible.builtin.include_role": {
        "name": "ocs.edge_firewall.nftables"}}], extra_vars=evars)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "ocs_edge" in nft(ns, "list", "tables").stdout


# -------------------------------------------- 4. iptables: management vs fail2ban's bans

F2B = """*filter
:f2b-sshd - [0:0]
-I INPUT 1 -p tcp -m multiport --dports 2222 -j f2b-sshd
-A f2b-sshd -s 10.10.1.10/32 -j REJECT --reject-with icmp-port-unreachable
-A f2b-sshd -j RETURN
COMMIT
"""


@pytest.mark.parametrize("input_policy", ["ACCEPT", "DROP"])
def test_fail2ban_ban_of_a_management_address_still_works(netns, tmp_path, input_policy):
    """fail2ban's jump sits in INPUT (it inserts at 1; the collection's jump goes above it on the
    next run). The management sources must still be subject to its bans, and reach the firewall
    when not banned, whatever INPUT's policy."""
    router, client, server, tag = router_topology(netns)
    ipt(router, "-P", "INPUT", input_policy)
    firewall = router_firewall("iptables", tag)           # management 10.10.1.10/32 -> tcp/2222
    with servers(((router, ["2222"]),)):
        assert ipt_run(router, tmp_path, ipt_args(firewall, tmp_path))["changed"] is True
        assert connect(client, "10.10.1.1", 2222) == "ok"               # management reaches it
        run(["ip", "netns", "exec", router, "iptables-restore", "--noflush"], input=F2B)   # a ban
        assert [l for l in ipt_save(router) if l.startswith("-A INPUT")][0].endswith("-j f2b-sshd")  # fail2ban inserts at 1
        assert connect(client, "10.10.1.1", 2222).startswith("blocked")   # the ban works
        res = ipt_run(router, tmp_path, ipt_args(firewall, tmp_path))
        assert res["changed"] is True                                       # our jump back to 1
        inp = [l for l in ipt_save(router) if l.startswith("-A INPUT")]
        assert inp[0].endswith("-j OCS-EDGE-IN") and inp[-1].endswith("-j OCS-EDGE-MGMT"), inp
        assert connect(client, "10.10.1.1", 2222).startswith("blocked")   # still banned
        ipt(router, "-D", "f2b-sshd", "1")                                  # unban
        assert connect(client, "10.10.1.1", 2222) == "ok"
        assert connect(server, "172.16.1.1", 2222).startswith("blocked")   # not management: dropped
        assert ipt_run(router, tmp_path, ipt_args(firewall, tmp_path))["changed"] is False


def test_no_nat_of_the_policy_names_the_av_edge_addresses(netns, tmp_path):
    """The policy's no_nat (entries with role av_edge) is what is checked when it is there."""
    ns = netns.first
    nft_file(ns, tmp_path, """
table ip natted {
    chain post {
        type nat hook postrouting priority 100; policy accept;
        ip saddr 198.51.100.7 masquerade comment "hides the listed address"
    }
}
""")
    no_nat = [{"address": "198.51.100.7", "roles": ["av_edge"]}, {"address": "203.0.113.40", "roles": ["reverse_proxy"]}]
    res = nft_run(ns, tmp_path, nft_args(fw("nftables", rules=[AV_RULE], no_nat=no_nat), tmp_path), check=True)
    assert res.get("failed") is True and "hides the listed address" in res["msg"], res
    res = nft_run(ns, tmp_path, nft_args(fw("nftables", rules=[AV_RULE], no_nat=no_nat[1:]), tmp_path), check=True)
    assert not res.get("failed") and res["nat"] == []
