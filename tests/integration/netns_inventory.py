"""The inventory of the tests that deploy to nftables firewalls in network namespaces
(test_deploy_safety.py over SSH, test_pipeline.py with a local connection per namespace):
inventories/consolidated, its firewalls pointed at the namespaces, nothing a namespace lacks.
"""
import shutil

import yaml

from netns_harness import REPO


def _edit_yaml(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def consolidated_inventory(inv, tmp_path, firewall_vars, drop=()):
    """inventories/consolidated copied to ``inv`` (replacing what is there) -> ``inv``.

    Each firewall named in ``firewall_vars`` loses the variables in ``drop``, gets its variables
    and its nftables state files under ``tmp_path/state-<name>`` (not the system's). The edge
    servers get no host firewalls; no policy export, no become, no boot loader (namespaces have
    no init to enable it with).
    """
    shutil.rmtree(inv, ignore_errors=True)
    shutil.copytree(REPO / "inventories" / "consolidated", inv)

    def firewalls(hosts):
        fws = hosts["all"]["children"]["ocs_firewalls"]["hosts"]
        for name, hv in firewall_vars.items():
            state = tmp_path / ("state-%s" % name)
            for var in drop:
                fws[name].pop(var)
            fws[name].update(hv, ocs_nftables_persist_path=str(state / "ocs_edge.nft"),
                             ocs_nftables_persist_conf=str(state / "nftables.conf"))
        edge = hosts["all"]["children"]["ocs_edge_servers"]["hosts"]
        edge["edge1"].pop("ocs_host_firewall")
        edge["rp1"].pop("ocs_host_firewall")

    def group_vars(gv):
        gv.pop("ocs_policy_export_dir")
        gv["ocs_linux_become"] = False
        gv["ocs_nftables_boot_loader"] = False

    _edit_yaml(inv / "hosts.yml", firewalls)
    _edit_yaml(inv / "group_vars" / "all.yml", group_vars)
    return inv
