"""The backend contract (docs/backend-contract.md), proven once for every network backend.

Each test runs for nftables and iptables: the real module, run by the real ansible-playbook,
against the real tool in a fresh network namespace. The same FIREWALL (single_site's internal
firewall with interfaces) goes through both, so the expected results are the same rule ids.
A new backend joins by adding its adapter class below and one line to BACKENDS.

Needs root and the backend's tools; each backend is skipped with the reason otherwise.
"""
import json
from pathlib import Path

import pytest

from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables as I
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
from inventory_loader import example
from netns_harness import markers, module_result, netns_fixture, playbook, run

netns = netns_fixture("ocscon")

RESULT_KEYS = {"changed", "created", "updated", "removed"}


class Nftables:
    """nft_ruleset: owns table inet ocs_edge."""

    platform = "nftables"
    module = "ocs.edge_firewall.nft_ruleset"
    owned_id = "table:inet ocs_edge"
    forward, input = "forward", "input"
    port = ("tcp dport 5061", "tcp dport 5062")
    address = ("ip daddr 10.10.1.20", "ip daddr 10.10.1.21")
    added = "rule:forward: ip saddr 198.51.100.9 accept"
    attach = ("chain:forward",)
    FOREIGN = ("table ip other {\n\tchain other_forward {\n\t\ttype filter hook forward priority 10; policy accept;\n"
               '\t\ttcp dport 23 counter accept comment "not ours"\n\t}\n}\n'
               "table inet f2b {\n\tset banned { type ipv4_addr; elements = { 192.0.2.66 } }\n"
               "\tchain input {\n\t\ttype filter hook input priority -1; policy accept;\n"
               "\t\tip saddr @banned drop\n\t}\n}\n")

    def cli(self, ns, *args, check=True):
        return run(["ip", "netns", "exec", ns, "nft"] + list(args), check=check)

    def args(self, fw, tmp_path, **kw):
        return dict({"firewall": fw, "name": "fw-int", "persist_path": str(tmp_path / "d" / "ocs_edge.nft"),
                     "persist_conf": str(tmp_path / "nftables.conf")}, **kw)

    def add_foreign(self, ns, tmp_path):
        path = tmp_path / "other.nft"
        path.write_text(self.FOREIGN)
        self.cli(ns, "-f", str(path))

    def foreign(self, ns):
        return "".join(self.cli(ns, "-a", "list", "table", *t).stdout for t in (("ip", "other"), ("inet", "f2b")))

    def owned(self, ns):
        proc = self.cli(ns, "-a", "list", "table", "inet", "ocs_edge", check=False)
        return proc.stdout if proc.returncode == 0 else ""

    def _rule(self, ns, chain, needle):
        lines = [l.strip() for l in self.cli(ns, "-a", "list", "chain", "inet", "ocs_edge", chain).stdout.splitlines()
                 if needle in l and "# handle" in l]
        assert lines, "no rule with %r in chain %s" % (needle, chain)
        text, handle = lines[0].split(" # handle ")
        return text, handle

    def add_rule(self, ns):
        self.cli(ns, "insert", "rule", "inet", "ocs_edge", "forward", "ip", "saddr", "198.51.100.9", "accept")

    def delete_rule(self, ns, chain, needle):
        self.cli(ns, "delete", "rule", "inet", "ocs_edge", chain, "handle", self._rule(ns, chain, needle)[1])

    def replace(self, ns, chain, needle, old, new):
        text, handle = self._rule(ns, chain, needle)
        assert old in text
        self.cli(ns, "replace", "rule", "inet", "ocs_edge", chain, "handle", handle, text.replace(old, new))

    def detach(self, ns):
        self.cli(ns, "chain", "inet", "ocs_edge", "forward", "{", "policy", "accept", ";", "}")

    def reorder(self, ns):
        text, _ = self._rule(ns, "input", "ocs base: loopback")
        self.delete_rule(ns, "input", "ocs base: loopback")
        after = self._rule(ns, "input", "ocs base: established")[1]
        self.cli(ns, "add", "rule", "inet", "ocs_edge", "input", "position", after, text)

    def delete_chain(self, ns):
        self.cli(ns, "flush", "chain", "inet", "ocs_edge", "input")
        self.cli(ns, "delete", "chain", "inet", "ocs_edge", "input")
        return ["chain:input"]


