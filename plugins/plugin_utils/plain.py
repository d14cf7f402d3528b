# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible's lazy/tagged containers and scalars -> plain dicts, lists, str, bool and int.

The controller-side code (policy engine, Windows backend) works on plain data; every filter and
the tests' inventory loader convert with this one function.
"""
from __future__ import annotations

from collections.abc import Mapping


def plain(value):
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    return value
