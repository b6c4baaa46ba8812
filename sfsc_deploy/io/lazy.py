"""Package namespaces whose names load on first use (PEP 562).

A package ``__init__`` that imports its modules eagerly makes ``import sfsc_deploy.x.light`` pay
for ``torch``; with lazy exports the command line's ``--help`` and ``plan`` start in a blink.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """(``__getattr__``, ``__all__``) for a package exporting ``name -> module`` on first access."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(exports)
