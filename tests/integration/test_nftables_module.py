"""nftables backend end to end: the real nft_ruleset module, run by the real ansible-playbook,
against real nftables inside a fresh network namespace per test (prefix ``ocsnft-``).

Needs root, ``ip`` and ``nft``; skipped with the reason otherwise (CI is root and has them).
"""
import json
import re
import subprocess
from pathlib import Path

import pytest

from ansible_collections.ocs.edge_firewall.plugins.module_utils import nftables as N
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
from inventory_loader import example
from netns_harness import REPO, deploy_argv, module_result, packet_probe, playbook, run, run_ansible
from netns_harness import markers, netns_fixture

GOLDEN = REPO / "tests" / "golden" / "nftables"

pytestmark = markers("nftables", ("ip", "nft"))

netns = netns_fixture("ocsnft")


# ----------------------------------------------------------------------------- helpers

def nft(ns, *args, check=True):
    return run(["ip", "netns", "exec", ns, "nft"] + list(args), check=check)


def ruleset(ns):
    """Full ruleset with handles: any re-creation or edit shows up."""
    return nft(ns, "-a", "list", "ruleset").stdout


def table_json(ns, family="inet", table="ocs_edge"):
    """`nft -j list table` without handles (comparable across namespaces)."""
    doc = json.loads(nft(ns, "-j", "list", "table", family, table).stdout)
    out = []
    for item in doc["nftables"]:
        (kind, body), = item.items()
        if kind == "metainfo":
            continue
        out.append({kind: {k: v for k, v in body.items() if k != "handle"}})
    return out


def handle_of(ns, chain, comment_part):
    doc = json.loads(nft(ns, "-j", "list", "chain", "inet", "ocs_edge", chain).stdout)
    hits = [o["rule"]["handle"] for o in doc["nftables"] if "rule" in o and comment_part in o["rule"].get("comment", "")]
    assert hits, "no rule with comment %r in chain %s" % (comment_part, chain)
    return hits[0]


def nft_task(args):
    return [{"name": "nft", "ocs.edge_firewall.nft_ruleset": args}]


def policy_firewall(topology, host):
    return build_policy(example(topology))["firewalls"][host]


@pytest.fixture
def fw_int():
    return policy_firewall("consolidated", "fw-int")


def args_for(firewall, tmp_path, **kw):
    args = {"firewall": firewall, "name": "fw-int", "persist_path": str(tmp_path / "nftables.d" / "ocs_edge.nft"),
            "persist_conf": str(tmp_path / "nftables.conf")}
    args.update(kw)
    return args


def apply(ns, tmp_path, args, **kw):
    doc, proc = playbook(ns, tmp_path, nft_task(args), **kw)
    res = module_result(doc)
    return res, proc


OTHER_TABLES = """
table ip other {
	chain other_forward {
		type filter hook forward priority 10; policy accept;
		tcp dport 23 counter accept comment "not ours"
	}
}
table inet f2b {
	set banned { type ipv4_addr; elements = { 192.0.2.66 } }
	chain input {
		type filter hook input priority -1; policy accept;
		ip saddr @banned drop
	}
}
"""


def add_other_tables(ns, tmp_path):
    path = tmp_path / "other.nft"
    path.write_text(OTHER_TABLES)
    nft(ns, "-f", str(path))
    return nft(ns, "-a", "list", "table", "ip", "other").stdout + nft(ns, "-a", "list", "table", "inet", "f2b").stdout


def other_tables(ns):
    return nft(ns, "-a", "list", "table", "ip", "other").stdout + nft(ns, "-a", "list", "table", "inet", "f2b").stdout


# ------------------------------------------------------------------------------- tests

