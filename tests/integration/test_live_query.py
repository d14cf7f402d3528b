"""The flow query against what Linux firewalls enforce (module live_rules, playbook
query_flow.yml -e live=true), in fresh network namespaces (prefix ``ocslive-``).

For each backend, the real deploy playbook puts a firewall of the multi_site example in a
namespace (fw-ext-central: nftables, fw-ext-branch1: iptables); then drift is planted by
hand: a required rule deleted, a rogue allow rule inserted. The real query playbook, by
collection name, must then say for the deleted rule's flow: policy allowed, live denied
(DRIFT), and for the rogue flow: policy denied, live allowed by the rogue rule, while an
untouched flow still agrees. Needs root, ip, nft, iptables.
"""
import json
import re
import sys

from netns_harness import ANSIBLE_PLAYBOOK, REPO, deploy_argv, markers, netns_fixture, run, run_ansible

pytestmark = markers("nftables/iptables", ("ip", "nft", "iptables"))

netns = netns_fixture("ocslive")
INTERNET = "192.0.2.77"

CASES = {
    "nftables": {"fw": "fw-ext-central",
                 "delete": ("central-t20-f11-in", ("udp", "203.0.113.51", 50000)),
                 "rogue": ("tcp", "203.0.113.30", 8057),
                 "kept": ("central-t18-f3-in", ("tcp", "203.0.113.30", 5061))},
    "iptables": {"fw": "fw-ext-branch1",
                 "delete": ("branch1-t21-f1-in", ("tcp", "198.51.100.5", 443)),
                 "rogue": ("tcp", "198.51.100.11", 5062),
                 "kept": ("branch1-t22-f6-in", ("tcp", "198.51.100.11", 443))},
}


def _deploy(ns, fw, tmp_path):
    # persisted files under tmp_path, never the machine's /etc; namespaces have no init to enable
    doc, proc = run_ansible(deploy_argv(ns, "multi_site", fw, [
        "ocs_linux_become=false", "ocs_nftables_boot_loader=false", "ocs_iptables_boot_loader=false",
        "ocs_nftables_persist_path=%s" % (tmp_path / "ocs_edge.nft"),
        "ocs_nftables_persist_conf=%s" % (tmp_path / "nftables.conf"),
        "ocs_iptables_persist_path=%s" % (tmp_path / "rules.v4"),
        "ocs_report_dir=%s" % (tmp_path / "report")]))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _query(ns, tmp_path, fw, proto, dst, dport):
    out = tmp_path / ("answer-%d.json" % len(list(tmp_path.glob("answer-*.json"))))
    argv = ["ip", "netns", "exec", ns, ANSIBLE_PLAYBOOK, "ocs.edge_firewall.query_flow",
            "-i", str(REPO / "inventories" / "multi_site"), "-e", "live=true", "-e", "live_hosts=%s" % fw,
            "-e", "ansible_connection=local", "-e", "ansible_python_interpreter=%s" % sys.executable,
            "-e", "ocs_linux_become=false", "-e", "src=%s" % INTERNET, "-e", "dst=%s" % dst,
            "-e", "proto=%s" % proto, "-e", "dport=%s" % dport, "-e", "query_out=%s" % out]
    proc = run(argv, check=False, cwd=str(REPO))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout


def _drift_nftables(ns, rule_id, rogue):
    doc = json.loads(run(["ip", "netns", "exec", ns, "nft", "-j", "list", "chain", "inet", "ocs_edge", "forward"]).stdout)
    handles = [o["rule"]["handle"] for o in doc["nftables"]
               if "rule" in o and o["rule"].get("comment", "").startswith("ocs %s " % rule_id)]
    assert handles
    for h in handles:
        run(["ip", "netns", "exec", ns, "nft", "delete", "rule", "inet", "ocs_edge", "forward", "handle", str(h)])
    proto, dst, port = rogue
    run(["ip", "netns", "exec", ns, "nft", "insert", "rule", "inet", "ocs_edge", "forward", "ip", "daddr", dst,
         proto, "dport", str(port), "accept", "comment", '"rogue: added by hand"'])


def _drift_iptables(ns, rule_id, rogue):
    save = run(["ip", "netns", "exec", ns, "iptables-save", "-t", "filter"]).stdout
    lines = [ln for ln in save.splitlines() if ln.startswith("-A ") and '"ocs %s ' % rule_id in ln]
    assert lines
    for ln in lines:
        run(["ip", "netns", "exec", ns, "sh", "-c", "iptables " + ln.replace("-A ", "-D ", 1)])
    chain = lines[0].split()[1]
    proto, dst, port = rogue
    run(["ip", "netns", "exec", ns, "iptables", "-I", chain, "1", "-d", dst, "-p", proto, "--dport", str(port),
         "-m", "comment", "--comment", "rogue: added by hand", "-j", "ACCEPT"])


def _check(backend, netns, tmp_path):
    case = CASES[backend]
    ns, fw = netns.first, case["fw"]
    _deploy(ns, fw, tmp_path)
    rid, (proto, dst, port) = case["delete"]
    both, _out = _query(ns, tmp_path, fw, proto, dst, port)
    assert both["policy"]["allowed"] and both["live"]["allowed"], both["live"]["text"]
    assert both["live"]["rules"] == [rid] and both["live"]["hops"][0]["source"] == "live"

    (_drift_nftables if backend == "nftables" else _drift_iptables)(ns, rid, case["rogue"])

    both, out = _query(ns, tmp_path, fw, proto, dst, port)
    assert both["policy"]["allowed"] and both["policy"]["rules"] == [rid]
    assert not both["live"]["allowed"], both["live"]["text"]
    assert "DRIFT on %s: the policy allows it (%s), the live rules deny it" % (fw, rid) in out
    assert both["live"]["drift"] == [dict(both["live"]["drift"][0], firewall=fw, policy=True, live=False)]
    hop = both["live"]["hops"][0]
    assert hop["firewall"] == fw and hop["source"] == "live" and "drop" in hop["decided_by"].lower()

    rproto, rdst, rport = case["rogue"]
    both, out = _query(ns, tmp_path, fw, rproto, rdst, rport)
    assert not both["policy"]["allowed"]
    # the servers' Windows host firewalls (not read) still deny it; the network firewall lets it in
    hop = both["live"]["hops"][0]
    assert hop["firewall"] == fw and hop["allowed"] and hop["rules"] == ["unmanaged: rogue: added by hand"]
    assert "DRIFT on %s: the policy denies it (no rule), the live rules allow it (unmanaged: rogue: added by hand)" % fw in out

    kid, (kproto, kdst, kport) = case["kept"]
    both, out = _query(ns, tmp_path, fw, kproto, kdst, kport)
    assert both["policy"]["allowed"] and both["live"]["allowed"] and both["live"]["rules"] == [kid]
    assert "policy and live rules agree on every firewall read (%s)" % fw in out
    assert re.search(r"%s \(external firewall, %s, site \w+, chain forward, as enforced \(live\)\)" % (fw, backend), out)


def test_live_query_nftables(netns, tmp_path):
    _check("nftables", netns, tmp_path)


def test_live_query_iptables(netns, tmp_path):
    _check("iptables", netns, tmp_path)
