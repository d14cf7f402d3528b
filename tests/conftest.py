"""Make the collection importable as ocs.edge_firewall for every test.

A clone is linked as .cache/collections/ansible_collections/ocs/edge_firewall; a copy that
already sits at ansible_collections/ocs/edge_firewall (installed, or ansible-test's layout)
is used where it is: a link inside it would make a loop that test runners walk into.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if (REPO.parent.name, REPO.parent.parent.name) == ("ocs", "ansible_collections"):
    COLLECTIONS = REPO.parents[2]
else:
    COLLECTIONS = REPO / ".cache" / "collections"
    subprocess.run([str(REPO / "scripts" / "link-collection")], check=True)
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
os.environ.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
