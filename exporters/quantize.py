"""int8 for every runtime: one explicit Q/DQ ONNX model that onnxruntime, TensorRT and OpenVINO all run.

The form is the one TensorRT's strongly typed builder accepts: signed int8 everywhere with zero
points 0 (symmetric), weights per output channel. What the README promises stays in float: the
preprocessing baked into the graph, the first convolution (it sees raw pixels and costs little),
and the whole embedding path from the global pooling on — the pooled feature, the embedding
layer and the neck — so the feature a gallery is matched against is never rounded to 8 bits.
Calibration uses images the parity check never sees (the caller's job: ``data.sample``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from exporters.onnx_export import read_metadata, set_metadata
from exporters.parity import row_cosines

from .errors import UserError

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
WEIGHTED = ("Conv", "Gemm", "MatMul")
EMBEDDING_START = ("GlobalAveragePool", "ReduceMean", "GlobalMaxPool")


@dataclass(frozen=True)
class Int8Options:
    """How an int8 model is made; the defaults are the measured choice (docs/int8.md)."""

    method: str = "minmax"
    per_channel: bool = True
    batch: int = 16
    float_layers: tuple[str, ...] = ()  # extra nodes (by name) to keep in float, e.g. a sensitive conv
    # 7-bit weights (onnxruntime's reduce_range): x86 CPUs without VNNI (AVX2) multiply uint8 x
    # int8 pairs into saturating int16 sums, so full-range weights lose accuracy there in both
    # onnxruntime and OpenVINO (Market-1501, width 0.25: OpenVINO mean cos 0.962 → 0.998). One
    # model must run on every CPU; on GPUs and VNNI CPUs the lost weight bit cost ≤ 0.0006 mean cos
    reduce_range: bool = True
    # a safety net, measured in docs/int8.md: while the int8 features' mean cosine to fp32 on the
    # calibration images is below the target, the next quantised convolution from the input side
    # stays in float, up to ``max_float_convs`` of them
    target_mean_cosine: float = 0.998
    max_float_convs: int = 4

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise UserError(
                f"unknown calibration method {self.method!r}; choose one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.batch < 1:
            raise UserError("the int8 calibration batch must be >= 1")
        if not 0 <= self.target_mean_cosine <= 1 or self.max_float_convs < 0:
            raise UserError("int8 target_mean_cosine must be in [0, 1] and max_float_convs >= 0")


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over one array of graph-ready inputs."""

    def __init__(self, name: str, inputs: np.ndarray, batch: int) -> None:
        self.items = iter([{name: inputs[i : i + batch]} for i in range(0, len(inputs), batch)])

    def get_next(self) -> dict | None:
        return next(self.items, None)


def float_nodes(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes kept in float: everything up to and including the first weighted layer
    (preprocessing, the first convolution) and everything from the global pooling on."""
    nodes = list(graph.node)  # ONNX keeps nodes in topological order
    first = next((i for i, n in enumerate(nodes) if n.op_type in WEIGHTED), None)
    pool = next((i for i, n in enumerate(nodes) if n.op_type in EMBEDDING_START), None)
    if first is None or pool is None or pool < first:
        raise UserError(
            "int8 needs a convolutional backbone followed by a global pooling and an embedding; "
            "this graph has none — export it in fp32"
        )
    return [n.name for n in nodes[: first + 1] + nodes[pool:] if n.op_type != "Constant"]


@dataclass(frozen=True)
class Int8Result:
    """The int8 model and how it was reached: which layers stayed float, at what calibration fit."""

    model: onnx.ModelProto
    float_convs: tuple[str, ...]  # convolutions kept in float beyond the fixed float regions
    calibration_mean_cosine: float  # int8 vs fp32 features on the calibration images


def onnx_features(model: onnx.ModelProto, inputs: np.ndarray, batch: int) -> np.ndarray:
    """``model``'s outputs for ``inputs`` on onnxruntime's CPU provider, ``batch`` at a time."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: inputs[i : i + batch]})[0] for i in range(0, len(inputs), batch)]
    )


def quantize_int8(
    model: onnx.ModelProto, calibration: np.ndarray, options: Int8Options | None = None
) -> Int8Result:
    """Symmetric int8 Q/DQ copy of ``model`` with its metadata kept.

    ``calibration`` is already in the graph's input format (the caller applies the same
    preprocessing as at inference), so the activation ranges are those of deployment.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    options = options or Int8Options()
    if len(calibration) == 0:
        raise UserError("int8 needs calibration images; pass --data with readable training images")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    metadata = read_metadata(model)
    reference = onnx_features(model, calibration, options.batch)
    with tempfile.TemporaryDirectory(prefix="sfsc-int8-") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(model, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        unknown = sorted(set(options.float_layers) - {n.name for n in graph.node})
        if unknown:
            raise UserError(f"float_layers {unknown} are not nodes of this graph; see `onnx` node names")
        fixed = set(float_nodes(graph)) | set(options.float_layers)
        candidates = [n.name for n in graph.node if n.op_type == "Conv" and n.name not in fixed]

        def attempt(extra: list[str]) -> tuple[onnx.ModelProto, float]:
            quantize_static(
                str(pre),
                str(dst),
                _Batches(model.graph.input[0].name, calibration, options.batch),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                calibrate_method=methods[options.method],
                nodes_to_exclude=sorted(fixed | set(extra)),
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QuantizeBias": False,  # TensorRT takes int8 Q/DQ only: biases stay float
                },
            )
            quantized = onnx.load(str(dst))
            return quantized, float(
                row_cosines(reference, onnx_features(quantized, calibration, options.batch)).mean()
            )

        extra: list[str] = []
        quantized, fit = attempt(extra)
        while fit < options.target_mean_cosine and len(extra) < min(options.max_float_convs, len(candidates)):
            extra.append(candidates[len(extra)])
            quantized, fit = attempt(extra)
    set_metadata(
        quantized,
        {
            **metadata,
            "precision": "int8",
            "int8_calibration_images": len(calibration),
            "int8_calibration_method": options.method,
            "int8_float_layers": ",".join(sorted(set(options.float_layers) | set(extra))),
            "int8_calibration_mean_cosine": round(fit, 6),
        },
    )
    onnx.checker.check_model(quantized, full_check=True)
    return Int8Result(quantized, tuple(extra), fit)