def test_apply_noop_persist_and_unrelated_tables(netns, tmp_path, fw_int):
    ns = netns.first
    before_other = add_other_tables(ns, tmp_path)
    args = args_for(fw_int, tmp_path)

    res, _ = apply(ns, tmp_path, args)
    assert res["changed"] is True, res
    assert "table inet created" in res["updated"]
    assert len([c for c in res["created"] if c.startswith("forward: ")]) == 2 + len(fw_int["rules"])
    listing = nft(ns, "list", "table", "inet", "ocs_edge").stdout
    for rule in fw_int["rules"]:
        assert 'comment "%s"' % rule["comment"] in listing
    assert "policy drop" in listing and 'iifname "eth1" oifname "eth0"' in listing

    # no-op re-run: nothing changes, not even handles
    live = ruleset(ns)
    res2, _ = apply(ns, tmp_path, args)
    assert res2["changed"] is False, res2
    assert res2["created"] == res2["removed"] == res2["updated"] == []
    assert ruleset(ns) == live

    # unrelated tables untouched (same handles, same rules, same set elements)
    assert other_tables(ns) == before_other

    # persisted: file == applied script; conf includes it exactly once
    persisted = Path(args["persist_path"]).read_text()
    assert persisted == res["script"]
    conf = Path(args["persist_conf"]).read_text()
    assert conf.count('include "%s"' % args["persist_path"]) == 1
    # the persisted copy is what is live: load the boot file into a fresh namespace and compare
    fresh = netns()
    nft(fresh, "-f", args["persist_conf"])
    assert table_json(fresh) == table_json(ns)


def test_check_mode_on_drifted_table_reports_and_changes_nothing(netns, tmp_path, fw_int):
    ns = netns.first
    args = args_for(fw_int, tmp_path)
    apply(ns, tmp_path, args)
    nft(ns, "add", "rule", "inet", "ocs_edge", "forward", "tcp", "dport", "23", "accept")
    drifted = ruleset(ns)
    persisted = Path(args["persist_path"]).read_text()

    res, proc = apply(ns, tmp_path, args, check=True)
    assert res["changed"] is True
    assert res["removed"] == ["forward: tcp dport 23 accept"]
    assert res["created"] == [] and res["updated"] == []
    diff = res["diff"][0]
    assert "tcp dport 23 accept" in diff["before"] and "tcp dport 23 accept" not in diff["after"]
    assert ruleset(ns) == drifted, "check mode changed the live ruleset"
    assert Path(args["persist_path"]).read_text() == persisted


def _replace(ns, chain, comment_part, old, new):
    handle = handle_of(ns, chain, comment_part)
    line = [l.strip() for l in nft(ns, "-a", "list", "chain", "inet", "ocs_edge", chain).stdout.splitlines()
            if "# handle %d" % handle in l][0]
    text = line.split(" # handle")[0]
    assert old in text
    nft(ns, "replace", "rule", "inet", "ocs_edge", chain, "handle", str(handle), text.replace(old, new))


DRIFTS = {
    "rule_added": (lambda ns: nft(ns, "insert", "rule", "inet", "ocs_edge", "forward", "ip", "saddr", "198.51.100.9", "accept"),
                   ["forward: ip saddr 198.51.100.9 accept"], []),
    "rule_deleted": (lambda ns: nft(ns, "delete", "rule", "inet", "ocs_edge", "forward", "handle",
                                    str(handle_of(ns, "forward", "t10-f5-out"))),
                     [], ["t10-f5-out"]),
    "port_changed": (lambda ns: _replace(ns, "forward", "t10-f5-in", "dport 5061", "dport 5062"),
                     ["dport 5062"], ["dport 5061"]),
    "address_changed": (lambda ns: _replace(ns, "forward", "t10-f5-in", "ip daddr 10.10.1.10", "ip daddr 10.10.1.11"),
                        ["ip daddr 10.10.1.11"], ["ip daddr 10.10.1.10"]),
    "management_rule_deleted": (lambda ns: nft(ns, "delete", "rule", "inet", "ocs_edge", "input", "handle",
                                               str(handle_of(ns, "input", "ocs management"))),
                                [], ["ocs management"]),
    "policy_changed": (lambda ns: nft(ns, "chain", "inet", "ocs_edge", "forward", "{", "policy", "accept", ";", "}"),
                       [], []),
}


