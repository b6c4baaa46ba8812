"""PNG figures: a bare ``matplotlib.figure.Figure`` (no pyplot, so no global backend is chosen or
changed) written atomically, like every other file."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from exporters.files import atomic_path


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height))


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)
