"""int8 for CPU tiers: onnxruntime static quantisation in QDQ form, calibrated on real images."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from exporters.onnx_export import read_metadata, set_metadata

from .errors import UserError


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over one array of graph-ready inputs."""

    def __init__(self, name: str, inputs: np.ndarray, batch: int) -> None:
        self.items = iter([{name: inputs[i : i + batch]} for i in range(0, len(inputs), batch)])

    def get_next(self) -> dict | None:
        return next(self.items, None)


def quantize_int8(
    model: onnx.ModelProto,
    calibration: np.ndarray,
    *,
    per_channel: bool = True,
    batch: int = 16,
    method: str = "minmax",
    keep_ends_fp32: bool = True,
) -> onnx.ModelProto:
    """QDQ int8 copy of ``model`` (weights per channel, uint8 activations) with its metadata kept.

    ``calibration`` is already in the graph's input format (the caller applies the same
    preprocessing as at inference), so the activation ranges are those of deployment.
    ``keep_ends_fp32`` leaves the first convolution and the embedding layer in float: on a
    Market-1501 ResNet-18 at width 0.25 this lifted the worst query's cosine to the fp32 features
    from 0.970 to 0.990 for a negligible share of the MACs.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise UserError("int8 needs calibration images; pass --data with readable training images")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise UserError(f"unknown calibration method {method!r}; choose minmax or percentile")
    metadata = read_metadata(model)
    with tempfile.TemporaryDirectory(prefix="sfsc-int8-") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(model, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        weighted = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
        excluded = sorted({weighted[0], weighted[-1]}) if keep_ends_fp32 and weighted else []
        quantize_static(
            str(pre),
            str(dst),
            _Batches(model.graph.input[0].name, calibration, batch),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=methods[method],
            nodes_to_exclude=excluded,
        )
        quantized = onnx.load(str(dst))
    set_metadata(
        quantized,
        {
            **metadata,
            "precision": "int8",
            "int8_calibration_images": len(calibration),
            "int8_calibration_method": method,
            "int8_float_layers": ",".join(excluded),
        },
    )
    onnx.checker.check_model(quantized, full_check=True)
    return quantized
