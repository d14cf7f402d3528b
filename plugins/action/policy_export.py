# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action policy_export: inventory -> policy -> export files, in one step on the controller.

Documentation: plugins/modules/policy_export.py. The files and how they are written:
plugins/plugin_utils/export.py.
"""
from __future__ import annotations

import gc
import os
from contextlib import contextmanager

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.export import (
    FIGURE_FORMATS,
    PARTS,
    export_files,
    figures_to_render,
    render_figures,
    stale_files,
)
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.hostvars_view import policy_from_hostvars
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import PolicyError

ARGS = {
    "dest": {"type": "path", "required": True},
    "parts": {"type": "list", "elements": "str", "choices": list(PARTS), "default": list(PARTS)},
    "figure_formats": {"type": "list", "elements": "str", "choices": list(FIGURE_FORMATS), "default": ["svg", "png"]},
    "hosts": {"type": "list", "elements": "str"},
    "prune": {"type": "bool", "default": True},
}


@contextmanager
def _no_cyclic_gc():
    """The policy and its files are millions of acyclic objects: the cyclic collector would
    rescan them again and again while they are built (a 10,000-server export: 1.7 s of 9)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_diff = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _spec, args = self.validate_argument_spec(argument_spec=ARGS)
        dest = os.path.realpath(args["dest"])
        if os.path.exists(dest) and not os.path.isdir(dest):
            raise AnsibleActionFail("dest (ocs_policy_export_dir) %s exists and is not a folder" % dest)
        with _no_cyclic_gc():
            try:
                policy = policy_from_hostvars(task_vars["hostvars"], args["hosts"])
            except PolicyError as exc:
                raise AnsibleActionFail(str(exc)) from None
            try:
                result.update(self._export(policy, dest, args))
            except (OSError, RuntimeError) as exc:
                # no firewall is touched by an export; say which files may already be new
                raise AnsibleActionFail("dest (ocs_policy_export_dir) %s: the export failed: %s. Each file is replaced "
                                        "whole, so a file is either the previous one or the new one; run the "
                                        "export again once this is fixed" % (dest, exc)) from None
        result["warnings"] = list(policy["warnings"]) + result.get("warnings", [])
        return result

    def _export(self, policy, dest, args):
        """Write what changed, remove what is stale, render the figures whose source changed."""
        check, parts = self._task.check_mode, args["parts"]
        done = export_files(policy, dest, parts, os.cpu_count() or 1, check, self._task.diff)
        changed, diffs, sources = done["changed"], done["diffs"], done["sources"]
        todo = figures_to_render(dest, sources, set(changed), args["figure_formats"])
        rendered, warnings = self._render(dest, sources, todo, check)
        keep = set(done["files"]) | {"%s.%s" % (rel[:-3], fmt) for rel in sources for fmt in args["figure_formats"]}
        removed = stale_files(dest, parts, keep) if args["prune"] and os.path.isdir(dest) else []
        if not check:
            for rel in removed:
                os.remove(os.path.join(dest, rel))
        out = {"changed": bool(changed or rendered or removed), "dest": dest, "written": changed + rendered,
               "removed": removed, "warnings": warnings,
               "counts": {"rules": len(policy["rules"]), "firewalls": len(policy["firewalls"]),
                          "sites": len((policy.get("deployment") or {}).get("sites") or {}), "files": len(done["files"])}}
        if self._task.diff:
            out["diff"] = diffs + [{"prepared": "%s: removed\n" % rel} for rel in removed]
        return out

    @staticmethod
    def _render(dest, sources, todo, check):
        if not todo:
            return [], []
        if check:
            return ["%s.%s" % (stem, fmt) for stem, fmt in todo], []
        return render_figures(dest, sources, todo)
