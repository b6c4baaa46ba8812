"""fp16 for TensorRT's strongly typed builder: an ONNX model whose layers are half, its I/O float.

TensorRT 10/11 builds a strongly typed network with exactly the types of the ONNX, so fp16 is made
here, not by a builder flag. The preprocessing baked into a graph (uint8 → float, normalisation)
stays in float32: its constants would lose precision in half, and TensorRT wants a uint8 input to
go straight into a Cast. The conversion is onnxconverter-common's; the graph is split at the first
weighted layer so that its block list never has to wrap a chain of float nodes (it would round
the tensors between them to half).
"""

from __future__ import annotations

import warnings

import onnx

from exporters.onnx_export import read_metadata, set_metadata

from .errors import UserError

WEIGHTED = ("Conv", "Gemm", "MatMul")


def _part(model: onnx.ModelProto, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    return onnx.utils.Extractor(model).extract_model(inputs, outputs)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Half copy of ``model`` with float32 (or uint8) input, float32 output and its metadata."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise UserError(
            'fp16 export needs onnxconverter-common; pip install "sfsc-deploy[tensorrt]"'
        ) from None
    metadata = read_metadata(model)
    model = onnx.shape_inference.infer_shapes(model)
    nodes = list(model.graph.node)
    first = next((n for n in nodes if n.op_type in WEIGHTED), None)
    if first is None:
        raise UserError("this graph has no convolution or linear layer to run in fp16; export it in fp32")
    (source,) = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    core_input = first.input[0]
    with warnings.catch_warnings():  # it warns once per weight it clamps to fp16's range
        warnings.simplefilter("ignore", UserWarning)
        if core_input == source:
            half = float16.convert_float_to_float16(model, keep_io_types=True)
        else:  # baked preprocessing: float32 part + half part, joined where the first layer reads
            pre = _part(model, [source], [core_input])
            core = float16.convert_float_to_float16(_part(model, [core_input], outputs), keep_io_types=True)
            pre.graph.ClearField("value_info")  # merge_models refuses names both parts describe
            half = onnx.compose.merge_models(pre, core, io_map=[(core_input, core_input)])
    del half.opset_import[:]  # merge_models lists the default domain once per part
    half.opset_import.extend(model.opset_import)
    set_metadata(half, {**metadata, "precision": "fp16"})
    onnx.checker.check_model(half, full_check=True)
    return half
