"""The policy_export action (playbooks/export_policy.yml) through the real Ansible engine:
what it writes, that it writes only what changed, prunes only its own stale files, and
honours check mode, diff mode and a controller without Graphviz."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inventory_loader import REPO, example

from ansible.plugins.filter.core import to_nice_json

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.export import export_texts, policy_json, stale_files
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy

BIN = Path(sys.executable).parent


def export(inventory, dest, *extra, env=None):
    env = dict(env or os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([str(BIN / "ansible-playbook"), "playbooks/export_policy.yml", "-i", "inventories/%s" % inventory,
                           "-e", "ocs_policy_export_dir=%s" % dest, *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def recap_changed(run):
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("localhost")][-1]
    return int(line.split("changed=")[1].split()[0])


@pytest.mark.parametrize("topology", ["multi_site", "consolidated"])
def test_policy_json_is_what_to_nice_json_writes(topology):
    """The action writes policy.json itself; it must stay byte-equal to the filter route."""
    policy = build_policy(example(topology))
    assert policy_json(policy) == to_nice_json(policy, indent=2) + "\n"


def test_owned_patterns_do_not_cross_folders(tmp_path):
    for rel in ("aerleon/policies/pol/fw-old.yaml", "aerleon/policies/pol/keep/fw.yaml", "figure7-x.svg",
                "notes/figure7-x.svg", "aerleon/def/mine.txt", "policy.json.bak"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert stale_files(str(tmp_path), ["aerleon", "figures", "policy"], keep=set()) == [
        "aerleon/policies/pol/fw-old.yaml", "figure7-x.svg"]


def test_second_export_changes_nothing_and_renders_nothing(tmp_path):
    first = export("multi_site", tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    texts = export_texts(build_policy(example("multi_site")))
    for rel, text in texts.items():
        assert (tmp_path / rel).read_text() == text, rel
    if shutil.which("dot"):
        assert (tmp_path / "figure7-central.svg").read_bytes().startswith(b"<?xml")
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    second = export("multi_site", tmp_path)
    assert second.returncode == 0 and recap_changed(second) == 0, second.stdout
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamps


def test_a_removed_firewall_loses_its_files_and_nothing_else(tmp_path):
    assert export("multi_site", tmp_path).returncode == 0
    (tmp_path / "README.txt").write_text("the team's own file")
    (tmp_path / "aerleon" / "policies" / "pol" / "site-notes.txt").write_text("also theirs")
    run = export("single_site", tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    single = build_policy(example("single_site"))
    left = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    pol = {rel for rel in left if rel.startswith("aerleon/policies/pol/") and rel.endswith(".yaml")}
    assert pol == {"aerleon/policies/pol/%s.yaml" % n for n in single["firewalls"]
                   if single["firewalls"][n]["mode"] == "network" or single["firewalls"][n]["platform"] in ("nftables", "iptables")}
    assert not any(rel.startswith("figure7-branch1") for rel in left)
    assert {"README.txt", "aerleon/policies/pol/site-notes.txt"} <= left
    assert json.loads((tmp_path / "policy.json").read_text()) == single


def test_check_mode_writes_nothing_and_reports_the_files(tmp_path):
    dest = tmp_path / "out"
    run = export("single_site", dest, "--check", "-v")
    assert run.returncode == 0, run.stdout + run.stderr
    assert not dest.exists()
    assert recap_changed(run) == 1
    assert "policy.json" in run.stdout and "port-matrix.md" in run.stdout


def test_diff_shows_the_changed_matrix_and_names_large_files(tmp_path):
    assert export("single_site", tmp_path).returncode == 0
    matrix = tmp_path / "port-matrix.md"
    matrix.write_text(matrix.read_text().replace("| central-t14-f5-out |", "| edited-by-hand |"))
    run = export("single_site", tmp_path, "--check", "--diff")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "-| edited-by-hand |" in run.stdout and "+| central-t14-f5-out |" in run.stdout
    assert "edited-by-hand" in matrix.read_text()  # check mode left it


def test_without_graphviz_the_sources_are_written_with_a_warning(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(sys.executable, bindir / "python3")
    env = dict(os.environ, PATH="%s:%s" % (bindir, BIN))  # no /usr/bin: no dot
    run = export("single_site", tmp_path / "out", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Graphviz dot is not installed here" in run.stdout + run.stderr
    assert (tmp_path / "out" / "figure7-central.gv").exists()
    assert not list((tmp_path / "out").glob("figure7-*.svg"))


def test_templates_and_vaulted_values_are_resolved_as_ansible_resolves_them(tmp_path):
    """host_view reads plain values raw (fast path); a template or a vaulted value must still
    come out as Ansible resolves it, the same in policy.json as with the inventory's literals."""
    inv = tmp_path / "inv"
    shutil.copytree(REPO / "inventories" / "single_site", inv)
    (tmp_path / "pass").write_text("s3cret\n")
    vaulted = subprocess.run([str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(tmp_path / "pass"),
                              "203.0.113.11", "--name", "ocs_external_ip"], capture_output=True, text=True, check=True).stdout
    hosts = (inv / "hosts.yml").read_text()
    hosts = hosts.replace("          ocs_internal_ip: 172.16.1.10\n",
                          "          ocs_internal_ip: \"{{ ae_net }}.{{ 5 * 2 }}\"\n          ae_net: 172.16.1\n")
    hosts = hosts.replace("          ocs_external_ip: 203.0.113.11\n",
                          "".join("          %s\n" % line for line in vaulted.strip().splitlines()))
    (inv / "hosts.yml").write_text(hosts)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_VAULT_PASSWORD_FILE=str(tmp_path / "pass"))
    run = subprocess.run([str(BIN / "ansible-playbook"), "playbooks/export_policy.yml", "-i", str(inv),
                          "-e", "ocs_policy_export_dir=%s" % (tmp_path / "out"), "-e", "ocs_next_hop={{ '10.10.1.' ~ 20 }}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "{{" in hosts and "$ANSIBLE_VAULT" in hosts
    written = json.loads((tmp_path / "out" / "policy.json").read_text())
    expected = build_policy(example("single_site"))
    assert json.dumps(written, indent=1, sort_keys=True).splitlines() == json.dumps(expected, indent=1, sort_keys=True).splitlines()


@pytest.mark.parametrize("topology", ["multi_site", "scaled_remote_site"])
def test_forked_export_is_the_serial_export(topology):
    policy = build_policy(example(topology))
    assert export_texts(policy, workers=3) == export_texts(policy, workers=1)


def test_jobs_run_in_children_and_a_child_failure_reaches_the_parent(monkeypatch):
    from ansible_collections.ocs.edge_firewall.plugins.plugin_utils import export as export_mod
    policy = build_policy(example("multi_site"))
    real = export_mod._run_job
    monkeypatch.setattr(export_mod, "_run_job", lambda pol, job: dict(real(pol, job), **{"pid-%s" % job[0]: str(os.getpid())}))
    pids = {v for k, v in export_texts(policy, workers=2).items() if k.startswith("pid-")}
    assert str(os.getpid()) in pids and len(pids) == 2

    def broken(pol, job):
        if job[0] == "policy" and os.getpid() != parent:
            raise ValueError("boom in the child")
        return real(pol, job)
    parent = os.getpid()

    def policy_to_the_child(jobs, workers):
        return [[j for _w, j in jobs if j[0] != "policy"], [("policy",)]]
    monkeypatch.setattr(export_mod, "_share_out", policy_to_the_child)
    monkeypatch.setattr(export_mod, "_run_job", broken)
    with pytest.raises(RuntimeError, match="boom in the child"):
        export_texts(policy, workers=2)


def test_an_unwritable_folder_is_a_clear_error_naming_the_variable(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    run = export("single_site", tmp_path / "a-file" / "out")
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "dest (ocs_policy_export_dir) %s: the export failed" % (tmp_path / "a-file" / "out") in out, out
    assert "Traceback" not in out
