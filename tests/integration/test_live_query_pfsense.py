"""The live flow query on pfSense, up to its boundary: config.xml.

The pfSense scenario's stand-in directories (molecule/pfsense/create.yml, run as a plain
playbook into a temporary directory) get the policy by the real deploy playbook; then the
real query playbook, -e live=true, reads config.xml through the module live_rules. A managed
rule deleted from config.xml by hand shows as drift (policy allows, live denies) and a pass
rule added by hand, above the managed block, as the reverse. Not proven: that pf really loaded
config.xml (a real pfSense box is not available here; the reload command is a recorder).
"""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INV = REPO / "molecule" / "pfsense" / "inventory"

pytestmark = pytest.mark.integration


def _play(tmp_path, *argv):
    env = dict(os.environ, MOLECULE_EPHEMERAL_DIRECTORY=str(tmp_path), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    proc = subprocess.run([str(BIN / "ansible-playbook")] + list(argv), capture_output=True, text=True,
                          cwd=str(REPO), env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def _query(tmp_path, dst, dport, proto="tcp"):
    out = tmp_path / ("answer-%d.json" % len(list(tmp_path.glob("answer-*.json"))))
    text = _play(tmp_path, "ocs.edge_firewall.query_flow", "-i", str(INV), "-e", "live=true",
                 "-e", "src=192.0.2.77", "-e", "dst=%s" % dst, "-e", "proto=%s" % proto, "-e", "dport=%s" % dport,
                 "-e", "query_out=%s" % out)
    return json.loads(out.read_text()), text


def _edit(config, change):
    tree = ET.parse(config)
    change(tree.getroot().find("filter"))
    tree.write(config)


def test_live_query_reads_pfsense_config(tmp_path):
    _play(tmp_path, "molecule/pfsense/create.yml", "-i", str(INV))
    _play(tmp_path, "playbooks/deploy_edge_firewalls.yml", "-i", str(INV))
    config = tmp_path / "standin" / "fw-ext" / "cf" / "conf" / "config.xml"

    both, out = _query(tmp_path, "203.0.113.30", 5061)
    hop = both["live"]["hops"][0]
    assert hop["firewall"] == "fw-ext" and hop["source"] == "live" and hop["platform"] == "pfsense"
    assert both["live"]["allowed"] and both["live"]["rules"] == ["central-t18-f3-in"]
    assert "policy and live rules agree on every firewall read (fw-ext)" in out

    def delete(filt):
        for rule in [r for r in filt.findall("rule") if "central-t18-f3-in " in (r.findtext("descr") or "")]:
            filt.remove(rule)
    _edit(config, delete)
    both, out = _query(tmp_path, "203.0.113.30", 5061)
    assert both["policy"]["allowed"] and not both["live"]["allowed"]
    assert "DRIFT on fw-ext: the policy allows it (central-t18-f3-in), the live rules deny it" in out

    def rogue(filt):
        rule = ET.Element("rule")
        for tag, text in (("type", "pass"), ("interface", "wan"), ("ipprotocol", "inet"), ("protocol", "tcp"),
                          ("descr", "opened by hand")):
            ET.SubElement(rule, tag).text = text
        ET.SubElement(ET.SubElement(rule, "source"), "any")
        dst = ET.SubElement(rule, "destination")
        ET.SubElement(dst, "address").text = "203.0.113.30"
        ET.SubElement(dst, "port").text = "8057"
        filt.insert(0, rule)
    _edit(config, rogue)
    both, out = _query(tmp_path, "203.0.113.30", 8057)
    assert not both["policy"]["allowed"] and both["live"]["allowed"]
    assert both["live"]["rules"] == ["unmanaged: opened by hand"]
    assert "DRIFT on fw-ext: the policy denies it (no rule), the live rules allow it (unmanaged: opened by hand)" in out
