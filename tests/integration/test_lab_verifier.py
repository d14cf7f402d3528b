"""The lab's verifier (lab/probe.py and its lab/probe_*.py) and lab descriptions (lab/labgen.py), tested themselves.

- The committed lab descriptions and inventories are what lab/labgen.py writes, and every lab
  inventory is valid for the policy engine (no Ansible run, no container).
- The probe matrix covers every rule of every network firewall with positive probes, samples
  ranges at both ends and inside, and has the negative probes the issue names.
- A deliberately wrong rule set (the A/V RTP/UDP rule missing) changes exactly the
  expectations of that rule's probes (evaluator level).
- Live (root + podman): a consolidated lab of its own (prefix ocs-lab_verifier-, subnets
  10.209.0.0/16) is created, the real deploy playbook run, then the A/V RTP/UDP rule is deleted
  from the external firewall: the verifier, run with the true policy, fails exactly the
  probes of that rule and nothing else; a re-deploy makes it pass again.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
from inventory_loader import load_hostvars

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lab"))
import labgen  # noqa: E402
import probe_drift  # noqa: E402
import probe_matrix  # noqa: E402
import probe_oracle  # noqa: E402

SCENARIOS = list(labgen.SCENARIOS)
BIN = Path(sys.executable).parent


def policy_of(scenario):
    return build_policy(load_hostvars(REPO / "molecule" / scenario / "inventory"))


def lab_of(scenario):
    return json.loads((REPO / "molecule" / scenario / "lab.json").read_text())


def test_committed_lab_files_are_what_labgen_writes():
    proc = subprocess.run([sys.executable, str(REPO / "lab" / "labgen.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lab_inventory_is_valid_and_matches_the_lab(scenario):
    policy = policy_of(scenario)
    lab = lab_of(scenario)
    assert policy["topology"] == lab["topology"]
    # the only warnings: A/V external addresses are private in a lab (documented opt-out)
    assert all("not a publicly routable" in w for w in policy["warnings"]), policy["warnings"]
    owners = probe_oracle.Lab(lab).addr
    for fw in policy["firewalls"].values():
        for r in fw["rules"]:
            for a in (r["src"] or []) + (r["dst"] or []):
                assert a in owners, "%s: address %s of %s is held by no container" % (scenario, a, r["id"])
    # routes never point at the host (bridge gateways)
    gws = set(lab["bridge_gateways"])
    for c in lab["containers"]:
        assert not {r["via"] for r in c["routes"]} & gws, c["name"]
    # every platform the issue asks for is exercised somewhere
    if scenario in ("single_site", "scaled_single_site"):
        assert "iptables" in {f["platform"] for f in policy["firewalls"].values()}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_matrix_covers_every_rule_and_the_named_negatives(scenario):
    policy = policy_of(scenario)
    lab = lab_of(scenario)
    m = probe_matrix.build_matrix(policy, lab)
    pos = [p for p in m if p["expect"] == "open"]
    neg = [p for p in m if p["expect"] == "blocked"]
    for fw in policy["firewalls"].values():
        if fw["mode"] != "network":
            continue
        for r in fw["rules"]:
            mine = [p for p in pos if p["rule"] == r["id"]]
            assert mine, "no positive probe for %s" % r["id"]
            for d in r["dst"] or []:
                assert any(p["dst"] == d for p in mine), "%s: address %s not probed" % (r["id"], d)
            for spec, key in ((r["dport"], "dport"), (r["sport"], "sport")):
                for lo, hi in probe_oracle.parse_ports(spec) or []:
                    if hi > lo:
                        got = {p[key] for p in mine}
                        assert {lo, hi} <= got and any(lo < x < hi for x in got), (r["id"], got)
    ports = {(p["protocol"], p["dport"]) for p in neg}
    assert {("udp", 49999), ("udp", 60000), ("tcp", 49999), ("tcp", 60000)} <= ports
    labels = {p["label"] for p in neg}
    assert "Internet to 5062 on the edge" in labels and "Internet to 8057 on the edge" in labels
    assert "Internet to the internal network" in labels
    assert "reverse of one-way rule" in labels
    assert "open on another address, not on this one" in labels
    assert len({(p["protocol"], p["src"], p["sport"], p["dst"], p["dport"]) for p in m}) == len(m)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_flow_query_answers_every_probe_like_the_lab(scenario):
    """The user's query (filter edge_flow_query, addresses placed by its own guess; only the
    lab's Internet client, a private address, is said to be on the Internet) gives every
    probe's expectation, with the same rule ids the probe report shows."""
    from ansible_collections.ocs.edge_firewall.plugins.filter.edge_flow_query import edge_flow_query
    policy = policy_of(scenario)
    lab = lab_of(scenario)
    inet = {i["ip"] for c in lab["containers"] if c["host"] == "inet-client" for i in c["interfaces"]}
    m = probe_matrix.build_matrix(policy, lab, eph_slice=0)
    assert m
    for p in m:
        a = edge_flow_query(policy, p["src"], p["dst"], p["protocol"], p["dport"], p["sport"],
                            "internet" if p["src"] in inet else "", "internet" if p["dst"] in inet else "")
        assert a["allowed"] == (p["expect"] == "open"), (p, a["text"])
        assert a["allowed"] == p["answer"]["allowed"]
        if a["allowed"]:
            assert a["rules"] == p["answer"]["rules"] == p["why"].split(", "), (p, a["rules"])
            if p["rule"]:
                assert p["rule"] in a["rules"]