@pytest.mark.parametrize("kind", sorted(DRIFTS))
def test_drift_is_detected_corrected_and_then_quiet(netns, tmp_path, fw_int, kind):
    ns = netns.first
    add_other_tables(ns, tmp_path)
    args = args_for(fw_int, tmp_path)
    apply(ns, tmp_path, args)
    good = table_json(ns)
    others = other_tables(ns)
    drift, removed_needles, created_needles = DRIFTS[kind]
    drift(ns)
    assert table_json(ns) != good

    check, _ = apply(ns, tmp_path, args, check=True)
    assert check["changed"] is True
    assert table_json(ns) != good, "check mode corrected the drift"
    fix, _ = apply(ns, tmp_path, args)
    assert fix["changed"] is True
    assert (fix["created"], fix["removed"], fix["updated"]) == (check["created"], check["removed"], check["updated"])
    for needle in removed_needles:
        assert any(needle in r for r in fix["removed"]), fix
    for needle in created_needles:
        assert any(needle in c for c in fix["created"]), fix
    if kind == "policy_changed":
        assert fix["updated"] == ["chain forward: policy accept -> drop"]
    assert table_json(ns) == good
    again, _ = apply(ns, tmp_path, args)
    assert again["changed"] is False, again
    assert other_tables(ns) == others


def test_invalid_rule_set_rejected_previous_stays(netns, tmp_path, fw_int):
    ns = netns.first
    args = args_for(fw_int, tmp_path)
    apply(ns, tmp_path, args)
    live = ruleset(ns)
    persisted = Path(args["persist_path"]).read_text()
    bad = json.loads(json.dumps(fw_int))
    bad["rules"][1]["dst"] = ["10.10.1.300"]
    res, proc = apply(ns, tmp_path, args_for(bad, tmp_path))
    assert res.get("failed") is True and proc.returncode != 0
    assert "firewall fw-int: rules[1] (%s).dst[0]: '10.10.1.300' is not a valid IP address" % bad["rules"][1]["id"] in res["msg"]
    assert "previous rule set is still in force" in res["msg"]
    assert ruleset(ns) == live
    assert Path(args["persist_path"]).read_text() == persisted


def test_nft_rejection_is_atomic_and_explained(netns, tmp_path, fw_int):
    """What nft itself refuses (past the module's own checks): `nft -c` reports it with the line,
    and even `nft -f` without the check changes nothing (one transaction)."""
    ns = netns.first
    args = args_for(fw_int, tmp_path)
    apply(ns, tmp_path, args)
    live = ruleset(ns)
    script = Path(args["persist_path"]).read_text()
    lines = script.splitlines()
    idx = [i for i, l in enumerate(lines) if "t10-f5-out" in l][0]
    lines[idx] = lines[idx].replace("dport 5061", "dport 70000")
    bad = "\n".join(lines) + "\n"
    runner = N.Nft(lambda argv, data=None: (lambda p: (p.returncode, p.stdout, p.stderr))(
        subprocess.run(["ip", "netns", "exec", ns] + argv, input=data, capture_output=True, text=True)))
    with pytest.raises(N.NftError) as err:
        runner.check(bad)
    msg = str(err.value)
    assert "validation (nft -c -f)" in msg and "nothing was changed" in msg
    assert re.search(r":%d:\d+-\d+: Error" % (idx + 1), msg), msg
    with pytest.raises(N.NftError):
        runner.apply(bad)
    assert ruleset(ns) == live


def test_host_mode_reverse_proxy(netns, tmp_path):
    ns = netns.first
    fw = policy_firewall("consolidated", "rp1")
    assert fw["mode"] == "host"
    args = args_for(fw, tmp_path, name="rp1")
    res, _ = apply(ns, tmp_path, args)
    assert res["changed"] is True
    data = json.loads(nft(ns, "-j", "list", "table", "inet", "ocs_edge").stdout)["nftables"]
    chains = {o["chain"]["name"]: o["chain"] for o in data if "chain" in o}
    assert set(chains) == {"input", "output"}
    assert chains["input"]["policy"] == "drop" and chains["output"]["policy"] == "accept"
    listing = nft(ns, "list", "table", "inet", "ocs_edge").stdout
    assert "ip saddr 10.99.0.0/24 tcp dport 22 accept" in listing
    for rule in fw["rules"]:
        assert 'comment "%s"' % rule["comment"] in listing
    res2, _ = apply(ns, tmp_path, args)
    assert res2["changed"] is False


