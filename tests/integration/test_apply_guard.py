"""apply_guard on real nftables / iptables in fresh network namespaces (prefix ``ocsguard-``): the
firewall restores what it had before the apply after the timeout unless confirmed, and touches
nothing it does not own. The rollback program's iptables merge is also checked by itself."""
import json
import time


from ansible_collections.ocs.edge_firewall.plugins.module_utils import apply_guard as ag
from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
from inventory_loader import example
from netns_harness import markers, module_result, netns_fixture, playbook, run

pytestmark = markers("nftables", ("ip", "nft", "iptables-save", "iptables-restore"))

netns = netns_fixture("ocsguard")


def guard(ns, tmp_path, **args):
    args.setdefault("guard_dir", str(tmp_path / "guards"))
    args.setdefault("method", "process")
    doc, _proc = playbook(ns, tmp_path, [{"name": "guard", "ocs.edge_firewall.apply_guard": args}], diff=False)
    return module_result(doc)


def ruleset(ns, tmp_path, args, check=False):
    doc, _proc = playbook(ns, tmp_path, [{"name": "ipt", "ocs.edge_firewall.iptables_ruleset": args}], check=check)
    return module_result(doc)


# fail2ban: its chain, a ban, its jump in INPUT (the management jump must stay after it)
F2B = """*filter
:f2b-sshd - [0:0]
-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd
-A f2b-sshd -s 192.0.2.66/32 -j REJECT --reject-with icmp-port-unreachable
-A f2b-sshd -j RETURN
COMMIT
"""


def sh(ns, *argv, **kw):
    return run(["ip", "netns", "exec", ns] + list(argv), **kw)


def wait_state(path, state, seconds):
    for attempt in range(int(seconds * 10)):  # pylint: disable=unused-variable
        if (path / state).exists():
            return True
        time.sleep(0.1)
    return False


def test_nftables_rolls_back_table_and_files_unless_confirmed(netns, tmp_path):
    ns = netns.first
    sh(ns, "nft", "add table inet ocs_edge; add chain inet ocs_edge input { type filter hook input priority 0; }; "
       "add rule inet ocs_edge input tcp dport 22 accept comment \"before\"")
    sh(ns, "nft", "add table ip other; add chain ip other c; add rule ip other c tcp dport 23 accept")
    persisted = tmp_path / "ocs_edge.nft"
    persisted.write_text("before\n")
    before = sh(ns, "nft", "list", "table", "inet", "ocs_edge").stdout

    res = guard(ns, tmp_path, state="armed", timeout=5, files=[str(persisted), str(tmp_path / "absent.conf")])
    assert res["changed"] is True and res["guard_state"] == "armed" and res["method"] == "process", res
    # the "apply": the owned table changes, the persisted file is rewritten, a new file appears,
    # and someone else's table changes in the meantime
    sh(ns, "nft", "flush chain inet ocs_edge input; add rule inet ocs_edge input tcp dport 2222 accept")
    persisted.write_text("after\n")
    (tmp_path / "absent.conf").write_text("new\n")
    sh(ns, "nft", "add rule ip other c tcp dport 24 accept")

    assert wait_state(tmp_path / "guards" / "ocs_edge", "rolled_back", 15)
    assert sh(ns, "nft", "list", "table", "inet", "ocs_edge").stdout == before
    assert persisted.read_text() == "before\n" and not (tmp_path / "absent.conf").exists()
    assert "dport 24" in sh(ns, "nft", "list", "table", "ip", "other").stdout       # not ours: untouched
    res = guard(ns, tmp_path, state="status")
    assert res["guard_state"] == "rolled_back" and res["status"]["ok"] is True
    res = guard(ns, tmp_path, state="confirmed")
    assert res.get("failed") and "too late, the firewall rolled back" in res["msg"]


def test_confirmed_guard_does_not_roll_back(netns, tmp_path):
    ns = netns.first
    res = guard(ns, tmp_path, state="armed", timeout=20)         # no table before: rollback would delete it
    assert res["guard_state"] == "armed"
    deadline = res["deadline"]
    sh(ns, "nft", "add table inet ocs_edge")
    res = guard(ns, tmp_path, state="confirmed")
    assert res["changed"] is True and res["guard_state"] == "confirmed", json.dumps(res)[:3000]
    time.sleep(max(0, deadline - time.time()) + 2)
    assert not (tmp_path / "guards" / "ocs_edge" / "rolled_back").exists()
    assert sh(ns, "nft", "list", "table", "inet", "ocs_edge", check=False).returncode == 0
    assert guard(ns, tmp_path, state="status")["guard_state"] == "confirmed"


