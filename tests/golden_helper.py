"""Golden files of the backends' renderers: tests/golden/<platform>/<case>.<suffix>.

Cases are the hand-written inputs (tests/golden/<platform>/inputs/*.json) and every firewall of
the example inventories the platform can enforce. ``OCS_UPDATE_GOLDEN=1`` rewrites the files.
"""
import json
import os
from pathlib import Path

from ansible_collections.ocs.edge_firewall.plugins.module_utils.platforms import PLATFORMS
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import build_policy
from inventory_loader import TOPOLOGIES, example

GOLDEN_ROOT = Path(__file__).resolve().parent / "golden"
HEADER = ["Managed by ocs.edge_firewall (golden test)"]


def hand_written(platform, name):
    return json.loads((GOLDEN_ROOT / platform / "inputs" / ("%s.json" % name)).read_text())


def golden_cases(platform):
    """(case name, FIREWALL) for the hand-written inputs and every firewall of every example
    inventory that ``platform`` can enforce (its mode is one of the platform's), whatever
    platform the example gives it: every backend renders every example."""
    inputs = GOLDEN_ROOT / platform / "inputs"
    cases = [(p.stem, json.loads(p.read_text())) for p in sorted(inputs.glob("*.json"))]
    for topology in TOPOLOGIES:
        policy = build_policy(example(topology))
        for host, fw in sorted(policy["firewalls"].items()):
            if fw["mode"] in PLATFORMS[platform].modes:
                cases.append(("%s__%s" % (topology, host), dict(fw, platform=platform)))
    return cases


def check_golden(path, text):
    """``text`` must equal the golden file (written first under OCS_UPDATE_GOLDEN=1)."""
    if os.environ.get("OCS_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), "missing golden file %s (run with OCS_UPDATE_GOLDEN=1)" % path
    assert text == path.read_text()
