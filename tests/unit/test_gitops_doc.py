"""docs/gitops.md holds the plan the tool writes for its example change: regenerate and compare."""
import os
import subprocess
import sys

from inventory_loader import REPO


def test_gitops_doc_example_plan_is_current():
    env = dict(os.environ, PATH="%s:%s" % (os.path.dirname(sys.executable), os.environ["PATH"]))
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-gitops-doc"), "--check"], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    doc = (REPO / "docs" / "gitops.md").read_text()
    assert "| `central-t18-f5-in` | 18 | 5 | remote_addresses | 10.10.1.10 | 10.10.1.20 |" in doc
    assert "+\t\tip saddr 10.10.1.20 ip daddr { 172.16.1.31, 172.16.1.32 } tcp dport 5061 accept" in doc
