"""One interface over every runtime that executes an exported artifact.

A runner is called with one batch in the form the graph takes (``graph.graph_inputs``) and returns
float32 features; it exposes the artifact's metadata, whether its input is raw uint8, and the largest
batch it accepts. ``open_runner`` picks the runtime from the file: onnxruntime for ``.onnx``,
OpenVINO for ``.xml`` (IR, with its ``.bin``), TensorRT for ``.engine`` / ``.plan`` / ``.trt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import UserError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
OPENVINO_SUFFIX = ".xml"
MODEL_SUFFIXES = (".onnx", OPENVINO_SUFFIX, *ENGINE_SUFFIXES)


class Runner(Protocol):
    path: Path
    runtime: str  # onnx | openvino | tensorrt
    metadata: dict[str, str]
    input_uint8: bool
    max_batch: int | None  # None: any
    providers: list[str]  # what actually runs it, best first (onnxruntime's providers; OpenVINO's
    # execution devices, e.g. ["CPU"]; ["tensorrt"])
    input_shape: tuple[int | None, ...]  # None marks a dynamic size
    output_shape: tuple[int | None, ...]

    def __call__(self, inputs: np.ndarray) -> np.ndarray: ...


def open_runner(
    path: str | os.PathLike,
    *,
    threads: int | None = None,
    provider: str = "CPUExecutionProvider",
    allow_fallback: bool = False,
    device: str = "CPU",
) -> Runner:
    """The runner for ``path``. ``provider`` / ``allow_fallback`` pick onnxruntime's execution
    provider; ``device`` is OpenVINO's (an IR asked to run under another onnxruntime provider than
    the CPU's is refused unless the fallback is allowed, like a provider onnxruntime lacks)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"model {p} not found; pass an .onnx, .xml (OpenVINO) or .engine file written by export"
        )
    if p.suffix == ".onnx":
        from .ort_runtime import OrtModel

        return OrtModel(p, threads=threads, providers=[provider], allow_fallback=allow_fallback)
    if p.suffix == OPENVINO_SUFFIX:
        from .openvino_runtime import OvModel

        if provider != "CPUExecutionProvider" and not allow_fallback:
            raise UserError(
                f"{p.name} is an OpenVINO IR: OpenVINO runs it on its device ({device}), not on the "
                f"onnxruntime provider {provider}; drop --provider, or pass --allow-fallback to run it there"
            )
        return OvModel(p, threads=threads, device=device)
    if p.suffix in ENGINE_SUFFIXES:
        from .tensorrt_engine import TrtModel

        return TrtModel(p)
    raise UserError(f"{p}: unknown model type {p.suffix!r}; pass an .onnx, .xml (OpenVINO) or .engine file")


def check_input_dtype(runner: Runner, images: np.ndarray) -> None:
    """Every runner takes exactly its graph's input type: uint8 images or normalised float32."""
    want = np.uint8 if runner.input_uint8 else np.float32
    if images.dtype != want:
        raise UserError(
            f"{runner.path.name} takes {np.dtype(want).name} input, got {images.dtype}; "
            + ("pass raw uint8 NHWC images" if runner.input_uint8 else "pass normalised float32 NCHW")
        )


def check_layout(
    runner: Runner, input_size: tuple[int, int], feature_dim: int, bake_preprocess: bool
) -> None:
    """The graph must take and give what its metadata declares, or a copied description is lying."""
    h, w = input_size
    want = (None, h, w, 3) if bake_preprocess else (None, 3, h, w)
    shape = runner.input_shape
    fits = len(shape) == 4 and all(g is None or v is None or g == v for g, v in zip(shape, want, strict=True))
    out = runner.output_shape
    out_fits = len(out) == 2 and out[1] in (None, feature_dim)
    if runner.input_uint8 != bake_preprocess or not fits or not out_fits:
        layout = "uint8 [N, H, W, 3]" if bake_preprocess else "float32 [N, 3, H, W]"
        given = "uint8" if runner.input_uint8 else "float"
        raise UserError(
            f"{runner.path}'s graph takes {given} {list(shape)} and gives "
            f"{list(out)}, but its metadata declares {layout} at {h}x{w} and {feature_dim}-d features; "
            "the metadata does not describe this model — re-export it"
        )
