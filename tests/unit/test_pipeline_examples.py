"""docs/examples/: the pipelines call scripts/ocs-pipeline with arguments it accepts, every
subcommand of the story (plan, check, apply, drift) is used, and the playbooks they name exist."""
import importlib.machinery
import importlib.util
import re
import shlex

import pytest
import yaml

from inventory_loader import REPO

EXAMPLES = REPO / "docs" / "examples"


def _pipeline_module():
    loader = importlib.machinery.SourceFileLoader("ocs_pipeline", str(REPO / "scripts" / "ocs-pipeline"))
    spec = importlib.util.spec_from_loader("ocs_pipeline", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _commands(doc):
    """Every shell line of a GitHub workflow (steps' run) or GitLab file (script lists)."""
    out = []
    if "jobs" in doc:
        for job in doc["jobs"].values():
            out += [line for step in job["steps"] if "run" in step for line in step["run"].splitlines()]
    else:
        for job in doc.values():
            if isinstance(job, dict):
                for key in ("before_script", "script", "after_script"):
                    out += job.get(key) or []
    return out


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_pipeline_calls_ocs_pipeline_with_valid_arguments(name):
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    parser = _pipeline_module().build_parser()
    used = set()
    for line in _commands(doc):
        if '"$OCS"' not in line:
            continue
        argv = shlex.split(re.sub(r"\$\{\{[^}]*\}\}|\$[A-Z_]+", "X", line.replace('"$OCS"', "")))
        args = parser.parse_args(argv)          # SystemExit (test failure) on anything it does not accept
        used.add(args.command)
    assert used == {"plan", "check", "apply", "drift"}


def test_named_playbooks_exist():
    text = "".join((EXAMPLES / n).read_text() for n in ("github-actions.yml", "gitlab-ci.yml", "awx.md"))
    named = set(re.findall(r"ocs\.edge_firewall\.([a-z_]+)", text))
    assert {"export_policy", "plan", "drift", "deploy_edge_firewalls"} <= named
    for book in named:
        assert (REPO / "playbooks" / ("%s.yml" % book)).is_file(), book
