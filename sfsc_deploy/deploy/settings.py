"""How an export runs (torch-free, so the command line can show these defaults without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass

CALIBRATION_IMAGES, PARITY_IMAGES = 256, 64  # training images for int8 calibration / the parity check


@dataclass
class ExportSettings:
    opset: int = 17
    simplify: bool = True
    workspace_mb: int = 1024
    timing_cache: str | None = None
    int8_calibration: str = "minmax"
    progress: bool = True
