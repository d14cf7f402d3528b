"""The inventories of the tests that deploy to firewalls in network namespaces (test_deploy_safety.py
over SSH, test_pipeline.py and test_deploy_topologies.py with a local connection per namespace):
an example inventory, its firewalls pointed at the namespaces (or, for pfSense, at a config.xml
standing in for the box), nothing a namespace lacks.
"""
import shutil
import sys

import yaml

from netns_harness import REPO

PFSENSE_FACTORY = REPO / "tests" / "fixtures" / "pfsense" / "config.factory.xml"

# pfSense's filter reload, harmless: it records that it ran (one line per reload).
RELOAD_RECORDER = '#!/bin/sh\necho reload >> "$(dirname "$0")/reload.log"\n'


def _edit_yaml(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def interpreter(tmp_path, ns):
    """A Python that runs inside namespace ``ns`` (the firewall 'host' of the inventory)."""
    path = tmp_path / ("python-%s" % ns)
    path.write_text('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (ns, sys.executable))
    path.chmod(0o755)
    return str(path)


def pfsense_standin(state):
    """A directory ``state`` standing in for a pfSense box: conf/config.xml (the factory
    configuration) and a reload command that only records it ran -> the role's variables."""
    (state / "conf").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PFSENSE_FACTORY, state / "conf" / "config.xml")
    reload = state / "rc.filter_configure_sync"
    reload.write_text(RELOAD_RECORDER)
    reload.chmod(0o755)
    return {"ocs_pfsense_config_path": str(state / "conf" / "config.xml"),
            "ocs_pfsense_backup_dir": str(state / "conf" / "backup"),
            "ocs_pfsense_cache_file": str(state / "config.cache"),
            "ocs_pfsense_lock_file": str(state / "config.lock"),
            "ocs_pfsense_reload_command": str(reload)}


def state_vars(platform, state):
    """The variables that put a firewall's files under ``state`` (not the system's)."""
    if platform == "nftables":
        return {"ocs_nftables_persist_path": str(state / "ocs_edge.nft"),
                "ocs_nftables_persist_conf": str(state / "nftables.conf")}
    if platform == "iptables":
        return {"ocs_iptables_persist_path": str(state / "rules.v4")}
    if platform == "pfsense":
        return pfsense_standin(state)
    raise ValueError("no state files for platform %r" % platform)


def _drop_host_firewalls(group):
    """No ocs_host_firewall in ``group``, its hosts or its children (group or host variable)."""
    (group.get("vars") or {}).pop("ocs_host_firewall", None)
    for hv in (group.get("hosts") or {}).values():
        (hv or {}).pop("ocs_host_firewall", None)
    for child in (group.get("children") or {}).values():
        _drop_host_firewalls(child or {})


def example_inventory(topology, inv, tmp_path, firewall_vars, drop=()):
    """inventories/``topology`` copied to ``inv`` (replacing what is there) -> ``inv``.

    Each firewall named in ``firewall_vars`` loses the variables in ``drop``, gets its variables
    and its state files under ``tmp_path/state-<name>`` (nftables/iptables rule files; pfSense: a
    copy of the factory config.xml and a recording reload command). The edge servers get no host
    firewalls; no policy export, no become, no boot loader (namespaces have no init to enable it with).
    """
    shutil.rmtree(inv, ignore_errors=True)
    shutil.copytree(REPO / "inventories" / topology, inv)

    def firewalls(hosts):
        fws = hosts["all"]["children"]["ocs_firewalls"]["hosts"]
        for name, hv in firewall_vars.items():
            for var in drop:
                fws[name].pop(var)
            platform = hv.get("ocs_firewall_platform", fws[name]["ocs_firewall_platform"])
            fws[name].update(hv, **state_vars(platform, tmp_path / ("state-%s" % name)))
        _drop_host_firewalls(hosts["all"])

    def group_vars(gv):
        gv.pop("ocs_policy_export_dir")
        gv["ocs_linux_become"] = False
        gv["ocs_nftables_boot_loader"] = False
        gv["ocs_iptables_boot_loader"] = False

    _edit_yaml(inv / "hosts.yml", firewalls)
    _edit_yaml(inv / "group_vars" / "all.yml", group_vars)
    return inv


def consolidated_inventory(inv, tmp_path, firewall_vars, drop=()):
    """inventories/consolidated as ``example_inventory`` makes it."""
    return example_inventory("consolidated", inv, tmp_path, firewall_vars, drop)
