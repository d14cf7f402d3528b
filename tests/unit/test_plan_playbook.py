"""playbooks/plan.yml through the real ansible-playbook: the plan a pull request gets."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from inventory_loader import REPO

BIN = Path(sys.executable).parent


def plan(cwd, *args):
    """`ansible-playbook ocs.edge_firewall.plan ...` run from ``cwd`` (as a pipeline would)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", PWD=str(cwd))
    return subprocess.run([str(BIN / "ansible-playbook"), "ocs.edge_firewall.plan", *args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def export(inventory, out):
    run = subprocess.run([str(BIN / "ansible-playbook"), str(REPO / "playbooks" / "export_policy.yml"),
                          "-i", str(inventory), "-e", "ocs_policy_export_dir=%s" % out],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return out / "policy.json"


def director_changed(tmp_path, address):
    inv = tmp_path / "inventory"
    shutil.copytree(REPO / "inventories" / "scaled_single_site", inv)
    gv = inv / "group_vars" / "all.yml"
    data = yaml.safe_load(gv.read_text())
    data["ocs_director"] = address
    gv.write_text(yaml.safe_dump(data))
    return inv


def test_unchanged_inventory_plan_is_empty_and_written_under_the_current_directory(tmp_path):
    inv = REPO / "inventories" / "scaled_single_site"
    base = export(inv, tmp_path / "base")
    run = plan(tmp_path, "-i", str(inv), "-e", "ocs_plan_base=base/policy.json")
    assert run.returncode == 0, run.stdout + run.stderr
    out = tmp_path / "out" / "plan"
    doc = json.loads((out / "plan.json").read_text())
    assert doc["changed"] is False and doc["firewalls"] == {} and doc["summary"]["rules_changed"] == 0
    assert "**No changes.**" in (out / "plan.md").read_text()
    assert json.loads((out / "policy.json").read_text()) == json.loads(base.read_text())
    rendered = sorted(str(p.relative_to(out / "rendered")) for p in (out / "rendered").rglob("*.*"))
    assert "fw-int/fw-int.nft" in rendered and "fw-ext/fw-ext.rules" in rendered and "av1/av1.windows.json" in rendered
    assert len(rendered) == len(doc["artifacts"]) == 9


def test_director_change_against_the_base_inventory(tmp_path):
    inv = director_changed(tmp_path, "10.10.1.20")
    run = plan(tmp_path, "-i", str(inv), "-e", "ocs_plan_base=%s" % (REPO / "inventories" / "scaled_single_site"),
               "-e", "ocs_plan_dir=%s" % (tmp_path / "p"))
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert doc["changed"] is True
    assert [c["id"] for c in doc["rules"]["changed"]] == ["central-t18-f5-in", "central-t18-f5-out"]
    assert sorted(doc["firewalls"]) == ["ae1", "ae2", "fw-int"]
    nft_script = (tmp_path / "p" / "rendered" / "fw-int" / "fw-int.nft").read_text()
    assert "ip daddr 10.10.1.20 tcp dport 5061 accept" in nft_script
    assert "10.10.1.10" not in nft_script
    md = (tmp_path / "p" / "plan.md").read_text()
    assert "-\t\tip saddr { 172.16.1.31, 172.16.1.32 } ip daddr 10.10.1.10 tcp dport 5061" in md


def test_missing_base_fails_naming_the_variable(tmp_path):
    run = plan(tmp_path, "-i", str(REPO / "inventories" / "scaled_single_site"))
    assert run.returncode != 0
    assert "variable ocs_plan_base" in run.stdout
    run = plan(tmp_path, "-i", str(REPO / "inventories" / "scaled_single_site"), "-e", "ocs_plan_base=nope.json")
    assert run.returncode != 0 and "no such file or directory: %s/nope.json" % tmp_path in run.stdout
    assert not (tmp_path / "out").exists()
