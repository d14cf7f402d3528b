"""pfsense_ruleset module as Ansible runs it, against a directory standing in for the pfSense host.

The module is executed as a program with its arguments (what Ansible does on the host), then the
role through the real deploy playbook (ansible-playbook, local connection). The reload command
is a recorder script; a failing one proves the error path. Also: ansible-doc and ansible-lint.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_pfsense_helpers import FIXTURES, REPO, assert_matches_policy, firewall

BIN = Path(sys.executable).parent
MODULE = REPO / "plugins" / "modules" / "pfsense_ruleset.py"
COLLECTIONS = REPO / ".cache" / "collections"

RECORDER = """#!/bin/sh
echo "reload $(date +%s)" >> "{log}"
if [ -e "{fail}" ]; then
  echo "There were error(s) loading the rules: /tmp/rules.debug:7: syntax error" >&2
  exit 2
fi
echo "filter reloaded"
"""


@pytest.fixture
def standin(tmp_path):
    root = tmp_path / "pfsense"
    (root / "cf" / "conf").mkdir(parents=True)
    (root / "tmp").mkdir()
    shutil.copyfile(FIXTURES / "config.crowded.xml", root / "cf" / "conf" / "config.xml")
    (root / "tmp" / "config.cache").write_text("cache")
    recorder = root / "rc.filter_configure_sync"
    recorder.write_text(RECORDER.format(log=root / "reload.log", fail=root / "reload.fail"))
    recorder.chmod(0o755)
    return root


def _args(root, fw, **extra):
    args = {"firewall": firewall("crowded", fw), "name": fw,
            "config_path": str(root / "cf" / "conf" / "config.xml"),
            "backup_dir": str(root / "cf" / "conf" / "backup"),
            "cache_file": str(root / "tmp" / "config.cache"),
            "lock_file": str(root / "tmp" / "config.lock"),
            "reload_command": str(root / "rc.filter_configure_sync")}
    args.update(extra)
    return args


def run_module(tmp_path, args, check=False, diff=False):
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    proc = subprocess.run([sys.executable, str(MODULE), str(path)], capture_output=True, text=True, env=env,
                          timeout=60)
    out = json.loads(proc.stdout)
    return out


def _reloads(root):
    log = root / "reload.log"
    return log.read_text().count("reload") if log.exists() else 0


def _backups(root):
    backup = root / "cf" / "conf" / "backup"
    return sorted(backup.glob("config-*.xml")) if backup.exists() else []


def test_check_mode_writes_nothing_then_apply_then_no_op(standin, tmp_path):
    conf = standin / "cf" / "conf" / "config.xml"
    original = conf.read_bytes()
    out = run_module(tmp_path, _args(standin, "fw-int"), check=True, diff=True)
    assert out["changed"] and out["created"] and not out.get("failed")
    assert "alias OCS_" not in out["diff"][0]["before"] and "port 5061" in out["diff"][0]["after"]
    # NAT and default deny are in check mode, the diff and the ids too
    assert "no nat on opt1 inet from any to OCS_" in out["diff"][0]["after"]
    assert "# outbound NAT mode automatic" in out["diff"][0]["before"] and "mode hybrid" in out["diff"][0]["after"]
    assert {"nat:central-nonat-perimeter", "nat:central-nonat-internal", "central-deny-internal-perimeter"} \
        <= set(out["created"]) and "nat:mode" in out["updated"]
    assert conf.read_bytes() == original
    assert _reloads(standin) == 0 and _backups(standin) == []
    assert (standin / "tmp" / "config.cache").exists()

    out = run_module(tmp_path, _args(standin, "fw-int"))
    assert out["changed"] and not out.get("failed"), out
    assert _reloads(standin) == 1
    assert [p.read_bytes() for p in _backups(standin)] == [original]
    assert out["backup"] == str(_backups(standin)[0])
    assert not (standin / "tmp" / "config.cache").exists()
    assert out["reload"]["rc"] == 0 and "filter reloaded" in out["reload"]["stdout"]
    written = conf.read_bytes()
    assert_matches_policy(written, firewall("crowded", "fw-int"))

    out = run_module(tmp_path, _args(standin, "fw-int"), diff=True)
    assert not out["changed"] and (out["created"], out["removed"], out["updated"]) == ([], [], [])
    assert "diff" not in out          # the contract: a diff whenever something differs
    assert conf.read_bytes() == written
    assert _reloads(standin) == 1 and len(_backups(standin)) == 1


def test_failed_reload_restores_the_previous_file_and_says_so(standin, tmp_path):
    conf = standin / "cf" / "conf" / "config.xml"
    original = conf.read_bytes()
    (standin / "reload.fail").write_text("")
    out = run_module(tmp_path, _args(standin, "fw-ext"))
    assert out.get("failed")
    assert "syntax error" in out["msg"] and "rc 2" in out["msg"]
    assert out["reload"]["rc"] == 2 and out["restore_reload"]["rc"] == 2
    newest = _backups(standin)[-1]
    assert newest.read_bytes() == original and str(newest) in out["msg"]
    assert "was restored from the backup" in out["msg"] and "failed too" in out["msg"]
    assert conf.read_bytes() == original          # the previous file is back in place
    assert _reloads(standin) == 2                 # the failed one, then the restored file
    # fixed reload, re-run: the policy is written again and loaded once
    (standin / "reload.fail").unlink()
    out = run_module(tmp_path, _args(standin, "fw-ext"))
    assert out["changed"] and not out.get("failed") and _reloads(standin) == 3


def test_wrong_structures_are_named_errors_not_tracebacks(standin, tmp_path):
    conf = standin / "cf" / "conf" / "config.xml"
    original = conf.read_bytes()
    cases = [(["not", "a", "dict"], "must be a dict"),
             (dict(firewall("crowded", "fw-ext"), rules="x"), "rules must be a list"),
             (dict(firewall("crowded", "fw-ext"), rules=["x"]), r"rules[0] must be a dict"),
             (dict(firewall("crowded", "fw-ext"), interfaces=["wan"]), "must be a dict zone"),
             (dict(firewall("crowded", "fw-ext"), interfaces={"internet": "WAN", "perimeter": "opt1"}),
              "lower case: 'wan'")]
    for fw_value, message in cases:
        out = run_module(tmp_path, dict(_args(standin, "fw-ext"), firewall=fw_value))
        assert out.get("failed") and message in out["msg"] and "Traceback" not in out["msg"], out
        assert "nothing was changed" in out["msg"]
    bad = run_module(tmp_path, _args(standin, "fw-ext", username="ops\x07bell"))
    assert bad.get("failed") and "U+0007" in bad["msg"] and "username" in bad["msg"]
    assert conf.read_bytes() == original and _reloads(standin) == 0


def test_invalid_input_changes_nothing(standin, tmp_path):
    conf = standin / "cf" / "conf" / "config.xml"
    original = conf.read_bytes()
    args = _args(standin, "fw-ext")
    args["firewall"]["interfaces"]["perimeter"] = "opt9"
    out = run_module(tmp_path, args)
    assert out.get("failed") and "opt9" in out["msg"] and "nothing was changed" in out["msg"]
    assert conf.read_bytes() == original and _reloads(standin) == 0
    out = run_module(tmp_path, _args(standin, "fw-ext", config_path=str(standin / "missing.xml")))
    assert out.get("failed") and "does not exist" in out["msg"]


def test_state_absent_removes_every_managed_item(standin, tmp_path):
    run_module(tmp_path, _args(standin, "fw-int"))
    out = run_module(tmp_path, _args(standin, "fw-int", state="absent"))
    assert out["changed"] and out["removed"]
    text = (standin / "cf" / "conf" / "config.xml").read_text()
    assert "[ocs.edge_firewall]" not in text and "<name>OCS_" not in text
    assert _reloads(standin) == 2


def _playbook(*args):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([str(BIN / "ansible-playbook"), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_deploy_playbook_with_the_role(tmp_path):
    """The real main job: check/diff reports, the run writes once per firewall, the re-run changes nothing."""
    for fw in ("fw-ext", "fw-int"):
        (tmp_path / fw / "conf").mkdir(parents=True)
        shutil.copyfile(FIXTURES / "config.crowded.xml", tmp_path / fw / "conf" / "config.xml")
    recorder = tmp_path / "reload"
    recorder.write_text('#!/bin/sh\necho "$(date +%s)" >> "$(dirname "$0")/reload.log"\n')
    recorder.chmod(0o755)
    base = "%s/{{ inventory_hostname }}" % tmp_path
    extra = ["-i", str(FIXTURES / "inventory"),
             "-e", "ansible_connection=local", "-e", "ansible_python_interpreter=%s" % sys.executable,
             "-e", "ocs_pfsense_config_path=%s/conf/config.xml" % base,
             "-e", "ocs_pfsense_backup_dir=%s/conf/backup" % base,
             "-e", "ocs_pfsense_cache_file=%s/config.cache" % base,
             "-e", "ocs_pfsense_lock_file=%s/config.lock" % base,
             "-e", "ocs_pfsense_reload_command=%s" % recorder]
    check = _playbook("playbooks/deploy_edge_firewalls.yml", "--check", "--diff", *extra)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "+pass on opt1 inet tcp from OCS_" in check.stdout
    assert not (tmp_path / "reload.log").exists()
    run = _playbook("playbooks/deploy_edge_firewalls.yml", *extra)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fw-ext                     : ok=" in run.stdout
    assert len((tmp_path / "reload.log").read_text().split()) == 2
    for fw in ("fw-ext", "fw-int"):
        assert_matches_policy((tmp_path / fw / "conf" / "config.xml").read_bytes(), firewall("crowded", fw))
    # the written rules are the packet-filter rules of the exported policy (export_policy.yml)
    export = _playbook("playbooks/export_policy.yml", "-i", str(FIXTURES / "inventory"),
                       "-e", "ocs_policy_export_dir=%s" % (tmp_path / "export"))
    assert export.returncode == 0, export.stdout + export.stderr
    exported = json.loads((tmp_path / "export" / "policy.json").read_text())
    for fw in ("fw-ext", "fw-int"):
        assert exported["firewalls"][fw]["platform"] == "pfsense"
        assert_matches_policy((tmp_path / fw / "conf" / "config.xml").read_bytes(), exported["firewalls"][fw])
    again = _playbook("playbooks/deploy_edge_firewalls.yml", *extra)
    assert again.returncode == 0
    for line in again.stdout.splitlines():
        if line.startswith(("fw-ext ", "fw-int ")):
            assert "changed=0" in line, line
    assert len((tmp_path / "reload.log").read_text().split()) == 2


def test_ansible_doc_renders_the_module():
    proc = subprocess.run([str(BIN / "ansible-doc"), "-t", "module", "ocs.edge_firewall.pfsense_ruleset"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert proc.returncode == 0, proc.stderr
    assert "reload_command" in proc.stdout and "/etc/rc.filter_configure_sync" in proc.stdout


@pytest.mark.skipif(not (BIN / "ansible-lint").exists(), reason="ansible-lint not installed")
def test_ansible_lint_accepts_the_role_and_the_molecule_scenario():
    proc = subprocess.run([str(BIN / "ansible-lint"), "--profile", "production", "--offline", "-q",
                           "roles/pfsense", "molecule/pfsense"], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, ANSIBLE_NOCOLOR="1", NO_COLOR="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
