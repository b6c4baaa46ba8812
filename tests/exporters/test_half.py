"""fp16 ONNX for TensorRT's strongly typed builds, run here by onnxruntime's CPU kernels."""

import numpy as np
import onnx
import pytest
import torch

from exporters.graph import DeployGraph, graph_inputs
from exporters.half import to_fp16
from exporters.onnx_export import read_metadata, to_onnx
from exporters.ort_runtime import OrtModel
from exporters.parity import compare
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models.slicing import slice_model
from tests.conftest import INPUT, tiny

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("bake", [False, True])
def test_fp16_model_is_half_inside_float_outside_and_close(tmp_path, bake):
    graph = DeployGraph(slice_model(tiny(), 0.5), MEAN, STD, bake_preprocess=bake).eval()
    fp32 = to_onnx(graph, INPUT, {"producer": "test", "precision": "fp32"})
    half = to_fp16(fp32)
    types = onnx.TensorProto
    assert half.graph.input[0].type.tensor_type.elem_type == (types.UINT8 if bake else types.FLOAT)
    assert half.graph.output[0].type.tensor_type.elem_type == types.FLOAT
    weights = [i for i in half.graph.initializer if len(i.dims) == 4]
    assert weights and all(w.data_type == types.FLOAT16 for w in weights)  # the convolutions are half
    if bake:  # TensorRT takes a uint8 input only straight into a Cast; normalisation stays float32
        first = half.graph.node[[n.op_type for n in half.graph.node].index("Cast")]
        assert first.input[0] == "images" and first.attribute[0].i == types.FLOAT
    assert read_metadata(half)["precision"] == "fp16" and read_metadata(half)["producer"] == "test"
    assert len([o for o in half.opset_import if o.domain in ("", "ai.onnx")]) == 1
    path = tmp_path / "half.onnx"
    onnx.save(half, str(path))
    images = torch.randint(0, 256, (6, 3, *INPUT), dtype=torch.uint8)
    x = graph_inputs(images, MEAN, STD, bake_preprocess=bake)
    want = (
        DeployGraph(slice_model(tiny(), 0.5), MEAN, STD)
        .eval()(graph_inputs(images, MEAN, STD, bake_preprocess=False))
        .detach()
        .numpy()
    )
    got = OrtModel(path)(x.numpy())
    parity = compare(want, got, "fp16")
    assert parity.passed, parity.summary()
    assert parity.max_abs > 0  # really half, not a float copy
    assert np.isfinite(got).all()


def test_fp16_needs_a_weighted_layer():
    from onnx import TensorProto, helper

    node = helper.make_node("GlobalAveragePool", ["images"], ["features"])
    graph = helper.make_graph(
        [node],
        "pool",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, *INPUT])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 3, 1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(SfscError, match="no convolution"):
        to_fp16(model)
