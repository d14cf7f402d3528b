#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: apply_guard
short_description: Roll a Linux firewall back by itself unless the controller confirms the apply
version_added: "0.3.0"
description:
  - "Apply with confirmation, like Junos C(commit confirmed) or C(iptables-apply): O(state=armed),
    run before the change, snapshots what the collection owns on the firewall (nftables: the
    table C(inet O(table)); iptables: the chains O(chain_prefix)-* and the jumps to them) and the
    persisted files O(files), and starts a job on the firewall itself that restores them after
    O(timeout) seconds: a systemd timer (C(systemd-run)) or a detached background process."
  - "O(state=confirmed), run after the change over a NEW connection (the playbook resets the
    connection first), cancels the job. When the job has already restored the snapshot the task
    fails and says so: the previous rule set is in force. O(state=status) reports
    C(none), C(armed), C(confirmed) or C(rolled_back)."
  - "Only the owned table / chains and the given files are restored; other tables and chains
    (docker, fail2ban) are never touched. In check mode nothing is armed."
author:
  - OCS edge firewall maintainers (@ocs-edge)
requirements:
  - nft or iptables-save/iptables-restore on the firewall, run as root
  - systemd-run for O(method=systemd)
options:
  state:
    description: C(armed) before the change, C(confirmed) after it, C(status) to read the outcome.
    type: str
    choices: [armed, confirmed, status]
    required: true
  platform:
    description: What to snapshot (used with O(state=armed)).
    type: str
    choices: [nftables, iptables]
    default: nftables
  timeout:
    description: Seconds after arming at which the firewall restores the snapshot unless confirmed.
    type: int
    default: 120
  table:
    description: The owned nftables table (family inet).
    type: str
    default: ocs_edge
  chain_prefix:
    description: Prefix of the owned iptables chains.
    type: str
    default: OCS-EDGE
  files:
    description: Persisted files the apply may write; restored as they were (or deleted if absent) by a rollback.
    type: list
    elements: path
    default: []
  name:
    description: Name of the guard (one per firewall); its folder is O(guard_dir)/O(name).
    type: str
    default: ocs_edge
  guard_dir:
    description: Where guards keep their snapshot, program and status (tmpfs; a reboot loads the persisted files anyway).
    type: path
    default: /run/ocs-edge-guard
  method:
    description: C(systemd) (a transient timer), C(process) (a detached sleeper) or C(auto) (systemd when PID 1 is systemd).
    type: str
    choices: [auto, systemd, process]
    default: auto
"""

EXAMPLES = r"""
- name: Arm the rollback (2 minutes)
  ocs.edge_firewall.apply_guard:
    state: armed
    platform: nftables
    timeout: 120
    files: [/etc/nftables.d/ocs_edge.nft, /etc/nftables.conf]

- name: Confirm over a new connection
  ocs.edge_firewall.apply_guard:
    state: confirmed
"""

RETURN = r"""
guard:
  description: The guard folder.
  type: str
  returned: always
guard_state:
  description: C(none), C(armed), C(confirmed) or C(rolled_back) after the task.
  type: str
  returned: always
deadline:
  description: Unix time at which an unconfirmed guard rolls back.
  type: float
  returned: when armed
method:
  description: C(systemd) or C(process).
  type: str
  returned: when armed
"""

import json
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ocs.edge_firewall.plugins.module_utils import apply_guard as ag
from ansible_collections.ocs.edge_firewall.plugins.module_utils import iptables as ipt


def _snapshot_rules(module, p, guard):
    """Write the platform's rollback input into the guard folder; -> tool paths for guard.json."""
    if p["platform"] == "nftables":
        nft = module.get_bin_path("nft", required=True)
        rc, out, _err = module.run_command([nft, "list", "table", "inet", p["table"]])
        script = ag.nft_rollback_script(p["table"], out if rc == 0 else "")
        ag.write_text(os.path.join(guard, "rollback.nft"), script)
        rc, _out, err = module.run_command([nft, "-c", "-f", os.path.join(guard, "rollback.nft")])
        if rc != 0:
            module.fail_json(msg="apply_guard: the rollback script does not validate (nothing armed, nothing "
                                 "changed): %s" % err.strip())
        return {"nft": nft}
    save = module.get_bin_path("iptables-save", required=True)
    restore = module.get_bin_path("iptables-restore", required=True)
    rc, out, err = module.run_command([save, "-t", "filter"])
    if rc != 0:
        module.fail_json(msg="apply_guard: iptables-save failed (nothing armed): %s" % err.strip())
    ag.write_text(os.path.join(guard, "snapshot.rules"), out)
    try:
        # the chains jumped to from the end of their built-in chain (management, after the bans)
        tails = [ipt.chain_names(p["chain_prefix"])[kind] for kind in ipt.TAILS]
    except ipt.IptError as exc:
        module.fail_json(msg="apply_guard: %s (nothing armed)" % exc)
    return {"iptables_save": save, "iptables_restore": restore, "prefix": p["chain_prefix"], "tails": tails}


