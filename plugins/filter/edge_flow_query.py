# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter edge_flow_query: would this flow pass the policy, on which firewall, by which rule?

Documentation: edge_flow_query.yml beside this file. The evaluator is
plugins/plugin_utils/flowquery.py (the lab's probe matrix uses the same one).
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.plain import plain
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.flowquery import compare, evaluate, format_answer
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import load_catalog


def _opt(value):
    """An unset extra var arrives as None or ''."""
    return None if value in (None, "") else str(value)


def _live_states(live):
    """{host: live_rules result (registered) or its "live"} -> {host: live state}; hosts whose
    read was skipped or failed are left out (judged by the policy, and said so)."""
    out, missing = {}, []
    for host, value in (plain(live) or {}).items():
        state = value.get("live", value) if isinstance(value, dict) else None
        if isinstance(state, dict) and "chains" in state:
            out[host] = state
        else:
            missing.append(host)
    return out, missing


def edge_flow_query(policy, src, dst, proto="tcp", dport=None, sport=None, src_zone=None, dst_zone=None,
                    src_site=None, dst_site=None, live=None):
    """`policy | ocs.edge_firewall.edge_flow_query(src, dst, proto, dport)` -> the answer dict
    (``allowed``, ``hops``, ``rules``, ``why``, ``rule_info``, and ``text``: lines to print).
    With ``live`` ({firewall: live_rules result}), those firewalls are judged by what they enforce."""
    if not isinstance(policy, Mapping) or "firewalls" not in policy:
        raise AnsibleFilterError("edge_flow_query expects the policy (hostvars | ocs.edge_firewall.edge_policy)")
    if not src or not dst:
        raise AnsibleFilterError("edge_flow_query: src and dst are required (addresses)")
    states, missing = _live_states(live) if live is not None else ({}, [])
    policy = plain(policy)
    question = (str(proto), str(src), str(dst), _opt(dport))
    options = dict(sport=_opt(sport), src_zone=_opt(src_zone), dst_zone=_opt(dst_zone), src_site=_opt(src_site),
                   dst_site=_opt(dst_site), catalog=load_catalog())
    try:
        answer = evaluate(policy, question[0], question[1], question[2], question[3], live=states, **options)
        if live is not None:
            by_policy = evaluate(policy, question[0], question[1], question[2], question[3], **options)
    except ValueError as exc:
        raise AnsibleFilterError("edge_flow_query: %s" % exc) from None
    answer["text"] = format_answer(answer)
    if live is not None:
        answer["live_missing"] = missing
        answer["text"] += ["  (not read, judged by the policy: %s)" % ", ".join(missing)] if missing else []
        answer["drift"], lines = compare(by_policy, answer)
        answer["text"] += lines
    return answer


class FilterModule:
    def filters(self):
        return {"edge_flow_query": edge_flow_query}
