# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pfSense as a Backend: the steps desired, read_live, validate, render, compare, apply,
persist, remove, and :func:`enforce`, the one driver that chains them for the module.

On pfSense the live state and its persistence are the same file: ``apply`` writes config.xml
the way ``write_config()`` does and loads it into pf (a failed load puts the previous file
back); ``persist`` has nothing left to do (pfSense boots from config.xml).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shlex
import time

from ansible_collections.ocs.edge_firewall.plugins.module_utils import pfsense as pflib

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


class PfSenseBackend(object):
    platform = "pfsense"
    error = pflib.PfSenseError

    def __init__(self, params, run_command, now=None):
        self.p = params
        self.name = params["name"]
        self.run_command = run_command
        self.now = int(time.time()) if now is None else now
        self.live_bytes = self.live_root = None
        self.username = pflib.DEFAULT_USERNAME

    def lock(self, check_mode):
        """pfSense's own config lock, held from read_live to apply (none in check mode)."""
        return pflib.ConfigLock(self.p["lock_file"] if not check_mode else "")

    def read_live(self):
        self.live_bytes = pflib.read_bytes(self.p["config_path"])
        if self.live_bytes is None:
            raise pflib.PfSenseError("firewall %s: %s does not exist (is this a pfSense host?)"
                                     % (self.name, self.p["config_path"]))
        self.live_root = pflib.parse_config(self.live_bytes)
        return self.live_root

    def desired(self):
        return pflib.desired(self.p["firewall"], self.live_root, self.name,
                             dict((k, self.p[k]) for k in OPTIONS), "present")

    def remove(self):
        """state absent: nothing of ours is desired."""
        return pflib.desired(None, self.live_root, self.name, None, "absent")

    def validate(self, want):
        pflib.check_xml_text(self.name, "firewall name")
        self.username = pflib.clean_username(self.p["username"], self.name)
        pflib.validate(self.live_root, want, self.name)

    def render(self, want):
        return pflib.render(self.live_root, want, self.name, self.now, self.username)

    def compare(self, rendered):
        new_root, result = rendered
        result = pflib.compare(self.live_root, new_root, result)
        result["root"] = new_root
        result["diff"] = {"before": result.pop("before"), "after": result.pop("after"),
                          "before_header": "%s (managed items)" % self.p["config_path"],
                          "after_header": "policy of %s" % self.name}
        return result

    def apply(self, plan):
        """Write config.xml as write_config() does (backup first), then load it into pf.
        -> (extra result keys, failure message or None)."""
        summary = "ocs.edge_firewall: policy of %s (%d created, %d removed, %d updated)" % (
            self.name, len(plan["created"]), len(plan["removed"]), len(plan["updated"]))
        written = pflib.write_config(self.p["config_path"], self.p["backup_dir"], self.p["cache_file"],
                                     self.live_root, self.live_bytes, plan["root"], self.now,
                                     self.username, summary)
        extra = {"backup": written["backup"], "warnings": written["warnings"]}
        failure = self._reload(written["backup"], extra) if self.p["reload_command"] else None
        return extra, failure

    def persist(self, plan):
        """Nothing beyond apply: config.xml is what pfSense boots from."""
        return None

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


RESULT_KEYS = ("changed", "created", "updated", "removed", "diff", "warnings")


def enforce(backend, state="present", check_mode=False, diff=False):
    """The driver: read_live -> desired/remove -> validate -> render -> compare -> apply -> persist.

    -> (result with the common keys, failure message or None). The diff is returned whenever
    something differs (and with --diff). Errors of the backend (``backend.error``) propagate.
    """
    with backend.lock(check_mode):
        backend.read_live()
        want = backend.desired() if state == "present" else backend.remove()
        backend.validate(want)
        plan = backend.compare(backend.render(want))
        result = dict((k, plan[k]) for k in RESULT_KEYS)
        if not (plan["changed"] or diff):
            del result["diff"]
        if check_mode or not plan["changed"]:
            return result, None
        extra, failure = backend.apply(plan)
    backend.persist(plan)
    result["warnings"] = result["warnings"] + extra.pop("warnings")
    result.update(extra)
    return result, failure
