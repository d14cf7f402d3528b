"""The Aerleon export, rendered by the real Aerleon (aclgen) for every example firewall."""
import ipaddress
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inventory_loader import REPO, TOPOLOGIES, example, load_hostvars

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.aerleon_export import (
    TARGET_SUFFIX, acl_name, aerleon_files)
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy

ACLGEN = Path(sys.executable).parent / "aclgen"
pytestmark = pytest.mark.skipif(not ACLGEN.exists() and not shutil.which("aclgen"),
                                reason="needs Aerleon (requirements-dev.txt)")


def write(files, root):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def aclgen(root):
    """Render root/policies with root/def into root/acls; the process and the outputs."""
    argv = [str(ACLGEN) if ACLGEN.exists() else "aclgen", "--base_directory", str(root / "policies"),
            "--definitions_directory", str(root / "def"), "--output_directory", str(root / "acls")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "error" not in proc.stderr.lower(), proc.stderr[-3000:]
    return {p.name: p.read_text() for p in (root / "acls").iterdir()}


def _forms(addr):
    """How an address or network shows in a rendering: CIDR, or address and netmask (ASA, FortiGate)."""
    net = ipaddress.ip_network(addr)
    return {addr, "%s %s" % (net.network_address, net.netmask)}


# How a rule id shows in each rendered platform.
ID_MARK = {
    "nftables": 'chain {id} {{',
    "iptables": '-A F_{id} -m comment',
    "ciscoasa": 'remark {id}\n',
    "srx": 'policy {id} {{',
    "paloalto": '<entry name="{id}">',
    "fortigate": 'set name "{id}"',
}


EXTRAS = REPO / "tests" / "fixtures" / "extras_inventory"


def hostvars_of(case):
    return load_hostvars(EXTRAS) if case == "extras" else example(case)


@pytest.mark.parametrize("topology", TOPOLOGIES + ("extras",))
def test_aclgen_renders_every_firewall_for_every_target(topology, tmp_path):
    policy = build_policy(hostvars_of(topology))
    write(aerleon_files(policy), tmp_path)
    out = aclgen(tmp_path)
    for name, fw in policy["firewalls"].items():
        if fw["platform"] == "windows":
            assert name not in out
            continue
        targets = TARGET_SUFFIX if fw["mode"] == "network" else ("nftables", "iptables")
        for target in targets:
            text = out[name + TARGET_SUFFIX[target]]
            for p in fw["rules"]:
                mark = ID_MARK[target].format(id=p["id"])
                if target == "iptables" and fw["mode"] == "host":
                    mark = "_%s -m comment" % p["id"]
                assert mark in text, (name, target, p["id"])
                if p.get("extra") or p.get("note"):
                    assert p["comment"] in text or target in ("ciscoasa", "iptables", "srx")
                    assert ("extra rule" if p.get("extra") else "note") in text
                else:
                    assert "table %d figure %d" % (p["table"], p["figure"]) in text
                for addr in (p["src"] or []) + (p["dst"] or []):
                    assert any(form in text for form in _forms(addr)), (name, target, addr)
        if fw["mode"] == "network":
            for zone in {p["src_zone"] for p in fw["rules"]}:
                assert "access-list %s extended permit" % acl_name(zone) in out[name + ".asa"]


def test_terms_carry_ports_addresses_and_interfaces():
    policy = build_policy(example("consolidated"))
    text = aerleon_files(policy)["policies/pol/fw-ext.yaml"]
    doc = yaml.safe_load(text)
    forward = [f for f in doc["filters"] if f["header"]["targets"].get("nftables") == "inet forward"][0]
    rtp_out = [t for t in forward["terms"] if t["name"] == "central-t12-f9-out"][0]
    assert rtp_out["source-port"] == "OCS_TCP_50000_59999"
    assert "destination-port" not in rtp_out and "destination-address" not in rtp_out
    assert (rtp_out["source-interface"], rtp_out["destination-interface"]) == ("eth1", "eth0")
    nets = yaml.safe_load(aerleon_files(policy)["def/networks.yaml"])["networks"]
    assert nets["OCS_10_10_1_10"]["values"][0]["comment"].startswith("Director")
    svcs = yaml.safe_load(aerleon_files(policy)["def/services.yaml"])["services"]
    assert svcs["OCS_UDP_50000_59999"] == [{"port": "50000-59999", "protocol": "udp"}]


def test_export_playbook_writes_the_aerleon_files(tmp_path):
    bin_dir = Path(sys.executable).parent
    run = subprocess.run([str(bin_dir / "ansible-playbook"), "playbooks/export_policy.yml", "-i",
                          "inventories/multi_site", "-e", "ocs_policy_export_dir=%s" % tmp_path],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    policy = json.loads((tmp_path / "policy.json").read_text())
    for rel, text in aerleon_files(policy).items():
        assert (tmp_path / "aerleon" / rel).read_text() == text
    out = aclgen(tmp_path / "aerleon")
    assert "fw-ext-central.srx" in out


def test_extras_are_marked_in_the_aerleon_terms():
    files = aerleon_files(build_policy(load_hostvars(EXTRAS)))
    doc = yaml.safe_load(files["policies/pol/fw-ext.yaml"])
    terms = {t["name"]: t for f in doc["filters"] for t in f["terms"]}
    assert terms["extra-central-dns"]["comment"] == "ocs extra-central-dns extra rule, not on the seed page DNS"
    assert terms["extra-central-dns"]["destination-port"] == "OCS_UDP_53"
    assert terms["central-t9-note443-ext"]["source-address"] == "OCS_NET_10_10_0_0_16"
    assert terms["central-t11-f6-in"]["destination-port"] == "OCS_TCP_444"
    fw_int = yaml.safe_load(files["policies/pol/fw-int.yaml"])
    f5 = [t for f in fw_int["filters"] for t in f["terms"] if t["name"] == "central-t10-f5-out"][0]
    assert f5["source-address"] == "OCS_10_10_1_10 OCS_10_10_1_11 OCS_10_10_1_12"
    nets = yaml.safe_load(files["def/networks.yaml"])["networks"]
    assert "Director pool member" in nets["OCS_10_10_1_11"]["values"][0]["comment"]
