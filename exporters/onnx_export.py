"""Sliced model → ONNX: export with a dynamic batch axis, simplify, fully check, stamp metadata."""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from exporters.graph import DeployGraph

from .errors import UserError
from .files import write_bytes

INPUT, OUTPUT = "images", "features"
MIN_OPSET = 17


@dataclass(frozen=True)
class OnnxOptions:
    opset: int = 17
    simplify: bool = True

    def __post_init__(self) -> None:
        if self.opset < MIN_OPSET:
            raise UserError(f"opset {self.opset} is too old; use --opset {MIN_OPSET} or newer")


# what torch.onnx.export(dynamo=False) says about itself on every call, and nothing else
LEGACY_NOTICES = (r"You are using the legacy TorchScript-based ONNX export", r"The feature will be removed")


def _export(graph: DeployGraph, input_size: tuple[int, int], buf: io.BytesIO, options: OnnxOptions) -> None:
    """The TorchScript exporter (see README, "Why the TorchScript exporter"): opset 17, one Cast
    straight after a uint8 input, and 0.2-1.0 s per model where torch.export takes 3.9-5.7 s
    (benchmarks/results/onnx_exporters.md)."""
    torch.onnx.export(
        graph.eval(),
        (graph.example_input(input_size),),
        buf,
        dynamo=False,
        opset_version=options.opset,
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        do_constant_folding=True,
    )


def to_onnx(
    graph: DeployGraph,
    input_size: tuple[int, int],
    metadata: Mapping[str, object],
    options: OnnxOptions = OnnxOptions(),
) -> onnx.ModelProto:
    """The checked ONNX model of ``graph``: input ``images`` [N, 3, H, W] float32 (or [N, H, W, 3]
    uint8 with baked preprocessing), output ``features`` [N, D], batch axis dynamic."""
    buf = io.BytesIO()
    # the TorchScript exporter announces its own deprecation; it is kept on purpose (README, "Why the
    # TorchScript exporter"). Every other warning is shown, and a tracer warning (the trace may not
    # hold for other inputs, e.g. Python branching on tensor values) is an error.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _export(graph, input_size, buf, options)
    tracer = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    if tracer:
        raise UserError(
            f"the model is not traceable to a fixed graph ({str(tracer[0].message).splitlines()[0][:120]}); "
            "its forward must not branch on tensor values"
        )
    for w in caught:
        if not any(re.search(notice, str(w.message)) for notice in LEGACY_NOTICES):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    model = onnx.load_from_string(buf.getvalue())
    if options.simplify:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if not ok:
            raise UserError("onnxsim could not validate the simplified graph; export with --no-simplify")
        model = simplified
    set_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def set_metadata(model: onnx.ModelProto, metadata: Mapping[str, object]) -> None:
    """Replace ``metadata_props`` with ``metadata`` (values as strings; bools as true/false)."""
    props = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in metadata.items()}
    onnx.helper.set_model_props(model, props)


def read_metadata(model: onnx.ModelProto | str | os.PathLike) -> dict[str, str]:
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    return write_bytes(path, model.SerializeToString())
