# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply with confirmation on Linux firewalls (like Junos ``commit confirmed`` / ``iptables-apply``).

Before the change, ``arm`` snapshots what the collection owns (nftables: table inet <table>;
iptables: the owned chains and their jumps) and the persisted files, writes a self-contained
rollback program next to the snapshot (guard folder, default /run/ocs-edge-guard/<name>) and starts
it on the firewall itself: a systemd timer (systemd-run) or a detached background process. After
the timeout it restores the snapshot unless the controller confirmed over a new connection.
The arbiter is one rename: ``armed`` -> ``rolling`` (the rollback) or ``armed`` -> ``confirmed``
(the confirmation); whichever comes first wins, the other sees it and says so.
"""
from __future__ import absolute_import, division, print_function

import json
import os
import signal
import subprocess
import sys
import time

__metaclass__ = type

GUARD_DIR = "/run/ocs-edge-guard"
UNIT_PREFIX = "ocs-edge-guard-"

# The rollback program, written into the guard folder and run on the firewall with no Ansible
# around it (stdlib only). Its functions are also what the tests exercise (exec of this text).
ROLLBACK_PROGRAM = r'''#!/usr/bin/env python3
"""ocs.edge_firewall apply guard: restore the rule set of before the apply unless confirmed."""
import json, os, shutil, subprocess, sys, time

GUARD = os.path.dirname(os.path.abspath(__file__))


def is_owned(line, prefix):
    """An iptables-save line of the owned section: its chains, their rules, the jumps to them."""
    words = line.split()
    if line.startswith(":"):
        return words[0][1:].startswith(prefix + "-")
    if line.startswith("-A ") and len(words) > 1:
        if words[1].startswith(prefix + "-"):
            return True
        if "-j" in words and words.index("-j") + 1 < len(words):
            return words[words.index("-j") + 1].startswith(prefix + "-")
    return False


def merge_owned(current, snapshot, prefix, tails):
    """iptables-save -t filter text ``current`` with its owned lines replaced by the owned lines of
    ``snapshot``: owned chains declared after the others, jumps first in their built-in chain,
    except the jumps to the chains in ``tails`` (<prefix>-MGMT), last in theirs (after the bans)."""
    keep = [l for l in current.splitlines() if not is_owned(l, prefix)]
    owned = [l for l in snapshot.splitlines() if is_owned(l, prefix)]
    decls = [l for l in owned if l.startswith(":")]
    jumps = [l for l in owned if l.startswith("-A ") and not l.split()[1].startswith(prefix + "-")]
    last = [l for l in jumps if l.split()[l.split().index("-j") + 1] in tails]
    rules = [l for l in owned if l.startswith("-A ") and l.split()[1].startswith(prefix + "-")]
    last_decl = max([i for i, l in enumerate(keep) if l.startswith(":") or l.startswith("*")] or [-1])
    commit = keep.index("COMMIT") if "COMMIT" in keep else len(keep)
    out = keep[:last_decl + 1] + decls + [l for l in jumps if l not in last] + keep[last_decl + 1:commit] \
        + rules + last + keep[commit:]
    return "\n".join(out) + "\n"


def restore_rules(g):
    if g["platform"] == "nftables":
        proc = subprocess.run([g["nft"], "-f", os.path.join(GUARD, "rollback.nft")], capture_output=True, text=True)
    else:
        current = subprocess.run([g["iptables_save"], "-t", "filter"], capture_output=True, text=True, check=True).stdout
        with open(os.path.join(GUARD, "snapshot.rules")) as f:
            merged = merge_owned(current, f.read(), g["prefix"], g["tails"])
        proc = subprocess.run([g["iptables_restore"], "-T", "filter"], input=merged, capture_output=True, text=True)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def restore_files(g):
    for item in g["files"]:
        if item["copy"]:
            shutil.copy2(os.path.join(GUARD, item["copy"]), item["path"])
        elif os.path.exists(item["path"]):
            os.unlink(item["path"])


def main():
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
    try:
        os.rename(os.path.join(GUARD, "armed"), os.path.join(GUARD, "rolling"))
    except OSError:
        return 0                                    # confirmed (or rolled back) already
    with open(os.path.join(GUARD, "guard.json")) as f:
        g = json.load(f)
    ok, output = restore_rules(g)
    try:
        restore_files(g)
    except OSError as exc:
        ok, output = False, output + "\nfiles: %s" % exc
    with open(os.path.join(GUARD, "status.json"), "w") as f:
        json.dump({"state": "rolled_back", "at": time.time(), "ok": ok, "output": output}, f)
    os.rename(os.path.join(GUARD, "rolling"), os.path.join(GUARD, "rolled_back"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
'''


class GuardError(Exception):
    pass


def nft_rollback_script(table, snapshot):
    """The nft -f script that puts table inet <table> back as ``snapshot`` (``nft list table``
    output), or deletes it when there was none; one transaction."""
    head = "table inet %s {}\ndelete table inet %s\n" % (table, table)
    return head + (snapshot if snapshot else "")


def status(guard):
    """none | armed | confirmed | rolled_back (with the rollback's status.json) of a guard folder."""
    info = {"state": "none"}
    for state in ("armed", "rolling", "confirmed", "rolled_back"):
        if os.path.exists(os.path.join(guard, state)):
            info["state"] = "rolled_back" if state == "rolling" else state
    path = os.path.join(guard, "status.json")
    if os.path.exists(path):
        with open(path) as f:
            info.update(json.load(f))
    marker = os.path.join(guard, "guard.json")
    if os.path.exists(marker):
        with open(marker) as f:
            g = json.load(f)
        info.update(deadline=g.get("deadline"), method=g.get("method"))
    return info


def snapshot_files(guard, paths):
    """Copy each persisted file into the guard folder; -> manifest [{path, copy or None}]."""
    out = []
    for n, path in enumerate(paths):
        if os.path.exists(path):
            copy = "file-%d" % n
            with open(path, "rb") as src, open(os.path.join(guard, copy), "wb") as dst:
                dst.write(src.read())
            os.chmod(os.path.join(guard, copy), os.stat(path).st_mode & 0o7777)
            out.append({"path": path, "copy": copy})
        else:
            out.append({"path": path, "copy": None})
    return out


def write_text(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def start_timer(guard, timeout, method, name, python, systemd_run):
    """Start the rollback on the firewall itself; -> the method used and the process id (process)."""
    program = os.path.join(guard, "rollback.py")
    if method == "systemd":
        unit = UNIT_PREFIX + name
        subprocess.run([systemd_run, "--unit", unit, "--on-active=%ds" % timeout, "--timer-property=AccuracySec=1s",
                        "--collect", python, program, "0"], check=True, capture_output=True)
        return {"method": "systemd", "unit": unit}
    devnull = open(os.devnull, "rb")
    log = open(os.path.join(guard, "rollback.log"), "ab")
    proc = subprocess.Popen([python, program, str(timeout)], stdin=devnull, stdout=log, stderr=log,
                            start_new_session=True, close_fds=True, cwd="/")
    return {"method": "process", "pid": proc.pid}


def confirm(guard, systemctl=None):
    """Confirm: -> "confirmed", or the state that won ("rolled_back", "none")."""
    try:
        os.rename(os.path.join(guard, "armed"), os.path.join(guard, "confirmed"))
    except OSError:
        return status(guard)["state"]
    with open(os.path.join(guard, "guard.json")) as f:
        g = json.load(f)
    if g.get("pid"):
        try:
            os.kill(g["pid"], signal.SIGTERM)
        except OSError:
            pass
    if g.get("unit") and systemctl:
        subprocess.run([systemctl, "stop", g["unit"] + ".timer"], capture_output=True, check=False)
    write_text(os.path.join(guard, "status.json"), json.dumps({"state": "confirmed", "at": time.time()}), 0o644)
    return "confirmed"


def python_for_rollback():
    """The interpreter that runs the rollback: this one (Ansible's on the firewall)."""
    return sys.executable
