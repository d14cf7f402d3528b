# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: edge_drift_report (what a check-mode run recorded per firewall -> the report),
edge_drift_junit and edge_drift_markdown (report -> JUnit XML / Markdown), edge_deploy_summary
and edge_deploy_summary_markdown (the end of a deploy).

Documentation: the .yml files of the same names beside this file. Logic: plugins/plugin_utils/drift.py
and deploy_summary.py.
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plain import plain
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.deploy_summary import (
    deploy_summary,
    summary_markdown,
)
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.drift import (
    build_report,
    report_junit,
    report_markdown,
)


def edge_drift_report(hostvars, firewalls, kind="drift", fact="ocs_firewall_check"):
    """`hostvars | ocs.edge_firewall.edge_drift_report(ocs_policy.firewalls.keys())` -> the report."""
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("edge_drift_report expects hostvars, got %s" % type(hostvars).__name__)
    names = [str(f) for f in firewalls]
    checks = {}
    for name in names:
        if name in hostvars and fact in hostvars[name]:
            checks[name] = plain(hostvars[name][fact])
    return build_report(checks, names, str(kind))


def edge_drift_junit(report):
    return report_junit(plain(report))


def edge_drift_markdown(report):
    return report_markdown(plain(report))


def edge_deploy_summary(preflight, hostvars, verify=None, allow_partial=False, fact="ocs_firewall_apply"):
    """`ocs_preflight | ocs.edge_firewall.edge_deploy_summary(hostvars, verify=ocs_verify)` -> the summary."""
    pre = plain(preflight)
    applies = {}
    for entry in pre["firewalls"]:
        name = entry["firewall"]
        if name in hostvars and fact in hostvars[name]:
            applies[name] = plain(hostvars[name][fact])
    return deploy_summary(pre, applies, plain(verify) if verify else None, bool(allow_partial))


def edge_deploy_summary_markdown(summary):
    return summary_markdown(plain(summary))


class FilterModule:
    def filters(self):
        return {"edge_drift_report": edge_drift_report, "edge_drift_junit": edge_drift_junit,
                "edge_drift_markdown": edge_drift_markdown, "edge_deploy_summary": edge_deploy_summary,
                "edge_deploy_summary_markdown": edge_deploy_summary_markdown}
