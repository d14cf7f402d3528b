import sys
from pathlib import Path

# tests/ (shared helpers) and tests/unit/ (test modules that import each other): ansible-test
# units imports test files as collection packages, so their folder is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
