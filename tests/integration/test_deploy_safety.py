"""The deploy playbook's safety nets, over real SSH to nftables firewalls in network namespaces
(tests/integration/ssh_netns.py: a controller namespace, one namespace per firewall with its own
sshd). Prefix ``ocssafe-``.

- No silent partial deployment: one firewall unreachable -> no firewall changed, the summary names
  it, non-zero exit; with ocs_allow_partial the others are applied and the summary says partial.
- Apply with confirmation: a rule set that keeps the management path is confirmed over a new
  connection; one that cuts it cannot be confirmed, the firewall restores its previous rule set by
  itself after the timeout, and the run reports the rollback.
"""
import json
import time

from netns_harness import REPO, markers, netns_fixture, run
from netns_inventory import consolidated_inventory
from ssh_netns import controller_run, ssh_lab, stop

pytestmark = markers("nftables", ("ip", "nft", "sshd", "ssh"))

netns = netns_fixture("ocssafe")


def inventory(tmp_path, host_vars):
    """inventories/consolidated, no host firewalls, the firewalls' connection and state paths from ``host_vars``."""
    managed = {name: dict({"ocs_management_networks": ["10.77.1.0/24"]}, **hv)   # the controller is 10.77.1.1
               for name, hv in host_vars.items()}
    return consolidated_inventory(tmp_path / "inventory", tmp_path, managed)


def deploy(lab, tmp_path, inv, *extra):
    argv = ["ansible-playbook", str(REPO / "playbooks" / "deploy_edge_firewalls.yml"), "-i", str(inv),
            "-e", "ocs_report_dir=%s" % (tmp_path / "report")] + list(extra)
    proc = controller_run(lab, argv, tmp_path, env={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    return proc, {e["firewall"]: e for e in summary["firewalls"]}, summary


def table(ns):
    proc = run(["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "ocs_edge"], check=False)
    return proc.stdout if proc.returncode == 0 else None


def test_unreachable_firewall_stops_the_deploy_unless_partial_is_allowed(netns, tmp_path):
    lab = ssh_lab(netns, tmp_path, ["fw-ext"])
    try:
        ext = lab["hosts"]["fw-ext"]
        down = dict(ext["vars"], ansible_host="10.77.9.9")                  # no route from the controller
        inv = inventory(tmp_path, {"fw-ext": ext["vars"], "fw-int": down})

        proc, fws, summary = deploy(lab, tmp_path, inv)
        assert proc.returncode != 0
        assert summary["status"] == "stopped", proc.stdout[-6000:]
        assert fws["fw-int"]["outcome"] == "not_reached" and fws["fw-ext"]["outcome"] == "not_applied"
        assert table(ext["ns"]) is None                                      # nothing changed anywhere
        assert "deploy stopped: fw-ext not_applied, fw-int not_reached" in proc.stdout
        md = (tmp_path / "report" / "summary.md").read_text()
        assert "| fw-int | nftables | not reached |" in md

        proc, fws, summary = deploy(lab, tmp_path, inv, "-e", "ocs_allow_partial=true")
        assert proc.returncode != 0
        assert summary["status"] == "partial"
        assert fws["fw-ext"]["outcome"] == "applied" and fws["fw-ext"]["converged"] is True
        assert fws["fw-int"]["outcome"] == "not_reached"
        assert "ocs central-t10-" in table(ext["ns"]) or "ocs central-t" in table(ext["ns"])
        assert "PARTIAL" in (tmp_path / "report" / "summary.md").read_text()
    finally:
        stop(lab)


def test_apply_is_confirmed_or_rolled_back_by_the_firewall(netns, tmp_path):
    lab = ssh_lab(netns, tmp_path, ["fw-int"])
    try:
        fw = lab["hosts"]["fw-int"]
        good = dict(fw["vars"], ocs_management_networks=["10.77.1.0/24"])  # the controller is 10.77.1.1
        inv = inventory(tmp_path, {"fw-int": good})
        args = ("-e", "ocs_deploy_limit=fw-int", "-e", "ocs_apply_confirm_timeout=20",
                "-e", "ocs_apply_confirm_method=process", "-e", "ocs_apply_confirm_guard_dir=%s" % (tmp_path / "guard"))

        proc, fws, summary = deploy(lab, tmp_path, inv, *args)
        assert proc.returncode == 0, proc.stdout[-5000:]
        assert fws["fw-int"]["outcome"] == "applied" and fws["fw-int"]["guard"] == "confirmed"
        before = table(fw["ns"])
        assert "10.77.1.0/24" in before
        time.sleep(22)                                                      # past the deadline: nothing happens
        assert table(fw["ns"]) == before

        # a change that cuts the management path: the lockout guard refuses it, nothing changes ...
        cut = dict(fw["vars"], ocs_management_networks=["192.0.2.0/24"])
        inv = inventory(tmp_path, {"fw-int": cut})
        proc, fws, summary = deploy(lab, tmp_path, inv, *args)
        assert proc.returncode != 0 and "would cut the connection Ansible is using" in proc.stdout
        assert table(fw["ns"]) == before

        # ... and forced past the guard, the new connection cannot confirm it: the firewall rolls back
        started = time.time()
        proc, fws, summary = deploy(lab, tmp_path, inv, *args, "-e", "ocs_allow_management_lockout=true")
        assert proc.returncode != 0
        assert fws["fw-int"]["outcome"] == "rolled_back", fws
        assert fws["fw-int"]["guard"] == "rolled_back"
        assert "restored its previous rule set" in fws["fw-int"]["message"]
        assert table(fw["ns"]) == before                                    # the previous rule set is back
        assert time.time() - started >= 20
        assert "rolled back" in (tmp_path / "report" / "summary.md").read_text()
    finally:
        stop(lab)
