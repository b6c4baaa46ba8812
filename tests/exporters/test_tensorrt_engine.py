"""TensorRT paths: written to the TensorRT 10/11 API (checked against both by test_tensorrt_api.py);
the parts that need no GPU run here, the engine tests only where TensorRT and a GPU exist."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from exporters.graph import DeployGraph, graph_inputs
from exporters.half import to_fp16
from exporters.onnx_export import to_onnx
from exporters.parity import compare
from exporters.quantize import quantize_int8
from exporters.tensorrt_engine import (
    EngineOptions,
    check_source,
    engine_mismatch,
    require_tensorrt,
    tensorrt_unavailable,
)
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models.slicing import slice_model
from tests.conftest import INPUT, tiny

REASON = tensorrt_unavailable()
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_engine_options_are_validated():
    with pytest.raises(SfscError, match="precision"):
        EngineOptions(precision="int4")
    with pytest.raises(SfscError, match="batch range"):
        EngineOptions(batch=(8, 1, 32))


def test_strongly_typed_build_refuses_an_onnx_of_another_precision():
    """TensorRT 11 has no precision flags: an fp32 ONNX can only ever give an fp32 engine."""
    check_source({"precision": "fp16"}, "fp16", Path("m.onnx"))
    with pytest.raises(SfscError, match="fp32-precision ONNX, the engine is asked for fp16"):
        check_source({"precision": "fp32"}, "fp16", Path("m.onnx"))
    with pytest.raises(SfscError, match="undeclared"):
        check_source({}, "int8", Path("m.onnx"))


def test_engine_compatibility_is_version_and_compute_capability_not_gpu_name():
    side = {"tensorrt_version": "10.13.0.35", "compute_capability": "8.9", "gpu": "NVIDIA L4"}
    assert engine_mismatch(side, "10.13.0.35", "8.9") is None  # another card of the same architecture
    assert "TensorRT 10.13.0.35" in engine_mismatch(side, "11.4.0.106", "8.9")
    assert "compute capability 8.9" in engine_mismatch(side, "10.13.0.35", "9.0")


@pytest.mark.skipif(REASON is None, reason="TensorRT is available here")
def test_missing_tensorrt_is_one_clear_error():
    with pytest.raises(SfscError, match="cannot use --format tensorrt"):
        require_tensorrt()


@pytest.mark.skipif(REASON is not None, reason=f"{REASON}")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("bake", [False, True])
def test_engine_matches_pytorch(tmp_path, precision, bake):
    from exporters.tensorrt_engine import TrtModel, build_engine, sidecar_path

    net = slice_model(tiny(), 0.5)
    graph = DeployGraph(net, MEAN, STD, bake_preprocess=bake).eval()
    source = to_onnx(graph, INPUT, {"producer": "test", "precision": "fp32"})
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (48, 3, *INPUT), dtype=np.uint8))
    x = graph_inputs(images, MEAN, STD, bake_preprocess=bake).numpy()
    if precision == "fp16":
        source = to_fp16(source)
    elif precision == "int8":
        source = quantize_int8(source, x[:32]).model
    onnx_path, engine, cache = tmp_path / "m.onnx", tmp_path / "m.engine", tmp_path / "timing.cache"
    onnx.save(source, str(onnx_path))
    side = build_engine(onnx_path, engine, EngineOptions(precision, (1, 8, 16), 512, str(cache)))
    assert side["precision"] == precision and side["tf32"] is False
    assert sidecar_path(engine).exists() and cache.exists()
    model = TrtModel(engine)
    assert model.input_uint8 == bake
    got = model(x[32:])
    want = DeployGraph(net, MEAN, STD).eval()(graph_inputs(images[32:], MEAN, STD, bake_preprocess=False))
    parity = compare(want.detach().numpy(), got, precision)  # against PyTorch, not onnxruntime
    assert parity.passed, parity.summary()
    with pytest.raises(SfscError, match="batches of 1 to 16"):
        model(np.concatenate([x, x]))
