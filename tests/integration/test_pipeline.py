"""scripts/ocs-pipeline as the CI pipelines call it, against two nftables firewalls that are network
namespaces (prefix ``ocspipe-``): the real playbooks run by the real ansible-playbook, each firewall's
modules running inside its namespace (its Python interpreter is ``ip netns exec NS python``).

The story of docs/examples/: apply (converges, verified), drift job green, a change to the inventory
planned against the git base (exactly that change), drift planted by hand fails the drift job with a
JUnit failure for that firewall only, apply converges, drift job green again.
"""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

from netns_harness import REPO, markers, netns_fixture, run
from netns_inventory import consolidated_inventory, interpreter

pytestmark = markers("nftables", ("ip", "nft", "git"))

netns = netns_fixture("ocspipe")
PIPELINE = REPO / "scripts" / "ocs-pipeline"


def make_inventory(tmp_path, namespaces):
    """inventories/consolidated with both firewalls in namespaces and no host firewalls, in a git repo."""
    repo = tmp_path / "repo"
    firewalls = {name: {"ansible_connection": "local", "ansible_python_interpreter": interpreter(tmp_path, ns)}
                 for name, ns in zip(("fw-ext", "fw-int"), namespaces)}
    inv = consolidated_inventory(repo / "inventory", tmp_path, firewalls, drop=("ansible_host",))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.test"]
    run(git[:3] + ["init", "-q"])
    run(git + ["add", "-A"])
    run(git + ["commit", "-qm", "base"])
    return repo, inv


def pipeline(cwd, *args):
    env = dict(os.environ, PATH="%s:%s" % (os.path.dirname(sys.executable), os.environ["PATH"]),
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run([sys.executable, str(PIPELINE), *args], cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def report(cwd, kind):
    out = cwd / "out" / "pipeline" / kind
    return json.loads((out / "report.json").read_text()), ET.parse(str(out / "report.xml")).getroot()


def statuses(rep):
    return {e["firewall"]: e["status"] for e in rep["firewalls"]}


def test_pipeline_plan_drift_apply(netns, tmp_path):
    ext, int_ = netns.first, netns()
    repo, inv = make_inventory(tmp_path, (ext, int_))

    res = pipeline(repo, "apply", "-i", "inventory")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert statuses(report(repo, "apply/verify")[0]) == {"fw-ext": "in_sync", "fw-int": "in_sync"}

    res = pipeline(repo, "drift", "-i", "inventory")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert "ocs-pipeline drift: in_sync" in res.stdout

    # a pull request: the Director moves; the plan against the git base shows exactly that
    gv = inv / "group_vars" / "all.yml"
    gv.write_text(gv.read_text().replace("ocs_director: 10.10.1.10", "ocs_director: 10.10.1.20"))
    res = pipeline(repo, "plan", "-i", "inventory", "--base-ref", "HEAD", "--detailed-exitcode")
    assert res.returncode == 2, res.stdout[-3000:] + res.stderr
    plan = json.loads((repo / "out" / "pipeline" / "plan" / "plan.json").read_text())
    assert plan["deployment"] == {"director": {"before": "10.10.1.10", "after": "10.10.1.20"}}
    assert plan["rules"]["added"] == [] and plan["rules"]["removed"] == []
    assert plan["rules"]["changed"] and all(
        set(c["fields"]) == {"remote_addresses"} and c["fields"]["remote_addresses"] == {"before": ["10.10.1.10"], "after": ["10.10.1.20"]}
        for c in plan["rules"]["changed"])
    assert list(plan["firewalls"]) == ["fw-int"]
    run(["git", "-C", str(repo), "checkout", "-q", "--", "inventory"])
    res = pipeline(repo, "plan", "-i", "inventory", "--base-ref", "HEAD", "--detailed-exitcode")
    assert res.returncode == 0 and "ocs-pipeline plan: no changes" in res.stdout, res.stdout[-3000:]

    # drift planted by hand on the external firewall fails the drift job, for that firewall only
    run(["ip", "netns", "exec", ext, "nft", "add", "rule", "inet", "ocs_edge", "forward", "tcp", "dport", "23", "accept"])
    res = pipeline(repo, "drift", "-i", "inventory")
    assert res.returncode == 2, res.stdout[-3000:] + res.stderr
    rep, junit = report(repo, "drift")
    assert statuses(rep) == {"fw-ext": "drifted", "fw-int": "in_sync"}
    ext_entry = next(e for e in rep["firewalls"] if e["firewall"] == "fw-ext")
    assert ext_entry["removed"] and "tcp dport 23 accept" in ext_entry["diff"]
    cases = {c.get("name"): c for c in junit.iter("testcase")}
    assert cases["fw-ext"].find("failure") is not None and cases["fw-int"].find("failure") is None
    assert "## fw-ext: drifted" in (repo / "out" / "pipeline" / "drift" / "report.md").read_text()

    # apply converges; the drift job is green again
    res = pipeline(repo, "apply", "-i", "inventory")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert "dport 23" not in run(["ip", "netns", "exec", ext, "nft", "list", "table", "inet", "ocs_edge"]).stdout
    res = pipeline(repo, "drift", "-i", "inventory")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert statuses(report(repo, "drift")[0]) == {"fw-ext": "in_sync", "fw-int": "in_sync"}


def test_drift_refuses_to_run_without_check(tmp_path):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                          str(REPO / "playbooks" / "drift.yml"), "-i", str(REPO / "inventories" / "consolidated")],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert res.returncode != 0 and "run it with --check" in res.stdout
