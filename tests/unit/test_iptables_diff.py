"""iptables backend: parse real `iptables-save -t filter` output and compare with the desired state.

The *.save files under tests/golden/iptables/ were captured from iptables 1.8.9 (nf_tables and
legacy) in network namespaces by tests/golden/iptables/capture.py (run it as root to regenerate):
the rendered transaction applied next to docker/fail2ban/admin chains, real drift made with the
iptables CLI, and the same rules typed by hand in other but equivalent forms.
tests/integration/test_iptables_module.py proves the same round trips live through the module.
"""
import json
from pathlib import Path

import pytest

from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables as I

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "iptables"
FOREIGN_CHAINS = ("DOCKER", "DOCKER-USER", "f2b-sshd")


def desired(case):
    return I.desired_state(json.loads((GOLDEN / "inputs" / ("%s.json" % case)).read_text()), case)


def capture(name):
    return (GOLDEN / name).read_text()


@pytest.mark.parametrize("case,capture_name", [("lab_network", "lab_network.live.save"),
                                               ("lab_host", "lab_host.live.save"),
                                               ("lab_network", "lab_network.legacy.save")])
def test_applied_state_reads_back_equal_and_byte_identical(case, capture_name):
    want = desired(case)
    text = capture(capture_name)
    live = I.parse_save(text)
    assert I.compare(want, live).as_dict() == {"created": [], "removed": [], "updated": []}
    # iptables-save prints exactly what was rendered: the owned lines of the capture are the render
    rendered = [l for l in I.render_rules(want).splitlines() if l not in ("*filter", "COMMIT")]
    owned = [l for l in text.splitlines() if l in rendered]
    assert owned == rendered
    assert I.render_listing(live).replace(" (position 1)", "") == I.render_listing(want)
    # only owned chains and jumps to them are in the parsed state; the jumps are at position 1
    assert set(live["chains"]) == set(want["chains"])
    assert all(len(js) == 1 and js[0]["pos"] == 1 for js in live["jumps"].values())


def test_foreign_chains_and_rules_are_not_parsed():
    live = I.parse_save(capture("lab_network.live.save"))
    flat = json.dumps(live)
    for name in FOREIGN_CHAINS + ("admin: smtp", "docker0"):
        assert name not in flat


def test_nothing_owned_means_everything_created():
    want = desired("lab_network")
    text = "\n".join(l for l in capture("lab_network.live.save").splitlines() if "OCS-EDGE" not in l)
    live = I.parse_save(text)
    assert live == {"chains": {}, "jumps": {}}
    result = I.compare(want, live)
    assert result.changed and result.removed == [] and result.updated == []
    assert result.created[:2] == ["chain:OCS-EDGE-FWD", "chain:OCS-EDGE-IN"]
    assert result.created[-2:] == ["jump:INPUT", "jump:FORWARD"]
    assert set(result.created[2:-2]) == {r["id"] for rs in want["chains"].values() for r in rs}


def test_handtyped_equivalent_forms_compare_equal():
    """No /32, a netmask with host bits, multiport for one port, -m state instead of conntrack,
    the icmp type by name: iptables-save prints some canonically, the normaliser does the rest."""
    text = capture("lab_network.handtyped.save")
    assert "-m state --state RELATED,ESTABLISHED" in text and "-m multiport --dports 5061 " in text
    result = I.compare(desired("lab_network"), I.parse_save(text))
    assert result.as_dict() == {"created": [], "removed": [], "updated": []}


def test_real_drift_is_reported_rule_by_rule():
    result = I.compare(desired("lab_network"), I.parse_save(capture("lab_network.drift.save")))
    # a port changed (t18-f5-in), an address changed (t20-f14-out), a rule deleted (lab-any-tcp),
    # a rule added by hand, a second jump to OCS-EDGE-IN, the FORWARD jump moved to position 3
    assert result.removed == ["rule:OCS-EDGE-FWD: -s 198.51.100.9/32 -p tcp -m tcp --dport 23 -j ACCEPT"]
    assert result.created == ["lab-any-tcp"]
    assert result.updated == ["central-t18-f5-in", "central-t20-f14-out", "jump:INPUT", "jump:FORWARD"]


def test_transaction_names_only_owned_chains_and_jumps():
    live = I.parse_save(capture("lab_network.drift.save"))
    script = I.render_transaction(desired("lab_network"), live)
    lines = script.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT" and lines.count("COMMIT") == 1
    for line in lines[1:-1]:
        chain = line.split()[1] if line.startswith("-") else line[1:].split()[0]
        if chain in ("INPUT", "FORWARD", "OUTPUT"):
            assert line.startswith(("-D %s " % chain, "-I %s 1 " % chain)) and "-j OCS-EDGE-" in line, line
        else:
            assert chain.startswith("OCS-EDGE-"), line
    assert not any(name in script for name in FOREIGN_CHAINS)
    # every live jump is deleted by its exact text, the desired ones inserted at 1
    assert [l for l in lines if l.startswith("-D ")] == [
        '-D INPUT -m comment --comment "ocs.edge_firewall: owned chain, keep at position 1" -j OCS-EDGE-IN',
        "-D INPUT -j OCS-EDGE-IN",
        '-D FORWARD -m comment --comment "ocs.edge_firewall: owned chain, keep at position 1" -j OCS-EDGE-FWD']
    assert [l.split(" -m")[0] for l in lines if l.startswith("-I ")] == ["-I INPUT 1", "-I FORWARD 1"]
    # the transaction's owned rules are the render's
    rendered = [l for l in I.render_rules(desired("lab_network")).splitlines() if l.startswith("-A OCS-EDGE")]
    assert [l for l in lines if l.startswith("-A ")] == rendered


