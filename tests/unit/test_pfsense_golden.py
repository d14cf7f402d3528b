"""pfSense golden renders of every network firewall of the example inventories.

Each firewall is rendered as if it ran pfSense (platform pfsense, the factory fixture's interface
ids) on config.factory.xml (automatic outbound NAT, WAN gateway, factory LAN rules): the whole
config.xml as written, for review. ``OCS_UPDATE_GOLDEN=1`` rewrites the files.
"""
import os

import pytest

from golden_helper import GOLDEN_ROOT
from inventory_loader import TOPOLOGIES, example
from test_pfsense_helpers import FACTORY, assert_matches_policy, config_bytes
from ansible_collections.ocs.edge_firewall.plugins.module_utils import pfsense as pf
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy

NOW = 1700000000
SIDE = {"external": FACTORY["fw-ext"], "internal": FACTORY["fw-int"]}


def _cases():
    out = []
    for topology in TOPOLOGIES:
        policy = build_policy(example(topology))
        for host, fw in sorted(policy["firewalls"].items()):
            if fw["mode"] == "network":
                out.append(pytest.param(dict(fw, platform="pfsense", interfaces=dict(SIDE[fw["side"]])),
                                        id="%s__%s" % (topology, host)))
    return out


@pytest.mark.parametrize("fw", _cases())
def test_golden_render(fw, request):
    result = pf.reconcile(pf.parse_config(config_bytes("factory")), fw, request.node.callspec.id, now=NOW)
    out = pf.dump_config(result["root"])
    assert_matches_policy(out, fw)
    path = GOLDEN_ROOT / "pfsense" / ("%s.xml" % request.node.callspec.id)
    if os.environ.get("OCS_UPDATE_GOLDEN"):
        path.write_bytes(out)
    assert path.exists(), "missing golden file %s (run with OCS_UPDATE_GOLDEN=1)" % path
    assert out == path.read_bytes()
    again = pf.reconcile(pf.parse_config(out), fw, "again", now=NOW + 60)
    assert not again["changed"] and pf.dump_config(again["root"]) == out
