"""Read the TensorRT Python API snapshots beside this file (made by ``generate.py``; see its docstring).

``resolve("11.4.0.106", "BuilderFlag.FP16")`` tells whether ``tensorrt.BuilderFlag.FP16`` exists in that
release; ``lookup`` returns the snapshot's entry for it (kind, signatures, property type, ...).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


VERSIONS: tuple[str, ...] = tuple(sorted((p.stem for p in HERE.glob("*.json")), key=_key))
ENUM_ATTRIBUTES = {
    "name": {"kind": "property", "readonly": True, "type": "str"},
    "value": {"kind": "property", "readonly": True, "type": "int"},
}


@cache
def load(version: str) -> dict:
    path = HERE / f"{version}.json"
    if not path.is_file():
        raise KeyError(f"no TensorRT API snapshot for {version}; have {', '.join(VERSIONS)}")
    return json.loads(path.read_text())


def type_path(version: str, type_name: str | None) -> str | None:
    """``"tensorrt.ILogger.Severity"`` (or ``"nvinfer1::ICudaEngine"``) -> ``"ILogger.Severity"`` when that
    is a class or enum of the snapshot, else None (``int``, ``str``, ``tensorrt.Dims`` stays ``Dims``)."""
    if not type_name:
        return None
    m = re.fullmatch(
        r"(?:typing\.)?(?:Optional\[)?(?:tensorrt\.|nvinfer1::)([\w.:]+?)\]?(?: \| None)?", type_name.strip()
    )
    if not m:
        return None
    dotted = m.group(1).replace("::", ".")
    entry = lookup(version, dotted)
    return dotted if entry and entry["kind"] in ("class", "enum") else None


def _member(version: str, entry: dict, name: str, seen: frozenset = frozenset()) -> dict | None:
    """``name`` on a class / enum entry: its values, own members, then its bases' members."""
    if name in entry.get("values", ()):
        return {"kind": "enum_value"}
    if name in entry.get("members", {}):
        return entry["members"][name]
    for base in entry.get("bases", ()):
        if base in seen:
            continue
        base_entry = lookup(version, base)
        if base_entry and (found := _member(version, base_entry, name, seen | {base})):
            return found
    if entry["kind"] == "enum" and name in ENUM_ATTRIBUTES:
        return ENUM_ATTRIBUTES[name]
    return None


def lookup(version: str, dotted: str) -> dict | None:
    """The snapshot's entry for ``tensorrt.<dotted>`` in ``version``, or None when it does not exist.

    Past a property, constant or enum value the walk continues in its type (``Logger.WARNING.name``).
    Dunder attributes other than ``__init__`` (``__doc__``, ``__class__``) exist on anything that exists;
    ``__init__`` exists only on classes with a constructor.
    """
    data = load(version)
    parts = dotted.split(".")
    entry = data["names"].get(parts[0])
    owner = parts[0]
    for part in parts[1:]:
        if entry is None:
            return None
        if part.startswith("__") and part.endswith("__") and part != "__init__":
            entry = {"kind": "dunder"}
            continue
        kind = entry["kind"]
        if kind in ("class", "enum"):
            entry = _member(version, entry, part)
        elif kind in ("property", "constant"):
            inner = type_path(version, entry.get("type"))
            entry = _member(version, lookup(version, inner), part) if inner else None
        elif kind == "enum_value":
            entry = _member(version, lookup(version, owner), part)
        else:  # methods, functions, dunders: nothing public on them
            return None
        if entry is not None and entry["kind"] in ("class", "enum"):
            owner = f"{owner}.{part}"
    return entry


def resolve(version: str, dotted: str) -> bool:
    """Whether ``tensorrt.<dotted>`` exists in ``version``, e.g. ``"BuilderFlag.TF32"``."""
    return lookup(version, dotted) is not None


def missing_in(dotted: str, versions=None) -> list[str]:
    """The snapshotted versions (or the given ones) that lack ``tensorrt.<dotted>``."""
    return [v for v in (versions or VERSIONS) if not resolve(v, dotted)]


def signatures(version: str, dotted: str) -> list[str]:
    """pybind11 signature lines of a method / function (``[]`` if none or not callable)."""
    entry = lookup(version, dotted)
    return list(entry.get("sig", ())) if entry else []


def result_type(version: str, dotted: str) -> str | None:
    """The snapshot class / enum (dotted path) that ``tensorrt.<dotted>`` yields: a class called is an
    instance of itself, a method its return type when every overload agrees, a property its type."""
    entry = lookup(version, dotted)
    if entry is None:
        return None
    if entry["kind"] in ("class", "enum"):
        return dotted
    if entry["kind"] in ("property", "constant"):
        return type_path(version, entry.get("type"))
    returns = {s.rpartition(") -> ")[2] for s in entry.get("sig", ())}
    if len(returns) == 1:
        return type_path(version, returns.pop())
    return None


def split_params(sig: str) -> list[str]:
    """``"f(self: X, a: int, b: list[int] = [1, 2]) -> None"`` -> ``["self: X", "a: int", "b: ..."]``."""
    inner = sig[sig.index("(") + 1 : sig.rindex(") -> ") if ") -> " in sig else sig.rindex(")")]
    params, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == "," and depth == 0:
            params.append(inner[start:i].strip())
            start = i + 1
    if inner[start:].strip():
        params.append(inner[start:].strip())
    return params


def accepts(sig: str, positional: int, keywords: set[str], bound: bool = True) -> bool:
    """Whether one pybind11 overload takes ``positional`` arguments and these keyword names (``bound``:
    called on an instance, so ``self`` is already given)."""
    params = split_params(sig)
    if params and params[0] in ("*args", "**kwargs") or any(p.startswith("*") for p in params):
        return True
    names = [p.split(":")[0].split("=")[0].strip() for p in params]
    required = [("=" not in p) for p in params]
    if bound and names and names[0] in ("self", "arg0"):
        names, required = names[1:], required[1:]
    if positional > len(names):
        return False
    rest = dict(zip(names[positional:], required[positional:], strict=True))
    if not keywords <= set(rest):
        return False
    return all(not req or name in keywords for name, req in rest.items())
