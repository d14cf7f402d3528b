#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: diagram_render
short_description: Write a Graphviz diagram's source and render it to SVG and PNG
version_added: "0.2.0"
description:
  - Writes O(source) (Graphviz DOT, for example the C(dot) of P(ocs.edge_firewall.edge_diagram#filter))
    to O(dest)C(.gv), and renders it with Graphviz C(dot) to O(dest)C(.svg) and O(dest)C(.png)
    (O(formats)).
  - Graphviz is an optional controller-side dependency. The Python library C(graphviz) is used
    when present, else the C(dot) program directly. When C(dot) is absent, only the C(.gv)
    source is written and a warning says so (render it later with C(dot -Tsvg -O file.gv)).
  - A file is written only when its content differs (check mode reports it without writing).
author:
  - ocs.edge_firewall maintainers
options:
  source:
    description: Graphviz DOT source.
    type: str
    required: true
  dest:
    description: Path of the files without extension; the folder must exist.
    type: path
    required: true
  formats:
    description: Formats to render besides the C(.gv) source.
    type: list
    elements: str
    choices: [svg, png, pdf]
    default: [svg, png]
requirements:
  - Graphviz C(dot) on the host that runs it (optional; without it only the source is written)
  - Python C(graphviz) (optional)
notes:
  - Runs where the playbook delegates it, normally the controller (C(localhost)).
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Figure 7 of the central site
  ocs.edge_firewall.diagram_render:
    source: "{{ (ocs_policy | ocs.edge_firewall.edge_diagram).central.dot }}"
    dest: out/policy/figure7-central
"""

RETURN = r"""
files:
  description: Files that were (or in check mode would be) written.
  returned: always
  type: list
  elements: str
  sample: [out/policy/figure7-central.gv, out/policy/figure7-central.svg]
rendered:
  description: Formats rendered.
  returned: always
  type: list
  elements: str
  sample: [svg, png]
renderer:
  description: What rendered them, C(python-graphviz), C(dot) or C(none).
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

try:
    import graphviz
except ImportError:  # optional: the dot program is used directly, or only the source written
    graphviz = None


def _render(module, source, fmt):
    """Rendered bytes, or None when Graphviz cannot run here."""
    if graphviz is not None:
        try:
            return graphviz.Source(source).pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            return None
        except graphviz.CalledProcessError as exc:
            module.fail_json(msg="dot failed to render %s: %s" % (fmt, exc.stderr))
    dot = module.get_bin_path("dot")
    if dot is None:
        return None
    rc, out, err = module.run_command([dot, "-T" + fmt], data=source, binary_data=True, encoding=None)
    if rc != 0:
        module.fail_json(msg="dot failed to render %s: %s" % (fmt, err))
    return out


def _write(module, path, content):
    """True when the file changed (or would change, in check mode)."""
    if os.path.exists(path):
        with open(path, "rb") as handle:
            if handle.read() == content:
                return False
    if not module.check_mode:
        tmp = path + ".tmp"
        with open(tmp, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            source=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            formats=dict(type="list", elements="str", choices=["svg", "png", "pdf"], default=["svg", "png"]),
        ),
        supports_check_mode=True,
    )
    source, dest = module.params["source"], module.params["dest"]
    if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
        module.fail_json(msg="dest %s: folder does not exist" % dest)
    changed, files, rendered = False, [], []
    if _write(module, dest + ".gv", source.encode("utf-8")):
        changed = True
        files.append(dest + ".gv")
    for fmt in module.params["formats"]:
        content = _render(module, source, fmt)
        if content is None:
            module.warn("Graphviz dot is not installed here: wrote %s.gv only (render it with "
                        "dot -T%s -O %s.gv, or install graphviz)" % (dest, fmt, dest))
            break
        rendered.append(fmt)
        if _write(module, "%s.%s" % (dest, fmt), content):
            changed = True
            files.append("%s.%s" % (dest, fmt))
    renderer = "none" if not rendered else ("python-graphviz" if graphviz is not None else "dot")
    module.exit_json(changed=changed, files=files, rendered=rendered, renderer=renderer)


if __name__ == "__main__":
    main()
