"""Figure 7, generated (plugins/plugin_utils/diagram.py, filter edge_diagram, module
diagram_render, playbooks/export_policy.yml).

- For every example inventory and site, the diagram's graph is the policy: one edge per rule
  (per server for rules naming several servers outside an array), from and to the right
  nodes in the direction of the network firewall's rule, through that firewall, labelled with
  its figure, protocol and ports; every server, array, VIP, host firewall and network firewall
  of the site is a node with its addresses.
- The export playbook renders SVG and PNG that hold every node and every rule; without
  Graphviz dot it writes the .gv source and warns.
"""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ansible_collections.ocs.edge_firewall.plugins.filter.edge_diagram import edge_diagram
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
from inventory_loader import TOPOLOGIES, load_hostvars

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module", params=TOPOLOGIES + ("extras",))
def policy(request):
    """Every example inventory, and the fixture with every opt-in (Director pool members,
    role ports, the 443 note, extra rules)."""
    if request.param == "extras":
        return build_policy(load_hostvars(REPO / "tests" / "fixtures" / "extras_inventory"))
    return build_policy(load_hostvars(REPO / "inventories" / request.param))


def _network_pfrules(policy, site):
    """rule id -> (firewall name, pfrule) on the site's network firewalls (the enforced form)."""
    out = {}
    for name, fw in policy["firewalls"].items():
        if fw["mode"] == "network" and fw["site"] == site:
            for p in fw["rules"]:
                out.setdefault(p["id"], []).append((name, p))
    return out


def _ports(spec):
    return "any" if spec is None else ",".join(spec)


def test_graph_is_the_policy(policy):
    dep = policy["deployment"]
    for site, d in edge_diagram(policy).items():
        g = d["graph"]
        nodes = {n["id"]: n for n in g["nodes"]}
        rules = [r for r in policy["rules"] if r["site"] == site]
        assert {e["rule"] for e in g["edges"]} == {r["id"] for r in rules}
        enforced = _network_pfrules(policy, site)
        for r in rules:
            mine = [e for e in g["edges"] if e["rule"] == r["id"]]
            per = [nodes[e["src"]] if nodes[e["src"]]["zone"] == "perimeter" else nodes[e["dst"]] for e in mine]
            # the rule's local addresses, each on exactly one of its edges' servers/arrays
            for a in r["local_addresses"] or []:
                assert sum(a in n["addresses"] for n in per) == 1, (r["id"], a)
            assert set(r["servers"]) <= {s for n in per for s in n["servers"]}, r["id"]
            for e in mine:
                remote = nodes[e["dst"] if nodes[e["src"]]["zone"] == "perimeter" else e["src"]]
                if r["firewall"] == "external":
                    assert remote["kind"] == "internet"
                elif r["remote_addresses"] is None:
                    assert remote["kind"] == "any" and remote["addresses"] == [], r["id"]
                else:
                    assert set(r["remote_addresses"]) <= set(remote["addresses"]), r["id"]
                    if set(r["remote_addresses"]) & {dep["director"], dep["next_hop"]}:
                        assert remote["kind"] in ("director", "next_hop")
                for fwname, p in enforced.get(r["id"], []):
                    # direction and ports as the firewall enforces them
                    src_zone = nodes[e["src"]]["zone"]
                    assert src_zone == p["src_zone"], (r["id"], src_zone, p["src_zone"])
                    assert (e["sport"], e["dport"], e["protocol"]) == (p["sport"], p["dport"], p["protocol"])
                    assert "fw_" + fwname.replace("-", "_") in e["via"]
                tag = "%d" % r["figure"] if r["figure"] is not None else ("note" if r.get("note") else "extra")
                assert e["label"].startswith("%s: %s %s" % (tag, r["protocol"].upper(), _ports(e["dport"])))
                if e["sport"] is not None:
                    assert e["label"].endswith("from " + _ports(e["sport"]))
        _nodes_are_the_deployment(policy, site, g)