def test_state_absent_removes_only_what_it_owns(netns, tmp_path, fw_int):
    ns = netns.first
    others = add_other_tables(ns, tmp_path)
    args = args_for(fw_int, tmp_path)
    Path(args["persist_conf"]).write_text("#!/usr/sbin/nft -f\nflush ruleset\n")
    apply(ns, tmp_path, args)
    gone, _ = apply(ns, tmp_path, dict(args, state="absent", firewall=None))
    assert gone["changed"] is True and "table inet ocs_edge" in gone["removed"]
    assert nft(ns, "list", "table", "inet", "ocs_edge", check=False).returncode != 0
    assert not Path(args["persist_path"]).exists()
    assert Path(args["persist_conf"]).read_text() == "#!/usr/sbin/nft -f\nflush ruleset\n"
    assert other_tables(ns) == others
    again, _ = apply(ns, tmp_path, dict(args, state="absent", firewall=None))
    assert again["changed"] is False


def test_role_one_module_call_check_and_diff(netns, tmp_path, fw_int):
    ns = netns.first
    tasks = [{"name": "role", "ansible.builtin.include_role": {"name": "ocs.edge_firewall.nftables"}}]
    extra = {"ocs_firewall": fw_int, "ocs_firewall_name": "fw-int",
             "ocs_nftables_persist_path": str(tmp_path / "d" / "ocs_edge.nft"),
             "ocs_nftables_persist_conf": str(tmp_path / "nftables.conf"),
             "ocs_nftables_boot_loader": False}     # the test machine has no init to enable it with
    doc, proc = playbook(ns, tmp_path, tasks, check=True, extra_vars=extra)
    assert proc.returncode == 0, proc.stdout[-3000:]
    calls = [t for t in doc["plays"][0]["tasks"] if "Enforce the rule set in the owned table" in t["task"]["name"]]
    assert len(calls) == 1, "one module call per firewall"
    assert calls[0]["hosts"]["localhost"]["changed"] is True
    assert nft(ns, "list", "table", "inet", "ocs_edge", check=False).returncode != 0, "check mode created the table"
    doc, proc = playbook(ns, tmp_path, tasks, extra_vars=extra)
    assert proc.returncode == 0 and doc["stats"]["localhost"]["changed"] >= 1
    doc, proc = playbook(ns, tmp_path, tasks, extra_vars=extra)
    assert doc["stats"]["localhost"]["changed"] == 0


def test_deploy_playbook_on_consolidated_fw_int(netns, tmp_path):
    """The lead's deploy playbook, example inventory, limited to fw-int, run inside the namespace."""
    ns = netns.first
    argv = deploy_argv(ns, "consolidated", "fw-int", [
        "ocs_nftables_persist_path=%s" % (tmp_path / "ocs_edge.nft"),
        "ocs_nftables_persist_conf=%s" % (tmp_path / "nftables.conf"), "ocs_nftables_boot_loader=false"])
    doc, proc = run_ansible(argv)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert doc["stats"]["fw-int"]["changed"] >= 1
    fw = policy_firewall("consolidated", "fw-int")
    listing = nft(ns, "list", "table", "inet", "ocs_edge").stdout
    assert all('comment "%s"' % r["comment"] in listing for r in fw["rules"])
    doc, proc = run_ansible(argv + ["--check", "--diff"])
    assert proc.returncode == 0 and doc["stats"]["fw-int"]["changed"] == 0


# --------------------------------------------------------------------- packet-level probe

def test_packets_through_router_namespace(netns, tmp_path):
    """internal client 10.10.1.10 -> router (the firewall, nftables) -> perimeter server 172.16.1.31."""
    packet_probe(netns, "nftables",
                 lambda router, firewall: apply(router, tmp_path, args_for(firewall, tmp_path, name="lab-router"))[0])
