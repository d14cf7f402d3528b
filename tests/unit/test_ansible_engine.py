"""The filters and playbooks through the real Ansible engine (ansible-playbook)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inventory_loader import REPO, TOPOLOGIES, example

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy

BIN = Path(sys.executable).parent


def playbook(*args, cwd=REPO):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([str(BIN / "ansible-playbook"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_export_playbook_writes_policy_and_matrix(topology, tmp_path):
    run = playbook("playbooks/export_policy.yml", "-i", "inventories/%s" % topology,
                   "-e", "ocs_policy_export_dir=%s" % tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    policy = json.loads((tmp_path / "policy.json").read_text())
    assert policy == build_policy(example(topology))
    matrix = (tmp_path / "port-matrix.md").read_text()
    for rule in policy["rules"]:
        assert "| %s |" % rule["id"] in matrix
    for name in policy["firewalls"]:
        assert "## %s:" % name in matrix


def _broken_inventory(tmp_path, topology, host, **changes):
    inv = tmp_path / "inv"
    shutil.copytree(REPO / "inventories" / topology, inv)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())

    def walk(group):
        for name, hv in (group.get("hosts") or {}).items():
            if name == host and hv is not None:
                hv.update(changes)
        for child in (group.get("children") or {}).values():
            walk(child or {})
    walk(hosts["all"])
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inv


def test_export_fails_with_host_and_variable(tmp_path):
    inv = _broken_inventory(tmp_path, "single_site", "ae1", ocs_internal_ip="172.16.1.10;drop")
    run = playbook("playbooks/export_policy.yml", "-i", str(inv), "-e", "ocs_policy_export_dir=%s" % (tmp_path / "x"))
    assert run.returncode != 0
    assert "host ae1: ocs_internal_ip: '172.16.1.10;drop' contains characters" in run.stdout + run.stderr
    assert not (tmp_path / "x").exists()


def test_export_names_an_unknown_variable_with_the_nearest_name(tmp_path):
    inv = _broken_inventory(tmp_path, "single_site", "wc1", ocs_edge_role=["web_conferencing_edge"])
    run = playbook("playbooks/export_policy.yml", "-i", str(inv), "-e", "ocs_policy_export_dir=%s" % (tmp_path / "x"))
    assert run.returncode != 0
    assert "host wc1: ocs_edge_role: is not a variable of ocs.edge_firewall; did you mean ocs_edge_roles?" \
        in run.stdout + run.stderr
    assert not (tmp_path / "x").exists()


def test_extra_var_false_string_is_false(tmp_path):
    """-e ocs_allow_nonpublic_av_addresses=false is the string 'false': the opt-out stays off."""
    run = playbook("playbooks/export_policy.yml", "-i", "inventories/scaled_single_site",
                   "-e", "ocs_allow_nonpublic_av_addresses=false", "-e", "ocs_policy_export_dir=%s" % tmp_path)
    assert run.returncode != 0
    assert "203.0.113.51 is not a publicly routable address" in run.stdout + run.stderr


def test_deploy_stops_before_any_firewall_on_bad_input(tmp_path):
    inv = _broken_inventory(tmp_path, "consolidated", "fw-int", ocs_firewall_platform="cisco")
    run = playbook("playbooks/deploy_edge_firewalls.yml", "-i", str(inv))
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "host fw-int: ocs_firewall_platform: 'cisco' is not one of" in out
    assert "Enforce the policy on every firewall" not in out


def test_deploy_syntax_check_every_example():
    for topology in TOPOLOGIES:
        run = playbook("playbooks/deploy_edge_firewalls.yml", "-i", "inventories/%s" % topology, "--syntax-check")
        assert run.returncode == 0, run.stdout + run.stderr
