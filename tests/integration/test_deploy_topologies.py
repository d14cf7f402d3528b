"""No silent partial deployment, on each of the five example topologies (issue #11): the real deploy
playbook, run by the real ansible-playbook, with one network firewall unreachable. Prefix ``ocstopo-``.

Each example inventory (inventories/<topology>) is deployed as it is, except where its firewalls
are: every nftables or iptables firewall is a network namespace of its own, reached with a local
connection whose Python runs inside the namespace (``ip netns exec NS python``, as in
test_pipeline.py); the pfSense firewall (single_site) is a copy of pfSense's factory config.xml
under tmp_path with a reload command that only records it ran (no pfSense box here: pf itself is
not loaded). ansible-playbook runs in a controller namespace of its own with no route anywhere;
the unreachable firewall is reached over SSH at an address there is no route to.

Not proven here: the Windows host firewalls of the examples are turned off (no ocs_host_firewall):
there is no Windows host here; docs/windows.md says what is tested of them.

Checked per topology: the run exits non-zero, summary.json says ``stopped``, the unreachable
firewall is ``not_reached`` and every other ``not_applied``, and nothing changed on any of them
(their namespaces' nftables and iptables rule sets and state files, pfSense's config.xml byte for
byte, no filter reload). For single_site (pfSense, iptables) and multi_site (nftables, iptables)
the deploy is run again with ``-e ocs_allow_partial=true``: the others are applied and converged,
their rule ids are on them, the unreachable one is not reached, the summary says partial; and once
more: the others unchanged (nothing written, pf not reloaded again), the summary still partial.
"""
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from netns_harness import ANSIBLE_PLAYBOOK, REPO, markers, netns_fixture, run
from netns_inventory import example_inventory, interpreter

pytestmark = markers("nftables, iptables", ("ip", "nft", "iptables", "iptables-save", "ssh"))

netns = netns_fixture("ocstopo")

# topology, the firewall made unreachable, whether the run with ocs_allow_partial is checked too
TOPOLOGIES = [
    pytest.param("consolidated", "fw-ext", False, id="consolidated-nftables-down"),
    pytest.param("single_site", "fw-int", True, id="single_site-iptables-down-pfsense-applied"),
    pytest.param("scaled_single_site", "fw-ext", False, id="scaled_single_site-iptables-down"),
    pytest.param("multi_site", "fw-int-central", True, id="multi_site-nftables-down-nftables-iptables-applied"),
    pytest.param("scaled_remote_site", "fw-int-branch1", False, id="scaled_remote_site-nftables-down"),
]

# SSH to an address the controller namespace has no route to: fails at once, as unreachable
UNREACHABLE = {"ansible_connection": "ssh", "ansible_host": "10.77.9.9", "ansible_user": "root",
               "ansible_timeout": 5}


def platforms(topology):
    """{firewall: platform} of the example inventory."""
    hosts = yaml.safe_load((REPO / "inventories" / topology / "hosts.yml").read_text())
    return {name: hv["ocs_firewall_platform"]
            for name, hv in hosts["all"]["children"]["ocs_firewalls"]["hosts"].items()}


def build_lab(netns, tmp_path, topology, down):
    """The example's firewalls: ``down`` unreachable, each Linux one in a namespace, pfSense a
    stand-in -> (inventory, {firewall: (platform, namespace or None)})."""
    lab, hostvars = {}, {}
    for name, platform in platforms(topology).items():
        ns = netns() if platform in ("nftables", "iptables") and name != down else None
        lab[name] = (platform, ns)
        if name == down:
            hostvars[name] = dict(UNREACHABLE)
        elif ns:
            hostvars[name] = {"ansible_connection": "local", "ansible_python_interpreter": interpreter(tmp_path, ns)}
        else:
            hostvars[name] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inv = example_inventory(topology, tmp_path / "inventory", tmp_path, hostvars, drop=("ansible_host",))
    return inv, lab


def deploy(netns, tmp_path, inv, *extra):
    """The deploy playbook in the controller namespace -> (process, {firewall: summary entry}, summary)."""
    report = tmp_path / "report"
    argv = ["ip", "netns", "exec", netns.first, ANSIBLE_PLAYBOOK, str(REPO / "playbooks" / "deploy_edge_firewalls.yml"),
            "-i", str(inv), "-e", "ocs_report_dir=%s" % report] + list(extra)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", PWD=str(tmp_path),
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp_path / "cp"),
               PATH="%s:%s" % (os.path.dirname(sys.executable), os.environ["PATH"]))
    proc = run(argv, check=False, cwd=str(tmp_path), env=env, timeout=600)
    summary = json.loads((report / "summary.json").read_text())
    return proc, {e["firewall"]: e for e in summary["firewalls"]}, summary


