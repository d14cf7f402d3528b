"""Load an inventory the way Ansible does (group_vars, host_vars, groups) into plain dicts."""
from pathlib import Path

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.manager import VariableManager

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plain import plain
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import ALL_VARS

REPO = Path(__file__).resolve().parent.parent
TOPOLOGIES = ("consolidated", "single_site", "scaled_single_site", "multi_site", "scaled_remote_site")


def load_hostvars(path):
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(path)])
    variables = VariableManager(loader=loader, inventory=inventory)
    out = {}
    for host in inventory.get_hosts():
        hv = variables.get_vars(host=host)
        out[host.name] = {k: plain(hv[k]) for k in ALL_VARS if k in hv}
    return out


def example(topology):
    return load_hostvars(REPO / "inventories" / topology)
