"""TensorRT paths: written to the TensorRT 10 API; they run only where TensorRT and a GPU exist."""

import numpy as np
import onnx
import pytest

from exporters.graph import DeployGraph, graph_inputs
from exporters.onnx_export import to_onnx
from exporters.ort_runtime import OrtModel
from exporters.parity import compare
from exporters.tensorrt_engine import EngineOptions, require_tensorrt, tensorrt_unavailable
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models.slicing import slice_model
from tests.conftest import INPUT, tiny

REASON = tensorrt_unavailable()


def test_engine_options_are_validated():
    with pytest.raises(SfscError, match="precision"):
        EngineOptions(precision="int4")
    with pytest.raises(SfscError, match="batch range"):
        EngineOptions(batch=(8, 1, 32))


@pytest.mark.skipif(REASON is None, reason="TensorRT is available here")
def test_missing_tensorrt_is_one_clear_error():
    with pytest.raises(SfscError, match="cannot use --format tensorrt"):
        require_tensorrt()


@pytest.mark.skipif(REASON is not None, reason=f"{REASON}")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime(tmp_path, precision):
    from exporters.tensorrt_engine import TrtModel, build_engine, sidecar_path

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    graph = DeployGraph(slice_model(tiny(), 0.5), mean, std)
    onnx_path = tmp_path / "m.onnx"
    onnx.save(to_onnx(graph, INPUT, {"producer": "test"}), str(onnx_path))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 3, *INPUT), dtype=np.uint8)
    x = graph_inputs(__import__("torch").from_numpy(images), mean, std, bake_preprocess=False).numpy()
    engine = tmp_path / "m.engine"
    cache = tmp_path / "timing.cache"
    side = build_engine(onnx_path, engine, EngineOptions(precision, (1, 8, 16), 512, str(cache)), x[:32])
    assert side["precision"] == precision and sidecar_path(engine).exists() and cache.exists()
    got = TrtModel(engine)(x[32:])
    want = OrtModel(onnx_path)(x[32:])
    assert compare(want, got, precision).passed
