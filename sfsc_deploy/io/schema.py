"""Exact types for a dataclass read from a file: one checker for every format's typed reader.

A JSON or TOML value must have the type the dataclass field declares: ``"false"`` (a string) is
not false, ``true`` is not 1, ``"8"`` is not 8, and a float is finite. The field annotations are
the schema, so a field added to a dataclass is checked without a second list to keep in step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from sfsc_deploy.errors import SfscError

_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "None": "null",
}


def _alternatives(annotation: str) -> list[str]:
    return [a.strip() for a in annotation.split("|")]


def _matches(value: Any, wanted: str) -> bool:
    if wanted == "None":
        return value is None
    if wanted == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # a bool is an int to Python, never to a schema
    if wanted == "int":
        return isinstance(value, int)
    if wanted == "float":
        return isinstance(value, int | float)
    if wanted == "str":
        return isinstance(value, str)
    if wanted.startswith(("list[", "tuple[")):
        inner = [t.strip() for t in wanted[wanted.index("[") + 1 : -1].split(",")]
        if not isinstance(value, list | tuple):
            return False
        if wanted.startswith("tuple[") and inner[-1] != "..." and len(value) != len(inner):
            return False
        return all(_matches(v, inner[0]) for v in value)
    raise TypeError(f"schema cannot check the annotation {wanted!r}")  # a programming error


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return not isinstance(value, list | tuple) or all(_finite(v) for v in value)


def describe(annotation: str) -> str:
    parts = []
    for alt in _alternatives(annotation):
        if alt.startswith(("list[", "tuple[")):
            inner = [t.strip() for t in alt[alt.index("[") + 1 : -1].split(",")]
            count = {2: "two ", 3: "three "}.get(len(inner), "") if alt.startswith("tuple[") else ""
            parts.append(f"a list of {count}{'integers' if inner[0] == 'int' else 'numbers'}")
        else:
            parts.append(_WORDS[alt])
    return " or ".join(parts)


def check_types(data: Mapping[str, Any], cls: type, where: str, skip: tuple[str, ...] = ()) -> None:
    """Refuse unknown keys and any value whose type is not its field's, naming key and value."""
    annotations = {f.name: str(f.type) for f in fields(cls) if f.name not in skip}
    unknown = sorted(set(data) - set(annotations) - set(skip))
    if unknown:
        raise SfscError(f"{where}: unknown fields {unknown}; allowed: {sorted(annotations)}")
    for key, value in data.items():
        if key in skip:
            continue
        wanted = annotations[key]
        if not any(_matches(value, alt) for alt in _alternatives(wanted)):
            shown = f"{type(value).__name__} {value!r}"[:60]
            raise SfscError(f"{where}: {key} must be {describe(wanted)}, got {shown}")
        if not _finite(value):
            raise SfscError(f"{where}: {key} must be finite, got {value!r}"[:160])