class Iptables:
    """iptables_ruleset: owns chains OCS-EDGE-IN/-FWD/-OUT and the jumps to them."""

    platform = "iptables"
    module = "ocs.edge_firewall.iptables_ruleset"
    owned_id = "chain:OCS-EDGE-FWD"
    forward, input = "OCS-EDGE-FWD", "OCS-EDGE-IN"
    port = ("--dport 5061", "--dport 5062")
    address = ("-d 10.10.1.20/32", "-d 10.10.1.21/32")
    added = "rule:OCS-EDGE-FWD: -s 198.51.100.9/32 -j ACCEPT"
    attach = ("jump:FORWARD",)
    FOREIGN = ("*filter\n:DOCKER - [0:0]\n:DOCKER-USER - [0:0]\n:f2b-sshd - [0:0]\n"
               "-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n"
               '-A INPUT -p tcp -m tcp --dport 25 -m comment --comment "admin: smtp" -j ACCEPT\n'
               "-A FORWARD -j DOCKER-USER\n-A FORWARD -o docker0 -j DOCKER\n"
               "-A OUTPUT -d 192.0.2.1/32 -j ACCEPT\n-A DOCKER-USER -j RETURN\n"
               "-A f2b-sshd -s 192.0.2.66/32 -j REJECT --reject-with icmp-port-unreachable\n"
               "-A f2b-sshd -j RETURN\nCOMMIT\n")

    def cli(self, ns, *args, check=True):
        return run(["ip", "netns", "exec", ns, "iptables"] + list(args), check=check)

    def args(self, fw, tmp_path, **kw):
        return dict({"firewall": fw, "name": "fw-int", "persist_path": str(tmp_path / "iptables" / "rules.v4")}, **kw)

    def _save(self, ns):
        out = run(["ip", "netns", "exec", ns, "iptables-save", "-t", "filter"]).stdout
        return [l for l in out.splitlines() if not l.startswith("#")]

    def _is_owned(self, line):
        return "OCS-EDGE-" in line

    def add_foreign(self, ns, tmp_path):
        run(["ip", "netns", "exec", ns, "iptables-restore", "--noflush"], input=self.FOREIGN)

    def foreign(self, ns):
        return "\n".join(l for l in self._save(ns) if not self._is_owned(l))

    def owned(self, ns):
        """The owned lines with their place in iptables-save's listing (a jump's position counts)."""
        return "\n".join("%d %s" % (i, l) for i, l in enumerate(self._save(ns)) if self._is_owned(l))

    def _rule(self, ns, chain, needle):
        rules = [l for l in self._save(ns) if l.startswith("-A %s " % chain)]
        hits = [i for i, l in enumerate(rules) if needle in l]
        assert hits, "no rule with %r in %s" % (needle, chain)
        return hits[0] + 1, rules[hits[0]]

    def add_rule(self, ns):
        self.cli(ns, "-I", "OCS-EDGE-FWD", "3", "-s", "198.51.100.9", "-j", "ACCEPT")

    def delete_rule(self, ns, chain, needle):
        self.cli(ns, "-D", chain, str(self._rule(ns, chain, needle)[0]))

    def replace(self, ns, chain, needle, old, new):
        pos, line = self._rule(ns, chain, needle)
        assert old in line
        self.cli(ns, "-R", chain, str(pos), *I.tokenize(line.replace(old, new))[2:])

    def detach(self, ns):
        pos, line = self._rule(ns, "FORWARD", "-j OCS-EDGE-FWD")
        self.cli(ns, "-D", "FORWARD", str(pos))
        self.cli(ns, "-A", "FORWARD", *I.tokenize(line)[2:])

    def reorder(self, ns):
        pos, line = self._rule(ns, "OCS-EDGE-IN", "ocs base: loopback")
        self.cli(ns, "-D", "OCS-EDGE-IN", str(pos))
        self.cli(ns, "-I", "OCS-EDGE-IN", "2", *I.tokenize(line)[2:])

    def delete_chain(self, ns):
        self.cli(ns, "-D", "INPUT", str(self._rule(ns, "INPUT", "-j OCS-EDGE-IN")[0]))
        self.cli(ns, "-F", "OCS-EDGE-IN")
        self.cli(ns, "-X", "OCS-EDGE-IN")
        return ["chain:OCS-EDGE-IN", "jump:INPUT"]