def _use_systemd(module, method):
    if method == "process":
        return None
    run = module.get_bin_path("systemd-run")
    if method == "systemd" and not run:
        module.fail_json(msg="apply_guard: method systemd but systemd-run is not installed")
    if method == "auto" and not (run and os.path.isdir("/run/systemd/system")):
        return None
    return run


def arm(module, p, guard):
    state = ag.status(guard)
    if state["state"] == "armed":
        module.fail_json(msg="apply_guard: a guard is already armed in %s (deadline %s); confirm it or let it "
                             "roll back first" % (guard, state.get("deadline")), guard=guard, guard_state="armed")
    if module.check_mode:
        module.exit_json(changed=False, guard=guard, guard_state=state["state"])
    shutil.rmtree(guard, ignore_errors=True)
    os.makedirs(guard, mode=0o700)
    tools = _snapshot_rules(module, p, guard)
    files = ag.snapshot_files(guard, p["files"])
    ag.write_text(os.path.join(guard, "rollback.py"), ag.ROLLBACK_PROGRAM, 0o700)
    deadline = time.time() + p["timeout"]
    g = dict(tools, platform=p["platform"], files=files, deadline=deadline)
    ag.write_text(os.path.join(guard, "guard.json"), json.dumps(g))
    ag.write_text(os.path.join(guard, "armed"), "%f\n" % deadline)
    started = ag.start_timer(guard, p["timeout"], "systemd" if _use_systemd(module, p["method"]) else "process",
                             p["name"], ag.python_for_rollback(), _use_systemd(module, p["method"]))
    g.update(started)
    ag.write_text(os.path.join(guard, "guard.json"), json.dumps(g))
    module.exit_json(changed=True, guard=guard, guard_state="armed", deadline=deadline, method=started["method"])


def main():
    module = AnsibleModule(argument_spec=dict(
        state=dict(type="str", required=True, choices=["armed", "confirmed", "status"]),
        platform=dict(type="str", default="nftables", choices=["nftables", "iptables"]),
        timeout=dict(type="int", default=120),
        table=dict(type="str", default="ocs_edge"),
        chain_prefix=dict(type="str", default="OCS-EDGE"),
        files=dict(type="list", elements="path", default=[]),
        name=dict(type="str", default="ocs_edge"),
        guard_dir=dict(type="path", default=ag.GUARD_DIR),
        method=dict(type="str", default="auto", choices=["auto", "systemd", "process"]),
    ), supports_check_mode=True)
    p = module.params
    guard = os.path.join(p["guard_dir"], p["name"])
    if p["state"] == "armed":
        if p["timeout"] < 5:
            module.fail_json(msg="apply_guard: timeout %d: at least 5 seconds" % p["timeout"])
        arm(module, p, guard)
    if p["state"] == "status" or module.check_mode:
        info = ag.status(guard)
        module.exit_json(changed=False, guard=guard, guard_state=info["state"], status=info)
    outcome = ag.confirm(guard, module.get_bin_path("systemctl"))
    if outcome == "rolled_back":
        info = ag.status(guard)
        module.fail_json(msg="apply_guard: too late, the firewall rolled back at %s (not confirmed within the "
                             "timeout); the previous rule set is in force" % time.strftime(
                                 "%H:%M:%S", time.localtime(info.get("at") or 0)),
                         guard=guard, guard_state="rolled_back", status=info)
    module.exit_json(changed=outcome == "confirmed", guard=guard, guard_state=outcome)


if __name__ == "__main__":
    main()