def state(tmp_path, name, platform, ns):
    """What a firewall holds: its rule sets (namespace) or config.xml (pfSense), and its state files."""
    files = tmp_path / ("state-%s" % name)
    held = {"files": sorted(str(p.relative_to(files)) for p in files.rglob("*")) if files.exists() else []}
    if platform == "pfsense":
        held["config.xml"] = (files / "conf" / "config.xml").read_bytes()
    else:
        held["nft"] = run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"]).stdout
        held["iptables"] = [line for line in run(["ip", "netns", "exec", ns, "iptables-save"]).stdout.splitlines()
                            if not line.startswith("#")]
    return held


def rule_set_text(held, platform):
    if platform == "pfsense":
        return held["config.xml"].decode()
    return held["nft"] if platform == "nftables" else "\n".join(held["iptables"])


def assert_holds(name, created, held):
    """Every rule id the apply reports created is on the firewall, and every state file it wrote exists.

    ``created``: policy rule ids (central-t13-f1-in) and named items (alias:OCS_central_mgmt,
    nat:central-nonat-perimeter, chain:OCS-EDGE-FWD, table:inet ocs_edge, file:/path); the
    collection's base rules (base:est) and iptables jumps (jump:INPUT) carry no name of their own."""
    rule_ids = [item for item in created if ":" not in item]
    assert rule_ids, (name, created)
    missing = []
    for item in created:
        kind, named, what = item.partition(":")
        if not named:
            kind, what = "rule", item
        if kind == "file":
            missing += [] if Path(what).is_file() else [item]
        elif kind not in ("base", "jump"):
            missing += [] if what in held else [item]
    assert not missing, (name, missing[:5])


def assert_stopped(proc, fws, summary, tmp_path, down, platform):
    out = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode != 0, out
    assert summary["status"] == "stopped", out
    assert fws[down]["outcome"] == "not_reached", fws[down]
    others = [e for name, e in fws.items() if name != down]
    assert {e["outcome"] for e in others} == {"not_applied"}, fws
    assert all(e["created"] for e in others), fws                  # their checks found rules to create
    assert "%s not_reached" % down in proc.stdout
    md = (tmp_path / "report" / "summary.md").read_text()
    assert "| %s | %s | not reached |" % (down, platform) in md
    assert md.startswith("# Deploy: nothing was changed")


def assert_partial(proc, fws, summary, tmp_path, down, lab):
    out = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode != 0, out
    assert summary["status"] == "partial", out
    assert fws[down]["outcome"] == "not_reached"
    assert "deploy partial:" in proc.stdout and "%s not_reached" % down in proc.stdout
    assert "PARTIAL" in (tmp_path / "report" / "summary.md").read_text()
    for name, (platform, ns) in lab.items():
        if name == down:
            continue
        entry = fws[name]
        assert entry["outcome"] == "applied" and entry["converged"] is True, entry
        assert_holds(name, entry["created"], rule_set_text(state(tmp_path, name, platform, ns), platform))


@pytest.mark.parametrize("topology, down, partial", TOPOLOGIES)
def test_unreachable_firewall_stops_the_deploy_unless_partial_is_allowed(netns, tmp_path, topology, down, partial):
    inv, lab = build_lab(netns, tmp_path, topology, down)
    reachable = {name: fw for name, fw in lab.items() if name != down}
    before = {name: state(tmp_path, name, *fw) for name, fw in reachable.items()}

    proc, fws, summary = deploy(netns, tmp_path, inv)
    assert_stopped(proc, fws, summary, tmp_path, down, lab[down][0])
    assert set(fws) == set(lab)
    for name, fw in reachable.items():                                   # nothing changed anywhere
        assert state(tmp_path, name, *fw) == before[name], name

    if not partial:
        return
    proc, fws, summary = deploy(netns, tmp_path, inv, "-e", "ocs_allow_partial=true")
    assert_partial(proc, fws, summary, tmp_path, down, lab)
    applied = {name: state(tmp_path, name, *fw) for name, fw in reachable.items()}

    # a re-run, the firewall still unreachable: the others are in sync (unchanged), still partial
    proc, fws, summary = deploy(netns, tmp_path, inv, "-e", "ocs_allow_partial=true")
    assert proc.returncode != 0 and summary["status"] == "partial", proc.stdout[-6000:]
    assert {name: e["outcome"] for name, e in fws.items()} == dict({down: "not_reached"}, **dict.fromkeys(reachable, "unchanged"))
    for name, (platform, ns) in reachable.items():
        assert state(tmp_path, name, platform, ns) == applied[name], name
        if platform == "pfsense":                                         # written once, pf reloaded once
            assert (tmp_path / ("state-%s" % name) / "reload.log").read_text() == "reload\n"
