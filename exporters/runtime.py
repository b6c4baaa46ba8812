"""One interface over every runtime that executes an exported artifact.

A runner is called with one batch in the form the graph takes (``graph.graph_inputs``) and returns
float32 features; it exposes the artifact's metadata, whether its input is raw uint8, and the largest
batch it accepts. ``open_runner`` picks the runtime from the file: onnxruntime for ``.onnx``,
TensorRT for ``.engine`` / ``.plan`` / ``.trt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import UserError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


class Runner(Protocol):
    path: Path
    runtime: str  # onnx | tensorrt
    metadata: dict[str, str]
    input_uint8: bool
    max_batch: int | None  # None: any

    def __call__(self, inputs: np.ndarray) -> np.ndarray: ...


def open_runner(
    path: str | os.PathLike, *, threads: int | None = None, provider: str = "CPUExecutionProvider"
) -> Runner:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model {p} not found; pass an .onnx or .engine file written by export")
    if p.suffix == ".onnx":
        from .ort_runtime import OrtModel

        return OrtModel(p, threads=threads, providers=[provider])
    if p.suffix in ENGINE_SUFFIXES:
        from .tensorrt_engine import TrtModel

        return TrtModel(p)
    raise UserError(f"{p}: unknown model type {p.suffix!r}; pass an .onnx or .engine file")
