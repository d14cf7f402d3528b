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


# ------------------------------------------------------------------------------- tests

def test_persisted_boot_file_loads_the_live_table(netns, tmp_path, fw_int):
    """nftables' own persistence: the script file is the applied one, the boot file includes it
    once, and loading the boot file in a fresh namespace gives the same table.
    (Apply, no-op, check mode, drift, invalid input, absent: tests/integration/test_backend_contract.py.)"""
    ns = netns.first
    args = args_for(fw_int, tmp_path)
    res, _ = apply(ns, tmp_path, args)
    assert res["changed"] is True and res["table"] == "inet ocs_edge"
    listing = nft(ns, "list", "table", "inet", "ocs_edge").stdout
    assert "policy drop" in listing and 'iifname "eth1" oifname "eth0"' in listing
    assert Path(args["persist_path"]).read_text() == res["script"]
    conf = Path(args["persist_conf"]).read_text()
    assert conf.count('include "%s"' % args["persist_path"]) == 1
    fresh = netns()
    nft(fresh, "-f", args["persist_conf"])
    assert table_json(fresh) == table_json(ns)
    again, _ = apply(ns, tmp_path, args)
    assert again["changed"] is False and Path(args["persist_conf"]).read_text() == conf


def test_absent_keeps_the_rest_of_the_boot_file(netns, tmp_path, fw_int):
    ns = netns.first
    args = args_for(fw_int, tmp_path)
    Path(args["persist_conf"]).write_text("#!/usr/sbin/nft -f\nflush ruleset\n")
    apply(ns, tmp_path, args)
    gone, _ = apply(ns, tmp_path, dict(args, state="absent", firewall=None))
    assert "table:inet ocs_edge" in gone["removed"] and "file:%s" % args["persist_path"] in gone["removed"]
    assert not Path(args["persist_path"]).exists()
    assert Path(args["persist_conf"]).read_text() == "#!/usr/sbin/nft -f\nflush ruleset\n"


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
    runner = N.Nft(lambda argv: (lambda p: (p.returncode, p.stdout, p.stderr))(
        subprocess.run(["ip", "netns", "exec", ns] + argv, capture_output=True, text=True)))
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


def test_role_one_module_call_check_and_diff(netns, tmp_path, fw_int):
    ns = netns.first
    tasks = [{"name": "role", "ansible.builtin.include_role": {"name": "ocs.edge_firewall.nftables"}}]
    extra = {"ocs_firewall": fw_int, "ocs_firewall_name": "fw-int",
             "ocs_nftables_persist_path": str(tmp_path / "d" / "ocs_edge.nft"),
             "ocs_nftables_persist_conf": str(tmp_path / "nftables.conf")}
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
        "ocs_nftables_persist_conf=%s" % (tmp_path / "nftables.conf")])
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