def test_check_mode_arms_nothing(netns, tmp_path):
    ns = netns.first
    doc, _proc = playbook(ns, tmp_path, [{"name": "guard", "ocs.edge_firewall.apply_guard": {
        "state": "armed", "timeout": 5, "guard_dir": str(tmp_path / "g"), "method": "process"}}], check=True)
    assert module_result(doc)["changed"] is False and not (tmp_path / "g" / "ocs_edge").exists()


def test_iptables_rolls_back_only_the_owned_chains(netns, tmp_path):
    ns = netns.first
    sh(ns, "iptables", "-N", "OCS-EDGE-IN")
    sh(ns, "iptables", "-A", "OCS-EDGE-IN", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    sh(ns, "iptables", "-I", "INPUT", "1", "-j", "OCS-EDGE-IN")
    sh(ns, "iptables", "-N", "DOCKER")
    sh(ns, "iptables", "-A", "INPUT", "-j", "DOCKER")
    before = sh(ns, "iptables", "-S").stdout

    res = guard(ns, tmp_path, state="armed", platform="iptables", timeout=5)
    assert res["guard_state"] == "armed", res
    sh(ns, "iptables", "-F", "OCS-EDGE-IN")
    sh(ns, "iptables", "-A", "OCS-EDGE-IN", "-p", "tcp", "--dport", "2222", "-j", "ACCEPT")
    sh(ns, "iptables", "-N", "OCS-EDGE-FWD")
    sh(ns, "iptables", "-I", "FORWARD", "1", "-j", "OCS-EDGE-FWD")
    sh(ns, "iptables", "-A", "DOCKER", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT")   # docker, meanwhile

    assert wait_state(tmp_path / "guards" / "ocs_edge", "rolled_back", 15)
    after = sh(ns, "iptables", "-S").stdout
    assert sorted(after.splitlines()) == sorted(before.splitlines() + ["-A DOCKER -p tcp -m tcp --dport 8080 -j ACCEPT"])
    assert after.index("-A INPUT -j OCS-EDGE-IN") < after.index("-A INPUT -j DOCKER")      # the jump first again


def test_iptables_rollback_keeps_the_management_chain_and_its_jump_last(netns, tmp_path):
    """The management accepts live in OCS-EDGE-MGMT, jumped to from the END of INPUT (after the
    bans of fail2ban & co.): the rollback restores that chain once and its jump last, not first."""
    ns = netns.first
    ipt = ["ip", "netns", "exec", ns, "iptables"]
    for argv in (["-N", "OCS-EDGE-IN"], ["-A", "OCS-EDGE-IN", "-p", "tcp", "--dport", "22", "-j", "RETURN"],
                 ["-N", "OCS-EDGE-MGMT"], ["-A", "OCS-EDGE-MGMT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"],
                 ["-N", "f2b-sshd"], ["-A", "f2b-sshd", "-s", "198.51.100.7/32", "-j", "REJECT"],
                 ["-I", "INPUT", "1", "-j", "OCS-EDGE-IN"], ["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "f2b-sshd"],
                 ["-A", "INPUT", "-j", "OCS-EDGE-MGMT"]):
        run(ipt + argv)
    before = sh(ns, "iptables", "-S").stdout

    res = guard(ns, tmp_path, state="armed", platform="iptables", timeout=5)
    assert res["guard_state"] == "armed", res
    # the "apply" (other management port), and fail2ban bans someone meanwhile
    run(ipt + ["-F", "OCS-EDGE-MGMT"])
    run(ipt + ["-A", "OCS-EDGE-MGMT", "-p", "tcp", "--dport", "2222", "-j", "ACCEPT"])
    run(ipt + ["-I", "f2b-sshd", "1", "-s", "203.0.113.9/32", "-j", "REJECT"])

    assert wait_state(tmp_path / "guards" / "ocs_edge", "rolled_back", 15)
    assert guard(ns, tmp_path, state="status")["status"]["ok"] is True
    after = sh(ns, "iptables", "-S").stdout.splitlines()
    ban = "-A f2b-sshd -s 203.0.113.9/32 -j REJECT --reject-with icmp-port-unreachable"
    assert sorted(after) == sorted(before.splitlines() + [ban])
    assert [l for l in after if l.startswith("-A INPUT ")] == [
        "-A INPUT -j OCS-EDGE-IN", "-A INPUT -p tcp -m tcp --dport 22 -j f2b-sshd", "-A INPUT -j OCS-EDGE-MGMT"]
    live = iptables.parse_save(sh(ns, "iptables-save", "-t", "filter").stdout)
    assert [j["last"] for j in live["jumps"]["INPUT"]] == [False, True]


def test_iptables_rollback_removes_a_management_chain_the_apply_added(netns, tmp_path):
    """Snapshot from before the management chain existed: the rollback deletes it and its jump."""
    ns = netns.first
    sh(ns, "iptables", "-N", "OCS-EDGE-IN")
    sh(ns, "iptables", "-I", "INPUT", "1", "-j", "OCS-EDGE-IN")
    before = sh(ns, "iptables", "-S").stdout
    assert guard(ns, tmp_path, state="armed", platform="iptables", timeout=5)["guard_state"] == "armed"
    sh(ns, "iptables", "-N", "OCS-EDGE-MGMT")
    sh(ns, "iptables", "-A", "OCS-EDGE-MGMT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    sh(ns, "iptables", "-A", "INPUT", "-j", "OCS-EDGE-MGMT")
    assert wait_state(tmp_path / "guards" / "ocs_edge", "rolled_back", 15)
    assert sh(ns, "iptables", "-S").stdout == before


def test_iptables_rollback_of_a_real_apply_reads_back_in_sync(netns, tmp_path):
    """The real iptables_ruleset applies fw-int next to fail2ban's jump in INPUT; armed, then the
    module's own transaction for another management network; after the rollback the module in
    check mode finds the first rule set again (OCS-EDGE-MGMT once, its jump last: no drift)."""
    ns = netns.first
    run(["ip", "netns", "exec", ns, "iptables-restore", "--noflush"], input=F2B)
    fw = dict(build_policy(example("single_site"))["firewalls"]["fw-int"],
              interfaces={"perimeter": "eth1", "internal": "eth0"})
    args = {"firewall": fw, "name": "fw-int", "persist_path": str(tmp_path / "rules.v4")}
    assert ruleset(ns, tmp_path, args)["changed"] is True
    before = sh(ns, "iptables", "-S").stdout
    assert guard(ns, tmp_path, state="armed", platform="iptables", timeout=5)["guard_state"] == "armed"
    other = dict(fw, management=dict(fw["management"], sources=["10.123.0.0/24"]))
    live = iptables.parse_save(sh(ns, "iptables-save", "-t", "filter").stdout)
    script = iptables.render_transaction(iptables.desired_state(other, "fw-int"), live)
    run(["ip", "netns", "exec", ns, "iptables-restore", "--noflush"], input=script)
    assert "10.123.0.0/24" in sh(ns, "iptables", "-S", "OCS-EDGE-MGMT").stdout

    assert wait_state(tmp_path / "guards" / "ocs_edge", "rolled_back", 15)
    assert sh(ns, "iptables", "-S").stdout == before
    res = ruleset(ns, tmp_path, args, check=True)
    assert res["changed"] is False, json.dumps(res)[:3000]


def test_merge_owned_replaces_only_owned_lines():
    scope = {"__file__": "/nonexistent/rollback.py"}
    exec(compile(ag.ROLLBACK_PROGRAM, "rollback.py", "exec"), scope)
    current = "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":DOCKER - [0:0]",
                         ":OCS-EDGE-FWD - [0:0]", "-A FORWARD -j OCS-EDGE-FWD", "-A FORWARD -j DOCKER",
                         "-A OCS-EDGE-FWD -j DROP", "-A DOCKER -j RETURN", "COMMIT"]) + "\n"
    snapshot = "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":OCS-EDGE-IN - [0:0]", "-A INPUT -j OCS-EDGE-IN",
                          "-A INPUT -j OLD-OTHER", "-A OCS-EDGE-IN -p tcp --dport 22 -j ACCEPT", "COMMIT"]) + "\n"
    merged = scope["merge_owned"](current, snapshot, "OCS-EDGE", ["OCS-EDGE-MGMT"])
    assert merged.splitlines() == ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":DOCKER - [0:0]",
                                   ":OCS-EDGE-IN - [0:0]", "-A INPUT -j OCS-EDGE-IN", "-A FORWARD -j DOCKER",
                                   "-A DOCKER -j RETURN", "-A OCS-EDGE-IN -p tcp --dport 22 -j ACCEPT", "COMMIT"]
    # the management chain's jump goes after the other rules of INPUT, its chain declared once
    snapshot = snapshot.replace("-A INPUT -j OLD-OTHER", ":OCS-EDGE-MGMT - [0:0]\n-A INPUT -j OCS-EDGE-MGMT")
    current = current.replace("-A FORWARD -j DOCKER", "-A FORWARD -j DOCKER\n-A INPUT -j DOCKER")
    merged = scope["merge_owned"](current, snapshot, "OCS-EDGE", ["OCS-EDGE-MGMT"]).splitlines()
    assert merged.count(":OCS-EDGE-MGMT - [0:0]") == 1 and merged.count("-A INPUT -j OCS-EDGE-MGMT") == 1
    assert [l for l in merged if l.startswith("-A INPUT")] == [
        "-A INPUT -j OCS-EDGE-IN", "-A INPUT -j DOCKER", "-A INPUT -j OCS-EDGE-MGMT"]
    assert json.loads(json.dumps(ag.nft_rollback_script("t", ""))) == "table inet t {}\ndelete table inet t\n"