BACKENDS = [
    pytest.param(Nftables(), id="nftables", marks=markers("nftables", ("ip", "nft"))),
    pytest.param(Iptables(), id="iptables", marks=markers("iptables", ("ip", "iptables-save", "iptables-restore"))),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def firewall(platform):
    """single_site's internal firewall, with interfaces, for ``platform``."""
    fw = build_policy(example("single_site"))["firewalls"]["fw-int"]
    return dict(fw, platform=platform, interfaces={"perimeter": "eth1", "internal": "eth0"})


def enforce(backend, ns, tmp_path, args, **kw):
    doc, proc = playbook(ns, tmp_path, [{"name": "enforce", backend.module: args}], **kw)
    return module_result(doc), proc


def persisted(args):
    return {p: Path(args[p]).read_text() if Path(args[p]).exists() else None
            for p in ("persist_path", "persist_conf") if p in args}


def shape(res):
    return {k: res[k] for k in ("created", "updated", "removed")}


# ------------------------------------------------------------------------------- tests

def test_apply_then_noop_foreign_state_untouched(netns, tmp_path, backend):
    ns = netns.first
    backend.add_foreign(ns, tmp_path)
    foreign = backend.foreign(ns)
    fw = firewall(backend.platform)
    args = backend.args(fw, tmp_path)

    res, proc = enforce(backend, ns, tmp_path, args)
    assert res["changed"] is True, proc.stdout[-3000:]
    assert RESULT_KEYS <= set(res) and res["updated"] == [] and res["removed"] == []
    for rid in [r["id"] for r in fw["rules"]] + ["base:mgmt", "base:est", "file:%s" % args["persist_path"]]:
        assert rid in res["created"], (rid, res["created"])
    diff = res["diff"][0]
    assert diff["before"] == "" and all(r["comment"] in diff["after"] for r in fw["rules"])
    live = backend.owned(ns)
    assert all(r["comment"] in live for r in fw["rules"])

    again, _ = enforce(backend, ns, tmp_path, args)
    assert again["changed"] is False and shape(again) == {"created": [], "updated": [], "removed": []}
    assert "diff" not in again
    assert backend.owned(ns) == live, "a no-op run rewrote the owned rules"
    assert backend.foreign(ns) == foreign


def test_check_mode_on_a_fresh_host_changes_nothing(netns, tmp_path, backend):
    ns = netns.first
    args = backend.args(firewall(backend.platform), tmp_path)
    res, _ = enforce(backend, ns, tmp_path, args, check=True)
    assert res["changed"] is True and "central-t14-f5-in" in res["created"]
    assert backend.owned(ns) == ""
    assert set(persisted(args).values()) == {None}, "check mode wrote a file"


# kind -> (make the drift, the contract's report of it: created, updated, removed)
DRIFTS = {
    "rule_added": (lambda b, ns: b.add_rule(ns), lambda b: ([], [], [b.added])),
    "rule_deleted": (lambda b, ns: b.delete_rule(ns, b.forward, "t14-f5-out"),
                     lambda b: (["central-t14-f5-out"], [], [])),
    "port_changed": (lambda b, ns: b.replace(ns, b.forward, "t14-f5-in", *b.port),
                     lambda b: ([], ["central-t14-f5-in"], [])),
    "address_changed": (lambda b, ns: b.replace(ns, b.forward, "t14-f5-in", *b.address),
                        lambda b: ([], ["central-t14-f5-in"], [])),
    "management_rule_deleted": (lambda b, ns: b.delete_rule(ns, b.input, "ocs management"),
                                lambda b: (["base:mgmt"], [], [])),
    "detached": (lambda b, ns: b.detach(ns), lambda b: ([], list(b.attach), [])),
    "rule_order": (lambda b, ns: b.reorder(ns), lambda b: ([], ["chain:%s" % b.input], [])),
}


@pytest.mark.parametrize("kind", sorted(DRIFTS))
def test_drift_is_reported_by_id_corrected_then_quiet(netns, tmp_path, backend, kind):
    ns = netns.first
    backend.add_foreign(ns, tmp_path)
    args = backend.args(firewall(backend.platform), tmp_path)
    enforce(backend, ns, tmp_path, args)
    good, foreign, files = backend.owned(ns), backend.foreign(ns), persisted(args)
    make, expected = DRIFTS[kind]
    make(backend, ns)
    drifted = backend.owned(ns)
    assert drifted != good

    check, _ = enforce(backend, ns, tmp_path, args, check=True)
    created, updated, removed = expected(backend)
    assert shape(check) == {"created": created, "updated": updated, "removed": removed}
    assert check["changed"] is True and check["diff"][0]["before"] != check["diff"][0]["after"]
    assert backend.owned(ns) == drifted, "check mode corrected the drift"
    fix, _ = enforce(backend, ns, tmp_path, args)
    assert shape(fix) == shape(check)
    assert backend.owned(ns) != drifted
    again, _ = enforce(backend, ns, tmp_path, args)
    assert again["changed"] is False, again
    assert backend.foreign(ns) == foreign and persisted(args) == files


def test_owned_chain_deleted_is_recreated(netns, tmp_path, backend):
    ns = netns.first
    args = backend.args(firewall(backend.platform), tmp_path)
    enforce(backend, ns, tmp_path, args)
    objects = backend.delete_chain(ns)
    fix, _ = enforce(backend, ns, tmp_path, args)
    assert all(o in fix["created"] for o in objects) and "base:mgmt" in fix["created"], fix["created"]
    assert enforce(backend, ns, tmp_path, args)[0]["changed"] is False


BAD_INPUTS = {
    "bad address": (lambda fw: fw["rules"][1].update(dst=["10.10.1.300"]),
                    "firewall fw-int: rules[1] (central-t14-f5-in).dst[0]: '10.10.1.300' is not a valid IP address"),
    "rules not a list": (lambda fw: fw.update(rules="central-t14-f5-in"),
                         "firewall fw-int: rules must be a list of PFRULE dicts"),
    "port of a wrong type": (lambda fw: fw["rules"][0].update(dport=[{"port": 443}]),
                             "rules[0] (central-t13-f2-in).dport[0]: {'port': 443} is not a port"),
    "interface name with a newline": (lambda fw: fw["interfaces"].update(internal="eth0\n"),
                                      "firewall fw-int: interfaces.internal: interface 'eth0\\n' is not a valid"),
    "rule id with a newline": (lambda fw: fw["rules"][0].update(id="central-t13-f2-in\n"),
                               "firewall fw-int: rules[0].id: 'central-t13-f2-in\\n' is not a rule id"),
}


def test_invalid_input_leaves_the_previous_rules_in_force(netns, tmp_path, backend):
    ns = netns.first
    fw = firewall(backend.platform)
    args = backend.args(fw, tmp_path)
    enforce(backend, ns, tmp_path, args)
    live, files = backend.owned(ns), persisted(args)
    for kind, (mutate, message) in sorted(BAD_INPUTS.items()):
        bad = json.loads(json.dumps(fw))
        mutate(bad)
        res, proc = enforce(backend, ns, tmp_path, backend.args(bad, tmp_path))
        assert res.get("failed") is True and proc.returncode != 0, kind
        assert message in res["msg"], (kind, res["msg"])
        assert "previous rule set is still in force" in res["msg"] and "Traceback" not in res["msg"], kind
        assert backend.owned(ns) == live and persisted(args) == files, kind


def test_absent_removes_only_what_it_owns(netns, tmp_path, backend):
    ns = netns.first
    backend.add_foreign(ns, tmp_path)
    foreign = backend.foreign(ns)
    args = backend.args(firewall(backend.platform), tmp_path)
    enforce(backend, ns, tmp_path, args)
    check, _ = enforce(backend, ns, tmp_path, dict(args, state="absent", firewall=None), check=True)
    assert check["changed"] is True and backend.owned(ns) != ""
    gone, _ = enforce(backend, ns, tmp_path, dict(args, state="absent", firewall=None))
    assert shape(gone) == shape(check) and backend.owned_id in gone["removed"]
    assert backend.owned(ns) == "" and backend.foreign(ns) == foreign
    again, _ = enforce(backend, ns, tmp_path, dict(args, state="absent", firewall=None))
    assert again["changed"] is False and shape(again) == {"created": [], "updated": [], "removed": []}
