"""A small parser for the seed page (docs/seed/ocs2007-edge-firewall-tables.txt).

It reads tables 9 to 26 into rows of verbatim fields, so that tests can hold the
curated catalog (data/seed_tables.yml) against the page itself, row by row.
"""
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "seed" / "ocs2007-edge-firewall-tables.txt"

_TABLE = re.compile(r"^Table (\d+) Firewall Settings for the (.+)$")
_FIELD = re.compile(
    r"(Local Port Range|Local Port|Direction|Remote Port|Local IP address|Local IP|Remote IP):\s*"
)


def _split_fields(line):
    """'Direction: Inbound Remote Port: Any' -> [('Direction','Inbound'), ('Remote Port','Any')]."""
    marks = list(_FIELD.finditer(line))
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
        out.append((m.group(1), line[m.end():end].strip()))
    return out


def parse_page(path=PAGE):
    """Return {table_number: {"title": str, "rows": [dict, ...]}} in page order."""
    tables = {}
    current = None
    firewall = None
    row = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        m = _TABLE.match(line)
        if m:
            current = {"title": m.group(2), "rows": []}
            tables[int(m.group(1))] = current
            firewall, row = None, {}
            continue
        if current is None:
            continue
        if line.endswith("Firewall Policy Rules") and not line.startswith("Firewall Policy"):
            current = None  # a topology heading ends the previous table
            continue
        if line in ("Internal", "External"):
            firewall = line.lower()
            continue
        if re.fullmatch(r"\d+", line) and row:
            row["figure"] = int(line)
            row["firewall"] = firewall
            current["rows"].append(row)
            row = {}
            continue
        for key, value in _split_fields(line):
            key = {"Local Port Range": "Local Port", "Local IP address": "Local IP"}[key] \
                if key in ("Local Port Range", "Local IP address") else key
            row[key] = value
    return tables
