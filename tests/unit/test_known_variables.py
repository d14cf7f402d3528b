"""Every ocs_* name the playbooks, roles and pipeline script use is a variable the policy play
knows: otherwise setting it in an inventory would be refused as an unknown variable."""
import re
import subprocess

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import KNOWN_VARS

# ocs_* words in those files that are not variables (an nft table name).
NOT_VARIABLES = {"ocs_edge"}


def test_every_ocs_name_used_by_playbooks_and_roles_is_known(repo):
    files = subprocess.run(["git", "ls-files", "playbooks", "roles", "scripts/ocs-pipeline"], cwd=repo,
                           capture_output=True, text=True, check=True).stdout.split()
    used = {}
    for name in files:
        for var in re.findall(r"\bocs_[a-z0-9_]+", (repo / name).read_text()):
            used.setdefault(var, name)
    unknown = {v: f for v, f in used.items() if v not in KNOWN_VARS and v not in NOT_VARIABLES}
    assert not unknown, "used but not in policy.KNOWN_VARS: %s" % unknown
