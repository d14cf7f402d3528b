"""Windows backend through the real Ansible engine, up to the module boundary.

The real deploy playbook and role run under ansible-playbook. The two Windows modules are
replaced by the test-only shadow collections (tests/fixtures/shadow_collections, first in
ANSIBLE_COLLECTIONS_PATH) which record every call, validate win_firewall_rule's arguments
against the installed module's documented argument spec, and keep a modelled firewall per host
in a JSON file (COM form, as the role's reader returns it). No WinRM connection is made.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from inventory_loader import REPO, TOPOLOGIES
from test_windows_rules import CASES, real_module_path

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.windows import DEFAULT_GROUP, normalise

BIN = os.path.dirname(sys.executable)
SHADOW = REPO / "tests" / "fixtures" / "shadow_collections"
GOLDEN = REPO / "tests" / "golden" / "windows"
FIXTURES = REPO / "tests" / "fixtures" / "windows"
DEPLOY = "playbooks/deploy_edge_firewalls.yml"

sys.path.insert(0, str(SHADOW / "ansible_collections" / "community" / "windows" / "plugins" / "action"))
from win_firewall_rule import to_com  # noqa: E402  (the shadow's model of what Windows reports)


def golden(topology, host):
    return json.loads((GOLDEN / ("%s__%s.json" % (topology, host))).read_text())


def exact_state(topology, hosts):
    return {h: [to_com(p) for p in golden(topology, h)] for h in hosts}


RDP = {"Name": "Remote Desktop - User Mode (TCP-In)", "Grouping": "@FirewallAPI.dll,-28752",
       "Description": "Inbound rule for the Remote Desktop service. [TCP 3389]", "Direction": 1, "Action": 1,
       "Enabled": True, "Protocol": 6, "LocalAddresses": "*", "LocalPorts": "3389", "RemoteAddresses": "*",
       "RemotePorts": "*", "Profiles": 2147483647, "ApplicationName": "%SystemRoot%\\system32\\svchost.exe",
       "ServiceName": "termservice"}


class Run:
    def __init__(self, proc, calls, state):
        self.proc, self.calls, self.state = proc, calls, state
        self.out = proc.stdout + proc.stderr

    def modules(self, module):
        return [c for c in self.calls if c["module"].endswith(module)]

    @property
    def reads(self):
        return self.modules("win_powershell")

    @property
    def writes(self):
        return self.modules("win_firewall_rule")

    def recap(self, host):
        m = re.search(r"^%s\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)" % re.escape(host),
                      self.out, re.M)
        assert m, self.out
        return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups())))


def run(tmp_path, *args, state=None, inventory=None, playbook=DEPLOY):
    log, state_file = tmp_path / "calls.jsonl", tmp_path / "state.json"
    log.unlink(missing_ok=True)
    if state is not None:
        state_file.write_text(json.dumps(state))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_COLLECTIONS_PATH="%s:%s" % (SHADOW, REPO / ".cache" / "collections"),
               OCS_SHADOW_LOG=str(log), OCS_SHADOW_STATE=str(state_file),
               OCS_REAL_WIN_FIREWALL_RULE=str(real_module_path()),
               OCS_REAL_WIN_POWERSHELL=str(real_module_path("ansible.windows", "win_powershell")))
    cmd = [os.path.join(BIN, "ansible-playbook"), playbook]
    if inventory:
        cmd += ["-i", str(inventory)]
    proc = subprocess.run(cmd + list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    final = json.loads(state_file.read_text()) if state_file.exists() else {}
    return Run(proc, calls, final)


def deploy(tmp_path, topology, *args, state=None, limit="ocs_windows"):
    return run(tmp_path, "-i", "inventories/%s" % topology, "-e", "ocs_deploy_limit=%s" % limit, *args, state=state)


def hosts_of(topology):
    return [h for t, h in CASES if t == topology]


def norm_state(rules):
    return sorted((normalise(r) for r in rules), key=lambda r: r["name"])


# ------------------------------------------------------------------ whole topologies


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_deploy_from_empty_then_noop(topology, tmp_path):
    hosts = hosts_of(topology)
    first = deploy(tmp_path, topology, state={})
    assert first.proc.returncode == 0, first.out
    # two reads per server: the check before any change (the apply plans against it) and the
    # post-apply verification
    assert sorted(c["host"] for c in first.reads) == sorted(hosts + hosts)
    assert len(first.writes) == sum(len(golden(topology, h)) for h in hosts)
    for h in hosts:
        sent = [c["args"] for c in first.writes if c["host"] == h]
        assert sent == golden(topology, h)          # exactly the reviewed parameter sets, in order
        assert norm_state(first.state[h]) == norm_state(golden(topology, h))
        assert first.recap(h)["changed"] == 2          # the check found drift, the apply changed it
    # the read is the same call in every run, with the group and the desired names
    for c in first.reads:
        assert c["args"]["parameters"]["Group"] == DEFAULT_GROUP
        assert c["args"]["parameters"]["Names"] == [p["name"] for p in golden(topology, c["host"])]
        assert "SupportsShouldProcess" in c["args"]["script"] and c["args"]["depth"] == 4

    second = deploy(tmp_path, topology)
    assert second.proc.returncode == 0, second.out
    assert len(second.calls) == len(hosts) == len(second.reads)      # no-op: one remote call per server
    assert second.writes == []
    for h in hosts:
        assert second.recap(h)["changed"] == 0


def test_noop_remote_calls_on_the_largest_topology(tmp_path):
    sizes = {t: len(hosts_of(t)) for t in TOPOLOGIES}
    largest = max(sizes, key=sizes.get)
    assert largest == "multi_site" and sizes[largest] == 10
    result = deploy(tmp_path, largest, state=exact_state(largest, hosts_of(largest)))
    assert result.proc.returncode == 0, result.out
    assert len(result.calls) == 10 and len(result.reads) == 10 and result.writes == []


# ------------------------------------------------------------------ one server, given states


def single(tmp_path, state, *args):
    return deploy(tmp_path, "single_site", *args, state=state, limit="ae1")


def test_empty_group(tmp_path):
    result = single(tmp_path, {"ae1": [RDP]})
    assert result.proc.returncode == 0, result.out
    assert [c["args"] for c in result.writes] == golden("single_site", "ae1")
    assert result.state["ae1"][0] == RDP


def test_exact_match_does_nothing(tmp_path):
    state = exact_state("single_site", ["ae1"])
    result = single(tmp_path, state)
    assert result.proc.returncode == 0, result.out
    assert len(result.calls) == 1 and len(result.reads) == 1
    assert result.recap("ae1")["changed"] == 0
    assert result.state == state


def test_stale_rule_is_removed(tmp_path):
    state = exact_state("single_site", ["ae1"])
    stale = to_com(dict(golden("single_site", "ae1")[0], name="OCS edge central-t99-f1-in", localport="8080"))
    state["ae1"].append(stale)
    result = single(tmp_path, state)
    assert result.proc.returncode == 0, result.out
    assert [c["args"] for c in result.writes] == [{"name": "OCS edge central-t99-f1-in", "state": "absent"}]
    assert re.search(r'"removed": \[\s*"central-t99-f1-in"\s*\]', result.out), result.out
    assert norm_state(result.state["ae1"]) == norm_state(golden("single_site", "ae1"))


def test_changed_port_is_put_back(tmp_path):
    state = exact_state("single_site", ["ae1"])
    rule = next(r for r in state["ae1"] if r["Name"] == "OCS edge central-t14-f4-in")
    rule["LocalPorts"] = "8443"
    result = single(tmp_path, state)
    assert result.proc.returncode == 0, result.out
    want = next(p for p in golden("single_site", "ae1") if p["name"] == "OCS edge central-t14-f4-in")
    assert [c["args"] for c in result.writes] == [want]
    assert norm_state(result.state["ae1"]) == norm_state(golden("single_site", "ae1"))
    assert "'before': '8443'" in result.out or '"before": "8443"' in result.out
    # the shared result shape (docs/backend-contract.md): the rule's id under updated
    assert re.search(r'"updated": \[\s*"central-t14-f4-in"\s*\]', result.out), result.out


def test_rule_outside_the_group_is_never_touched(tmp_path):
    state = exact_state("single_site", ["ae1"])
    other = to_com(dict(golden("single_site", "ae1")[0], name="Contoso SIP", group="Contoso"))
    state["ae1"] += [RDP, other]
    state["ae1"].append(to_com(dict(golden("single_site", "ae1")[1], name="OCS edge stale")))
    result = single(tmp_path, state)
    assert result.proc.returncode == 0, result.out
    assert [c["args"]["name"] for c in result.writes] == ["OCS edge stale"]
    assert RDP in result.state["ae1"] and other in result.state["ae1"]


def test_check_mode_reports_everything_and_changes_nothing(tmp_path):
    state = exact_state("single_site", ["ae1"])
    del state["ae1"][0]                                                    # missing
    state["ae1"][0]["RemoteAddresses"] = "10.0.0.0/255.0.0.0"              # changed
    state["ae1"].append(to_com(dict(golden("single_site", "ae1")[1], name="OCS edge stale")))   # stale
    state["ae1"].append(RDP)                                               # outside the group
    result = single(tmp_path, state, "--check", "--diff")
    assert result.proc.returncode == 0, result.out
    # the read runs for real (check_mode: false on the task: it only reads); the deploy's check is
    # read + plan (ocs_windows_firewall_plan_only): no win_firewall_rule call at all, one remote call
    assert [c["check_mode"] for c in result.reads] == [False]
    assert result.writes == []
    assert result.state == state                                           # nothing changed
    assert result.recap("ae1")["changed"] >= 1
    for name in ("OCS edge stale", "OCS edge central-t14-f5-in", "OCS edge central-t14-f5-out"):
        assert name in result.out


def test_name_collision_outside_the_group_fails_before_any_change(tmp_path):
    state = exact_state("single_site", ["ae1"])
    del state["ae1"][0]
    state["ae1"].append(to_com(dict(golden("single_site", "ae1")[0], group="Someone else")))
    result = single(tmp_path, state)
    assert result.proc.returncode != 0
    assert result.writes == []
    assert "host ae1: Windows Firewall rule(s) outside group" in result.out
    assert result.state == state


def test_current_state_as_data_skips_the_read(tmp_path):
    current = exact_state("single_site", ["ae1"])["ae1"] + [{"Name": "OCS edge stale", "Grouping": DEFAULT_GROUP}]
    extra = tmp_path / "current.json"
    extra.write_text(json.dumps({"ocs_windows_firewall_current_rules": current,
                                 "ocs_windows_firewall_plan_only": True}))
    result = single(tmp_path, {}, "-e", "@%s" % extra)
    assert result.proc.returncode == 0, result.out
    assert result.calls == []                                              # no remote call at all
    assert "OCS edge stale" in result.out


def test_state_absent_removes_the_group_only(tmp_path):
    state = exact_state("single_site", ["ae1"])
    state["ae1"].append(RDP)
    result = single(tmp_path, state, "-e", "ocs_windows_firewall_state=absent")
    assert result.proc.returncode == 0, result.out
    assert result.state["ae1"] == [RDP]
    assert [c["args"]["parameters"]["Names"] for c in result.reads] == [[], []]     # check, verification


# ------------------------------------------------------------------ validation before any change


def _inventory_without(tmp_path, topology, host, var):
    inv = tmp_path / "inv"
    shutil.copytree(REPO / "inventories" / topology, inv)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())

    def walk(group):
        for name, hv in (group.get("hosts") or {}).items():
            if name == host and hv:
                hv.pop(var, None)
        for child in (group.get("children") or {}).values():
            walk(child or {})
    walk(hosts["all"])
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inv


@pytest.mark.parametrize("host,var", [("av2", "ocs_external_ip"), ("wc1", "ocs_internal_ip")])
def test_windows_server_missing_an_address_fails_before_any_call(tmp_path, host, var):
    inv = _inventory_without(tmp_path, "scaled_single_site", host, var)
    result = run(tmp_path, "-i", str(inv), "-e", "ocs_deploy_limit=ocs_windows", state={})
    assert result.proc.returncode != 0
    assert "host %s: %s: is required" % (host, var) in result.out
    assert result.calls == []                    # not a single Windows call, on any server


def _role(tmp_path, firewall, *args, state=None):
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"win1": {
        "ansible_connection": "winrm", "ansible_port": 5986, "ansible_winrm_transport": "ntlm"}}}}))
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({"ocs_firewall": firewall}))
    return run(tmp_path, "-e", "@%s" % extra, *args, inventory=inv,
               playbook=str(FIXTURES / "role_playbook.yml"), state=state if state is not None else {})


def _ae1_firewall():
    from inventory_loader import example
    from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
    return build_policy(example("single_site"))["firewalls"]["ae1"]


def test_role_alone_enforces_a_given_firewall(tmp_path):
    result = _role(tmp_path, _ae1_firewall())
    assert result.proc.returncode == 0, result.out
    assert [c["args"] for c in result.writes] == golden("single_site", "ae1")


def test_role_refuses_a_rule_without_its_local_address_before_any_call(tmp_path):
    fw = _ae1_firewall()
    fw["rules"][1]["dst"] = None
    result = _role(tmp_path, fw)
    assert result.proc.returncode != 0
    assert "host win1: rule central-t14-f5-out: local address (dst): the host's own address is missing" in result.out
    assert result.calls == []


@pytest.mark.parametrize("change,message", [
    ({"platform": "nftables"}, "variable ocs_firewall must be this host's FIREWALL dict"),
    ({"mode": "network"}, "with platform windows and mode host"),
])
def test_role_refuses_a_non_windows_firewall(tmp_path, change, message):
    fw = dict(_ae1_firewall(), **change)
    result = _role(tmp_path, fw)
    assert result.proc.returncode != 0 and result.calls == []
    assert message in result.out


def test_role_argument_spec_is_enforced(tmp_path):
    result = _role(tmp_path, _ae1_firewall(), "-e", "ocs_windows_firewall_state=gone")
    assert result.proc.returncode != 0 and result.calls == []
    assert "ocs_windows_firewall_state" in result.out


def test_profiles_variable_reaches_the_module(tmp_path):
    result = _role(tmp_path, _ae1_firewall(), "-e", '{"ocs_windows_firewall_profiles": ["public"]}')
    assert result.proc.returncode == 0, result.out
    assert {tuple(c["args"]["profiles"]) for c in result.writes} == {("public",)}
    assert {r["Profiles"] for r in result.state["win1"]} == {4}


# ------------------------------------------------------------------ static checks


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_deploy_playbook_syntax_check_with_windows_inventory(topology):
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "--syntax-check", DEPLOY, "-i",
                           "inventories/%s" % topology], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ocs_windows" in (REPO / "inventories" / topology / "hosts.yml").read_text()


def test_role_is_ansible_lint_clean():
    proc = subprocess.run([os.path.join(BIN, "ansible-lint"), "--profile", "production", "--offline",
                           "roles/windows", str(FIXTURES / "role_playbook.yml")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", NO_COLOR="1"), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_reader_script_is_read_only_and_matches_the_normaliser():
    """No PowerShell here: hold the reader's text to what the controller and the shadow assume."""
    from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.windows import _KEYS
    script = (REPO / "roles" / "windows" / "files" / "read_group.ps1").read_text()
    assert "[CmdletBinding(SupportsShouldProcess)]" in script      # win_powershell runs it in check mode
    assert "$Ansible.Changed = $false" in script
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    for verb in ("Remove(", "Set-NetFirewall", "New-NetFirewall", "Remove-NetFirewall", "netsh", ".Rules.Add",
                 "Invoke-"):
        assert verb not in code, verb
    assert not re.search(r"\$(r|fw)\.\w+\s*=", code)                      # no property of a rule is assigned
    emitted = re.findall(r"^\s+(\w+)\s+= \[(?:string|int|bool)\]\$r\.(\w+)$", script, re.M)
    assert emitted and all(key == prop for key, prop in emitted)
    keys = {key for key, _ignored in emitted}
    com_keys = {k[1] for k in _KEYS.values()}                     # 2nd accepted key = COM property name
    assert keys == com_keys
    assert set(to_com({"name": "x"})) == keys                        # the shadow's model has the same shape
