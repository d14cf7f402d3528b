# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pfSense as a backend.Backend (docs/backend-contract.md), run by the contract's one driver,
backend.enforce: read_live, desired, compare, render, validate, apply, persist, remove.

On pfSense the live state and its persistence are the same file: ``apply`` writes config.xml
the way ``write_config()`` does and loads it into pf (a failed load puts the previous file
back and reloads it); ``persist`` has nothing to add (pfSense boots from config.xml).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shlex
import time

from ansible_collections.ocs.edge_firewall.plugins.module_utils import pfsense as pflib
from ansible_collections.ocs.edge_firewall.plugins.module_utils.backend import Backend, Changes, enforce, exit_module
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import FirewallError, where

OPTIONS = ("default_deny", "placement", "placement_separator", "no_nat", "no_nat_scope")


def argument_spec():
    return dict(
        firewall=dict(type="raw", required=True),
        name=dict(type="str", default="firewall"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        default_deny=dict(type="bool", default=True),
        placement=dict(type="str", choices=["top", "separator", "bottom"], default="top"),
        placement_separator=dict(type="str", default=""),
        no_nat=dict(type="bool", default=True),
        no_nat_scope=dict(type="str", choices=["perimeter", "av_edge"], default="perimeter"),
        config_path=dict(type="path", default="/cf/conf/config.xml"),
        backup_dir=dict(type="path", default="/cf/conf/backup"),
        cache_file=dict(type="str", default="/tmp/config.cache"),
        lock_file=dict(type="str", default="/tmp/config.lock"),
        reload_command=dict(type="str", default="/etc/rc.filter_configure_sync"),
        username=dict(type="str", default=pflib.DEFAULT_USERNAME),
    )


class Live(object):
    """config.xml as read: its bytes and its tree (values as pfSense reads them)."""

    def __init__(self, data, root):
        self.data, self.root = data, root


class PfSenseBackend(Backend):
    """The contract's steps on config.xml. ``desired`` is the items of the FIREWALL (data);
    ``compare`` puts them on a copy of a live tree (pfsense_apply) and compares the dumps, so
    the same call checks the read-back after apply."""

    platform = "pfsense"
    owned = "config.xml items marked [ocs.edge_firewall]"
    error = FirewallError

    def __init__(self, params, run_command, now=None):
        Backend.__init__(self, params["name"])
        self.p = params
        self.run_command = run_command
        self.now = int(time.time()) if now is None else now
        self.username = pflib.DEFAULT_USERNAME
        self.live = None
        self.warnings, self.extra = None, {}
        self._rendered = {}

    def lock(self, check_mode):
        """pfSense's own config lock, held from read_live to apply (none in check mode)."""
        return pflib.ConfigLock(self.p["lock_file"] if not check_mode else "")

    def read_live(self):
        data = pflib.read_bytes(self.p["config_path"])
        if data is None:
            raise pflib.PfSenseError("%s: %s does not exist (is this a pfSense host?)"
                                     % (where(self.name, "config_path"), self.p["config_path"]))
        self.live = Live(data, pflib.parse_config(data))
        return self.live

    def desired(self, firewall):
        """FIREWALL -> the items config.xml must hold; checked against the live interfaces."""
        self.username = pflib.clean_username(self.p["username"], self.name)
        pflib.check_xml_text(self.name, "firewall name")
        want = pflib.desired(firewall, self.live.root, self.name, dict((k, self.p[k]) for k in OPTIONS))
        pflib.validate(self.live.root, want, self.name)
        return want

    def _render(self, want, live):
        """The live tree with the desired items in place -> (new root, ids, warnings), cached."""
        key = (id(want), id(live))
        if key not in self._rendered:
            new, result = pflib.render(live.root, want, self.name, self.now, self.username)
            self._rendered[key] = (new, pflib.compare(live.root, new, result))
        return self._rendered[key]

    def compare(self, desired, live):
        new, result = self._render(desired, live)
        if self.warnings is None:           # the plan's warnings, not the read-back's
            self.warnings = list(result["warnings"])
        changes = Changes(result["created"], result["updated"], result["removed"])
        if result["changed"] and not changes.changed:
            changes.add(updated=["order"])
        return changes

    def render(self, state):
        """Listing of the managed items (aliases, rules per interface, outbound NAT)."""
        if state is None:
            return ""
        if isinstance(state, Live):
            return pflib.listing(state.root)
        return pflib.listing(self._render(state, self.live)[0])

    def validate(self, desired, live):
        """No pfSense here to ask: the file to be written must at least parse back to the same tree."""
        data = pflib.dump_config(self._render(desired, live)[0])
        if pflib.dump_config(pflib.parse_config(data)) != data:
            raise pflib.PfSenseError("%sthe rendered config.xml does not read back the same" % where(self.name, ""))

    def apply(self, desired, live):
        self._write(self._render(desired, live)[0], live)

    def remove(self, live):
        self._write(self._render(pflib.desired(None, live.root, self.name, state="absent"), live)[0], live)

    def owned_objects(self, live):
        new, result = self._render(pflib.desired(None, live.root, self.name, state="absent"), live)
        return result["removed"]

    def _write(self, new_root, live):
        """write_config() (backup first), then the reload; a failed reload restores the backup."""
        summary = "ocs.edge_firewall: policy of %s" % self.name
        written = pflib.write_config(self.p["config_path"], self.p["backup_dir"], self.p["cache_file"],
                                     live.root, live.data, new_root, self.now, self.username, summary)
        self.extra["backup"] = written["backup"]
        self.extra["write_warnings"] = written["warnings"]
        failure = self._reload(written["backup"], self.extra) if self.p["reload_command"] else None
        if failure:
            raise pflib.PfSenseError(failure)

    def _reload(self, backup, extra):
        """Run the reload; on failure put the previous file back, reload it, say what happened."""
        try:
            argv = shlex.split(self.p["reload_command"])
        except ValueError as exc:
            raise pflib.PfSenseError("firewall %s: reload_command %r: %s" % (self.name, self.p["reload_command"], exc))
        rc, out, err = self.run_command(argv)
        extra["reload"] = dict(rc=rc, stdout=out, stderr=err, command=self.p["reload_command"])
        if rc == 0:
            return None
        pflib.restore_backup(self.p["config_path"], backup, self.p["cache_file"])
        rc2, out2, err2 = self.run_command(argv)
        extra["restore_reload"] = dict(rc=rc2, stdout=out2, stderr=err2)
        return ("firewall %s: the filter reload (%s) failed with rc %d: %s%s\n%s was restored from the backup %s "
                "(the file before this run); reloading it %s."
                % (self.name, self.p["reload_command"], rc, out, err, self.p["config_path"], backup,
                   "succeeded: pf runs the previous rules" if rc2 == 0 else
                   "failed too (rc %d: %s%s): check Status > System Logs" % (rc2, out2, err2)))


def run(module):
    """The module's main: enforce under pfSense's config lock; warnings and the write's details
    (backup, reload) added to the contract's result."""
    backend = PfSenseBackend(module.params, module.run_command)
    try:
        with backend.lock(module.check_mode):
            result = enforce(backend, module.params["firewall"], module.params["state"], module.check_mode)
    except FirewallError as exc:
        exit_module(module, dict(changed=False, created=[], updated=[], removed=[],
                                 warnings=backend.warnings or [], **backend.extra), failed_msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg="%s%s: %s" % (where(backend.name, ""), getattr(exc, "filename", None)
                                           or module.params["config_path"], exc), **backend.extra)
    result["warnings"] = result["warnings"] + (backend.warnings or []) + backend.extra.pop("write_warnings", [])
    result.update(backend.extra)
    exit_module(module, result)
