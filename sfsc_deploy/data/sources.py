"""Where images come from: files on disk, or a generator registered for a path scheme.

A record's path is a file path, or ``scheme://...`` for images that are rendered rather than read
(the built-in synthetic data registers ``synthetic://``). The image bank asks this registry, so it
needs to know no generator by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sfsc_deploy.data.records import Record

Renderer = Callable[[list[Record]], torch.Tensor]  # records -> uint8 [N, 3, H, W]
_RENDERERS: dict[str, Renderer] = {}


def register_renderer(scheme: str, render: Renderer) -> None:
    """Images of paths starting with ``scheme`` (e.g. ``synthetic://``) are made by ``render``."""
    _RENDERERS[scheme] = render


def renderer_for(path: str) -> tuple[str, Renderer] | None:
    for scheme, render in _RENDERERS.items():
        if path.startswith(scheme):
            return scheme, render
    return None
