"""The argument spec of an installed module, built from its DOCUMENTATION options.

Used by the Windows tests and by the test-only shadow modules to validate the exact arguments
the collection sends against the real module's own documentation (never a hand-made copy).
"""
import ast

import yaml


def documented_spec(path):
    """Top-level options of the module at ``path`` -> an ArgumentSpecValidator spec."""
    with open(str(path)) as handle:
        tree = ast.parse(handle.read())
    doc = next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets))
    spec = {}
    for name, opt in yaml.safe_load(doc)["options"].items():
        entry = {"type": opt.get("type", "str")}
        for key in ("choices", "default", "aliases", "elements", "required"):
            if key in opt:
                entry[key] = opt[key]
        spec[name] = entry
    return spec