def _nodes_are_the_deployment(policy, site, g):
    dep = policy["deployment"]
    per = [n for n in g["nodes"] if n["zone"] == "perimeter"]
    for name, srv in dep["servers"].items():
        if srv["site"] != site:
            continue
        holders = [n for n in per if name in n["servers"]]
        assert len(holders) == 1, name
        addrs = set(srv["internal"].values()) | set(srv["external"].values())
        assert addrs <= set(holders[0]["addresses"])
        assert holders[0]["host_firewalls"].get(name) == srv["host_firewall"]
        assert any(name in line for line in [holders[0]["title"]] + holders[0]["lines"])
        if srv["host_firewall"]:
            assert any("host firewall: %s" % srv["host_firewall"] in line for line in holders[0]["lines"])
    for aname, arr in dep["arrays"].items():
        holders = [n for n in per if n["kind"] == "array" and n["title"] == aname]
        if any(s["array"] == aname and s["site"] == site for s in dep["servers"].values()):
            assert len(holders) == 1
            for vip in (arr["internal_vip"], arr["external_vip"]):
                if vip:
                    assert vip in holders[0]["addresses"] and any(vip in line for line in holders[0]["lines"])
    fws = {n["title"] for n in g["nodes"] if n["kind"] == "firewall"}
    assert fws == {n for n, f in policy["firewalls"].items() if f["mode"] == "network" and f["site"] == site}
    nexthop = dep["director"] or dep["next_hop"]
    assert any(nexthop in n["addresses"] for n in g["nodes"] if n["zone"] == "internal")


def test_dot_source_holds_every_node_and_edge(policy):
    for site, d in edge_diagram(policy).items():
        for n in d["graph"]["nodes"]:
            assert "    %s [label=<" % n["id"] in d["dot"]
        for e in d["graph"]["edges"]:
            assert '"%s"' % e["label"] in d["dot"] and e["rule"] in d["dot"]


def _export(tmp_path, inventory, env=None):
    out = tmp_path / inventory
    proc = subprocess.run([str(BIN / "ansible-playbook"), "playbooks/export_policy.yml", "-i",
                           str(REPO / "inventories" / inventory), "-e", "ocs_policy_export_dir=%s" % out],
                          capture_output=True, text=True, cwd=str(REPO),
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", **(env or {})))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc.stdout + proc.stderr


def test_export_renders_svg_and_png(tmp_path):
    out, _log = _export(tmp_path, "multi_site")
    policy = json.loads((out / "policy.json").read_text())
    for site in ("central", "branch1"):
        assert (out / ("figure7-%s.png" % site)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        svg = ET.parse(out / ("figure7-%s.svg" % site)).getroot()
        texts = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
        links = " ".join(a.get("{http://www.w3.org/1999/xlink}title") or "" for a in svg.iter("{http://www.w3.org/2000/svg}a"))
        for n in edge_diagram(policy)[site]["graph"]["nodes"]:
            assert n["title"] in texts, n["title"]
        for r in policy["rules"]:
            if r["site"] == site:
                assert r["id"] in links, r["id"]
    again = subprocess.run([str(BIN / "ansible-playbook"), "playbooks/export_policy.yml", "-i",
                            str(REPO / "inventories" / "multi_site"), "-e", "ocs_policy_export_dir=%s" % out],
                           capture_output=True, text=True, cwd=str(REPO), env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert "changed=0" in again.stdout, again.stdout


def test_without_dot_the_source_is_written_with_a_warning(tmp_path):
    nodot = tmp_path / "bin"
    nodot.mkdir()
    for d in ("/usr/local/bin", "/usr/bin", "/bin"):
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if f != "dot" and not (nodot / f).exists():
                (nodot / f).symlink_to(os.path.join(d, f))
    out, log = _export(tmp_path, "consolidated", env={"PATH": "%s:%s" % (BIN, nodot)})
    assert (out / "figure7-central.gv").read_text().startswith("digraph figure7 {")
    assert not (out / "figure7-central.svg").exists() and not (out / "figure7-central.png").exists()
    assert "Graphviz dot is not installed here" in log
