# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The policy export as files: what is written (pure) and writing it (only what changed).

Used by the action ocs.edge_firewall.policy_export (playbooks/export_policy.yml). One step
on the controller, no per-file task: a 10,000-server export writes 2,000
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
import pickle
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.aerleon_export import definitions, policy_files
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


def export_texts(policy, parts=PARTS, workers=1):
    """{relative path: text} of every text file of the export (figure sources included).

    With workers > 1 the jobs are shared out to forked processes (the policy is inherited,
    not copied): on two cores a 10,000-server export's text takes about half the time."""
    files = {}
    for texts in _forked_map(policy, _jobs(policy, parts), workers, lambda texts: texts):
        files.update(texts)
    return files


def export_files(policy, dest, parts=PARTS, workers=1, check_mode=False, with_diff=False):
    """Compute and write (sync_files) the export, each worker writing the files it computed.

    -> {"files": every relative path, "changed": those written, "diffs": [...], "sources":
    {figure source path: DOT text}} (the sources, to render the figures)."""
    def write(texts):
        changed, diffs = sync_files(dest, texts, check_mode, with_diff)
        return {"files": list(texts), "changed": changed, "diffs": diffs,
                "sources": {rel: text for rel, text in texts.items() if rel.endswith(".gv")}}
    out = {"files": [], "changed": [], "diffs": [], "sources": {}}
    for part in _forked_map(policy, _jobs(policy, parts), workers, write):
        for key in ("files", "changed", "diffs"):
            out[key] += part[key]
        out["sources"].update(part["sources"])
    out["changed"].sort()
    out["diffs"].sort(key=lambda entry: entry["after_header"])
    return out


def _jobs(policy, parts):
    """[(weight, job)]: the export cut into independent pieces, weighted by their measured
    cost per rule (about 10 microseconds a unit; docs/benchmark.md)."""
    fws = policy["firewalls"]
    seed, filtering = len(policy["rules"]), sum(len(fw["rules"]) for fw in fws.values())
    jobs = []
    if "policy" in parts:
        jobs.append((1.8 * (seed + filtering), ("policy",)))
    if "matrix" in parts:
        jobs.append((0.8 * seed, ("matrix",)))
    if "aerleon" in parts:
        jobs.append((1.0 * filtering, ("aerleon-def",)))
        names = sorted(fws)
        step = max(1, len(names) // 16)
        jobs += [(2.3 * sum(len(fws[n]["rules"]) for n in chunk), ("aerleon", chunk))
                 for chunk in (names[i:i + step] for i in range(0, len(names), step))]
    if "figures" in parts:
        jobs.append((1.5 * seed, ("figures",)))
    return jobs


def _run_job(policy, job):
    kind = job[0]
    if kind == "policy":
        return {"policy.json": policy_json(policy)}
    if kind == "matrix":
        return {"port-matrix.md": port_matrix(policy)}
    if kind == "aerleon-def":
        return {"aerleon/%s" % path: text for path, text in definitions(policy).items()}
    if kind == "aerleon":
        return {"aerleon/%s" % path: text for path, text in policy_files(policy, job[1]).items()}
    return {"figure7-%s.gv" % site: g["dot"] for site, g in site_graphs(policy).items()}


def _share_out(jobs, workers):
    """Longest job first to the least loaded worker -> one job list per worker."""
    loads = [[0, []] for _worker in range(workers)]
    for weight, job in sorted(jobs, key=lambda j: -j[0]):
        least = min(loads, key=lambda load: load[0])
        least[0] += weight
        least[1].append(job)
    return [jobs_ for _load, jobs_ in loads]


def _forked_map(policy, jobs, workers, finish):
    """finish(texts of the job) for every job: this process runs one share, forked children
    the others.

    Plain os.fork, not multiprocessing: an Ansible worker is a daemonic process and may not
    start a multiprocessing child. Serial where fork is absent or threads are running."""
    if workers <= 1 or not hasattr(os, "fork") or threading.active_count() > 1 or len(jobs) < 2:
        return [finish(_run_job(policy, job)) for _weight, job in jobs]
    shares = _share_out(jobs, workers)
    children = [_fork_share(policy, share, finish) for share in shares[1:] if share]
    results = [finish(_run_job(policy, job)) for job in shares[0]]
    for pid, read_end in children:
        results += _collect(pid, read_end)
    return results


def _fork_share(policy, share, finish):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, and leave without running the parent's cleanup
        status = 0
        try:
            os.close(read_end)
            payload = pickle.dumps([finish(_run_job(policy, job)) for job in share], protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            payload, status = pickle.dumps(RuntimeError("export job failed: %r" % exc)), 1
        try:
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
        finally:
            os._exit(status)  # pylint: disable=protected-access
    os.close(write_end)
    return pid, read_end


def _collect(pid, read_end):
    with os.fdopen(read_end, "rb") as inp:
        payload = inp.read()
    _pid, status = os.waitpid(pid, 0)
    if not payload:
        raise RuntimeError("export job process %d ended without a result (status %d)" % (pid, status))
    result = pickle.loads(payload)  # our own child's bytes, through a pipe only we hold
    if isinstance(result, BaseException):
        raise result
    return result


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

    -> (written relative paths, warnings); without dot, nothing rendered and a warning saying so."""
    dot = shutil.which("dot")
    if dot is None:
        return [], ["Graphviz dot is not installed here: wrote the figure7-*.gv sources only "
                    "(render one with dot -Tsvg -O figure7-<site>.gv, or install graphviz)"]

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
