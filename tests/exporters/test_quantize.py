import numpy as np
import onnx
import pytest
import torch

from exporters.graph import DeployGraph, graph_inputs
from exporters.onnx_export import read_metadata, to_onnx
from exporters.ort_runtime import OrtModel
from exporters.parity import compare
from exporters.quantize import Int8Options, quantize_int8
from sfsc_deploy.data.sample import sample_images
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import checkpoint
from sfsc_deploy.models.slicing import slice_model
from tests.conftest import INPUT


@pytest.fixture(scope="module")
def int8_setup(trained_checkpoint, synthetic_small):
    net = checkpoint.load(trained_checkpoint)
    opts = net.config.options
    graph = DeployGraph(slice_model(net, 0.25), opts.mean, opts.std)
    fp32 = to_onnx(graph, INPUT, {"producer": "test", "precision": "fp32"})
    calib = graph_inputs(
        sample_images(synthetic_small, INPUT, 256), opts.mean, opts.std, bake_preprocess=False
    )
    test = graph_inputs(
        sample_images(synthetic_small, INPUT, 64, skip=256), opts.mean, opts.std, bake_preprocess=False
    )
    return graph, fp32, quantize_int8(fp32, calib.numpy()).model, test


def test_int8_is_qdq_and_keeps_metadata(int8_setup):
    _, fp32, int8, _ = int8_setup
    ops = [n.op_type for n in int8.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    meta = read_metadata(int8)
    assert meta["producer"] == "test" and meta["precision"] == "int8"
    assert int8.ByteSize() < 0.6 * fp32.ByteSize()  # int8 weights (+ per-channel scales)


def test_int8_parity_on_held_out_images(int8_setup, tmp_path):
    graph, _, int8, test = int8_setup
    path = tmp_path / "int8.onnx"
    onnx.save(int8, str(path))
    got = OrtModel(path)(test.numpy())
    want = graph(test).detach().numpy()
    parity = compare(want, got, "int8")
    print(parity.summary(), read_metadata(int8)["int8_float_layers"])
    assert parity.passed, parity.summary()
    assert not compare(want, got, "fp32").passed  # int8 is really quantised, not a copy of fp32
    assert np.isfinite(got).all()


def test_int8_needs_calibration_images(int8_setup):
    _, fp32, _, _ = int8_setup
    with pytest.raises(SfscError, match="calibration"):
        quantize_int8(fp32, np.zeros((0, 3, *INPUT), np.float32))
    with pytest.raises(SfscError, match="calibration method"):
        quantize_int8(fp32, torch.zeros(2, 3, *INPUT).numpy(), Int8Options(method="magic"))