def test_stale_owned_chain_is_deleted_after_its_jump():
    """Host mode live (IN + OUT), network mode desired: OUT and its OUTPUT jump go."""
    live = I.parse_save(capture("lab_host.live.save"))
    want = desired("lab_network")
    result = I.compare(want, live)
    assert "chain:OCS-EDGE-OUT" in result.removed and "jump:OUTPUT" in result.removed
    lines = I.render_transaction(want, live).splitlines()
    assert lines.index("-X OCS-EDGE-OUT") > max(i for i, l in enumerate(lines) if l.startswith("-D OUTPUT "))
    assert lines.index("-F OCS-EDGE-OUT") < lines.index("-X OCS-EDGE-OUT")


def test_removal_transaction():
    live = I.parse_save(capture("lab_network.drift.save"))
    lines = I.render_removal(live).splitlines()
    assert lines == ["*filter",
                     '-D INPUT -m comment --comment "ocs.edge_firewall: owned chain, keep at position 1" -j OCS-EDGE-IN',
                     "-D INPUT -j OCS-EDGE-IN",
                     '-D FORWARD -m comment --comment "ocs.edge_firewall: owned chain, keep at position 1" -j OCS-EDGE-FWD',
                     "-F OCS-EDGE-FWD", "-F OCS-EDGE-IN", "-X OCS-EDGE-FWD", "-X OCS-EDGE-IN", "COMMIT"]


@pytest.mark.parametrize("line,other", [
    ("-A C -s 10.0.0.1/32 -j ACCEPT", "-A C -s 10.0.0.1 -j ACCEPT"),
    ("-A C -s 10.0.0.0/24 -j ACCEPT", "-A C -s 10.0.0.7/255.255.255.0 -j ACCEPT"),
    ("-A C -p tcp -m tcp --dport 50000:59999 -j ACCEPT", "-A C -p tcp -m multiport --dports 50000:59999 -j ACCEPT"),
    ("-A C -p tcp -m multiport --dports 443,80 -j ACCEPT", "-A C -p tcp -m multiport --dports 80,443 -j ACCEPT"),
    ("-A C -p udp -m multiport --dports 5061,5062 -j ACCEPT", "-A C -p udp -m multiport --dports 5061:5062 -j ACCEPT"),
    ("-A C -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-A C -m state --state ESTABLISHED,RELATED -j ACCEPT"),
    ("-A C -p tcp -m comment --comment x -j ACCEPT", '-A C -p TCP -m comment --comment "x" -j ACCEPT'),
])
def test_normalisation_equal(line, other):
    assert I.parse_rule_line(line)[1]["key"] == I.parse_rule_line(other)[1]["key"]


@pytest.mark.parametrize("line,other", [
    ("-A C -s 10.0.0.1/32 -j ACCEPT", "-A C -s 10.0.0.2/32 -j ACCEPT"),
    ("-A C -s 10.0.0.1/32 -j ACCEPT", "-A C ! -s 10.0.0.1/32 -j ACCEPT"),
    ("-A C -s 10.0.0.1/32 -j ACCEPT", "-A C -d 10.0.0.1/32 -j ACCEPT"),
    ("-A C -p tcp -m tcp --dport 5061 -j ACCEPT", "-A C -p tcp -m tcp --sport 5061 -j ACCEPT"),
    ("-A C -p tcp -m tcp --dport 5061 -j ACCEPT", "-A C -p udp -m udp --dport 5061 -j ACCEPT"),
    ("-A C -p tcp -m tcp --dport 5061 -j ACCEPT", "-A C -p tcp -m tcp --dport 5061 -j DROP"),
    ("-A C -p tcp -m tcp --dport 5061 -j ACCEPT", "-A C -p tcp -m tcp --dport 5061 -m limit --limit 5/sec -j ACCEPT"),
    ("-A C -m comment --comment a -j ACCEPT", "-A C -m comment --comment b -j ACCEPT"),
    ("-A C -j REJECT --reject-with icmp-port-unreachable", "-A C -j REJECT --reject-with tcp-reset"),
    ("-A C -i eth0 -j ACCEPT", "-A C -i eth1 -j ACCEPT"),
])
def test_normalisation_keeps_real_differences(line, other):
    assert I.parse_rule_line(line)[1]["key"] != I.parse_rule_line(other)[1]["key"]


def test_unknown_options_are_kept_not_ignored():
    _chain, rule = I.parse_rule_line("-A C -p tcp -m limit --limit 5/sec --limit-burst 7 -j ACCEPT")
    assert ("module", "limit") in rule["key"][0]
    assert ("--limit", "5/sec") in rule["key"][0] and ("--limit-burst", "7") in rule["key"][0]
