# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The policy export as files: what is written (pure) and writing it (only what changed).

Used by the action ocs.edge_firewall.policy_export (playbooks/export_policy.yml). One pass
over the policy in this process, no per-file task: a 10,000-server export writes 2,000
Aerleon files and 1,000 figures in seconds instead of one Ansible task iteration each.

Layout under the export folder:
  policy.json, port-matrix.md          parts "policy", "matrix"
  aerleon/def/*.yaml, aerleon/policies/pol/<firewall>.yaml      part "aerleon"
  figure7-<site>.gv (+ .svg/.png rendered by Graphviz dot)      part "figures"
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.aerleon_export import aerleon_files
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.diagram import site_graphs
from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.matrix import port_matrix

PARTS = ("policy", "matrix", "aerleon", "figures")
FIGURE_FORMATS = ("svg", "png", "pdf")
# Files the export owns, per part: a file matching these and not written by this export is
# stale (a removed firewall or site) and is removed; nothing else in the folder is touched.
OWNED = {
    "policy": ("policy.json",),
    "matrix": ("port-matrix.md",),
    "aerleon": ("aerleon/def/*.yaml", "aerleon/policies/pol/*.yaml"),
    "figures": tuple("figure7-*.%s" % ext for ext in ("gv",) + FIGURE_FORMATS),
}
DIFF_MAX = 64 * 1024  # larger files are named in the diff, not shown


def policy_json(policy):
    """policy.json text: as `to_nice_json(indent=2)` writes it, with a final newline."""
    return json.dumps(policy, indent=2, sort_keys=True, separators=(",", ": ")) + "\n"


def export_texts(policy, parts=PARTS):
    """{relative path: text} of every text file of the export (figure sources included)."""
    files = {}
    if "policy" in parts:
        files["policy.json"] = policy_json(policy)
    if "matrix" in parts:
        files["port-matrix.md"] = port_matrix(policy)
    if "aerleon" in parts:
        files.update(("aerleon/%s" % path, text) for path, text in aerleon_files(policy).items())
    if "figures" in parts:
        files.update(("figure7-%s.gv" % site, g["dot"]) for site, g in site_graphs(policy).items())
    return files


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write(path, content):
    """Atomic: a reader sees the old file or the new one, never a part."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as handle:
        handle.write(content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _diff_entry(rel, before, after):
    if max(len(before or b""), len(after)) > DIFF_MAX:
        return {"before_header": rel, "after_header": rel,
                "prepared": "%s: %s (%d bytes; too large to show)\n" % (rel, "changed" if before else "new", len(after))}
    return {"before_header": rel, "after_header": rel,
            "before": (before or b"").decode("utf-8", "replace"), "after": after.decode("utf-8", "replace")}


def sync_files(dest, texts, check_mode=False, with_diff=False):
    """Write the files whose content differs. -> (changed relative paths, diff entries)."""
    changed, diffs = [], []
    for rel in sorted(texts):
        path = os.path.join(dest, rel)
        content = texts[rel].encode("utf-8")
        before = _read(path)
        if before == content:
            continue
        changed.append(rel)
        if with_diff:
            diffs.append(_diff_entry(rel, before, content))
        if not check_mode:
            _write(path, content)
    return changed, diffs


def _owned(rel, pattern):
    """`rel` matches `pattern` folder by folder (fnmatch's * alone would cross a /)."""
    rel_parts, pat_parts = rel.split("/"), pattern.split("/")
    return len(rel_parts) == len(pat_parts) and all(map(fnmatch.fnmatchcase, rel_parts, pat_parts))


def stale_files(dest, parts, keep):
    """Relative paths the export owns (OWNED) that this export did not produce."""
    patterns = [p for part in parts for p in OWNED[part]]
    stale = []
    for root, _dirs, names in os.walk(dest):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), dest).replace(os.sep, "/")
            if rel not in keep and any(_owned(rel, p) for p in patterns):
                stale.append(rel)
    return sorted(stale)


def figures_to_render(dest, sources, changed, formats):
    """[(site file stem, format)] whose rendering is missing or whose source changed."""
    todo = []
    for rel in sorted(sources):
        stem = rel[:-len(".gv")]
        for fmt in formats:
            if rel in changed or not os.path.exists(os.path.join(dest, "%s.%s" % (stem, fmt))):
                todo.append((stem, fmt))
    return todo


def render_figures(dest, sources, todo, workers=None):
    """Render with Graphviz dot, in parallel (dot is a process; threads only wait on it).

    -> (written relative paths, error messages). Raises FileNotFoundError without dot."""
    dot = shutil.which("dot")
    if dot is None:
        raise FileNotFoundError("dot")

    def one(item):
        stem, fmt = item
        run = subprocess.run([dot, "-T" + fmt], input=sources[stem + ".gv"].encode("utf-8"),
                             capture_output=True, check=False)
        if run.returncode:
            return None, "dot -T%s %s.gv: %s" % (fmt, stem, run.stderr.decode("utf-8", "replace").strip())
        _write(os.path.join(dest, "%s.%s" % (stem, fmt)), run.stdout)
        return "%s.%s" % (stem, fmt), None

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        results = list(pool.map(one, todo))
    return [path for path, _err in results if path], [err for _path, err in results if err]