def test_missing_av_rtp_rule_changes_exactly_its_probes():
    policy = policy_of("consolidated")
    lab = lab_of("consolidated")
    m = probe_matrix.build_matrix(policy, lab)
    wrong = probe_drift.apply_drift(policy, {"fw-ext": {"delete": ["central-t12-f11-in"]}})
    ev = probe_oracle.Policy(wrong, probe_oracle.Lab(lab))
    changed = [p for p in m if ev.allowed(p["protocol"], p["src"], p["sport"], p["dst"], p["dport"])[0]
               != (p["expect"] == "open")]
    assert changed and {p["rule"] for p in changed} == {"central-t12-f11-in"}
    assert {p["dport"] for p in changed} == {50000, 55000, 59999}
    assert all(p["expect"] == "open" and p["protocol"] == "udp" for p in changed)


# ------------------------------------------------------------------ live, with podman

def _live_skip():
    if os.geteuid() != 0:
        return "needs root (podman networks, nftables in containers)"
    for tool in ("podman", "debootstrap"):
        if not shutil.which(tool):
            return "needs %s" % tool
    if os.environ.get("OCS_SKIP_LAB") == "1":
        return "OCS_SKIP_LAB=1"
    return None


@pytest.fixture
def verifier_lab(tmp_path):
    """A consolidated lab of its own: scenario name lab_verifier, subnets 10.209.0.0/16."""
    spec = dict(labgen.SCENARIOS["consolidated"], index=9)
    lab = labgen.expand("lab_verifier", spec)
    hosts, allvars = labgen.inventory("lab_verifier", spec, lab)
    (tmp_path / "inventory" / "group_vars").mkdir(parents=True)
    (tmp_path / "inventory" / "hosts.yml").write_text(hosts)
    (tmp_path / "inventory" / "group_vars" / "all.yml").write_text(allvars)
    (tmp_path / "lab.json").write_text(json.dumps(lab))
    env = dict(os.environ, CONTAINERS_CONF=os.environ.get("CONTAINERS_CONF", str(REPO / "lab" / "containers.conf")),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))
    pb = [str(BIN / "ansible-playbook")]
    labarg = ["-e", "ocs_lab_file=%s" % (tmp_path / "lab.json")]

    def run(argv, ok=True):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(REPO))
        if ok and proc.returncode != 0:
            raise AssertionError("%s rc=%s\n%s\n%s" % (argv, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))
        return proc

    run(pb + ["molecule/shared/destroy.yml"] + labarg)
    run(pb + ["molecule/shared/create.yml"] + labarg)
    try:
        yield tmp_path, run, pb
    finally:
        run(pb + ["molecule/shared/destroy.yml"] + labarg, ok=False)


@pytest.mark.integration
@pytest.mark.skipif(_live_skip() is not None, reason=str(_live_skip()))
def test_verifier_fails_exactly_the_flows_of_a_missing_av_rtp_rule(verifier_lab):
    d, run, pb = verifier_lab
    inv = str(d / "inventory")
    run(pb + ["playbooks/deploy_edge_firewalls.yml", "-i", inv])
    run(pb + ["playbooks/export_policy.yml", "-i", inv, "-e", "ocs_policy_export_dir=%s" % (d / "policy")])
    args = ["--lab", str(d / "lab.json"), "--policy", str(d / "policy" / "policy.json")]
    py = [sys.executable, str(REPO / "lab" / "probe.py")]

    good = run(py + ["run", "--quiet", "--out", str(d / "good")] + args, ok=False)
    assert good.returncode == 0, good.stdout + good.stderr

    (d / "wrong.json").write_text(json.dumps({"fw-ext": {"delete": ["central-t12-f11-in"]}}))
    run(py + ["drift", "--drift", str(d / "wrong.json"), "--out", str(d / "wrong")] + args)
    bad = run(py + ["run", "--quiet", "--out", str(d / "wrong")] + args, ok=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    res = json.loads((d / "wrong" / "probe-results.json").read_text())
    failed = [p for p in res["probes"] if not p["ok"]]
    assert failed, "the verifier did not notice the missing A/V RTP rule"
    assert {p["rule"] for p in failed} == {"central-t12-f11-in"}, [(p["rule"], p["label"]) for p in failed]
    assert sorted(p["dport"] for p in failed) == [50000, 55000, 59999]
    assert all(p["expect"] == "open" and p["status"] == "timeout" for p in failed)
    assert all(r["ok"] for r in res["routes"])
    assert "**FAIL**" in (d / "wrong" / "probe-matrix.md").read_text()
    assert 'failures="3"' in (d / "wrong" / "probe-matrix.xml").read_text()

    run(pb + ["playbooks/deploy_edge_firewalls.yml", "-i", inv])
    again = run(py + ["run", "--quiet", "--out", str(d / "again")] + args, ok=False)
    assert again.returncode == 0, again.stdout + again.stderr
