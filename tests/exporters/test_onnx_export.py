import numpy as np
import onnx
import pytest
import torch

from exporters.graph import DeployGraph, graph_inputs
from exporters.onnx_export import INPUT, OUTPUT, OnnxOptions, read_metadata, to_onnx
from exporters.ort_runtime import OrtModel
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models.slicing import slice_model
from tests.conftest import INPUT as SIZE
from tests.conftest import tiny

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def export(tmp_path, width=0.25, arch="resnet18", **flags):
    twin = slice_model(tiny(arch), width)
    graph = DeployGraph(twin, MEAN, STD, **flags)
    model = to_onnx(graph, SIZE, {"width": width, "normalized": flags.get("normalize", False)})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return graph, model, OrtModel(path)


def uint8_images(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, *SIZE), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "shufflenet_v2"])
def test_matches_pytorch_for_any_batch(tmp_path, arch):
    graph, model, ort = export(tmp_path, arch=arch)
    assert [i.name for i in model.graph.input] == [INPUT]
    assert [o.name for o in model.graph.output] == [OUTPUT]
    assert model.opset_import[0].version >= 17
    for n in (1, 5):  # the batch axis is dynamic
        x = graph_inputs(uint8_images(n), MEAN, STD, bake_preprocess=False)
        got = ort(x.numpy())
        want = graph(x).detach().numpy()
        assert got.shape == (n, 32)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


def test_graph_has_no_switching_machinery(tmp_path):
    _, model, _ = export(tmp_path)
    ops = {n.op_type for n in model.graph.node}
    assert "If" not in ops and "Loop" not in ops
    conv = [i for i in model.graph.initializer if len(i.dims) == 4]
    assert conv and max(i.dims[0] for i in conv) <= 64  # only the sliced channels were exported


def test_metadata_is_stamped(tmp_path):
    _, model, ort = export(tmp_path)
    assert read_metadata(model) == {"width": "0.25", "normalized": "false"}
    assert ort.metadata["width"] == "0.25"


def test_normalize_gives_unit_features(tmp_path):
    _, _, ort = export(tmp_path, normalize=True)
    x = graph_inputs(uint8_images(), MEAN, STD, bake_preprocess=False).numpy()
    np.testing.assert_allclose(np.linalg.norm(ort(x), axis=1), 1.0, atol=1e-5)


def test_baked_preprocessing_takes_raw_uint8_nhwc(tmp_path):
    graph, model, ort = export(tmp_path, bake_preprocess=True)
    elem = model.graph.input[0].type.tensor_type
    assert elem.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in elem.shape.dim][1:] == [SIZE[0], SIZE[1], 3]
    # TensorRT accepts a uint8 input only when a Cast consumes it directly (no Transpose first)
    readers = [n.op_type for n in model.graph.node if model.graph.input[0].name in n.input]
    assert readers == ["Cast"], readers
    images = uint8_images()
    baked = ort(graph_inputs(images, MEAN, STD, bake_preprocess=True).numpy())
    plain = DeployGraph(graph.model, MEAN, STD)(graph_inputs(images, MEAN, STD, bake_preprocess=False))
    np.testing.assert_allclose(baked, plain.detach().numpy(), atol=1e-4, rtol=1e-4)
    with pytest.raises(SfscError, match="uint8"):  # feeding normalised floats is refused, not mis-read
        ort(graph_inputs(images, MEAN, STD, bake_preprocess=False).numpy())


def test_old_opset_is_refused():
    with pytest.raises(SfscError, match="opset"):
        OnnxOptions(opset=13)


def test_unreadable_onnx_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(SfscError, match="not a readable ONNX model"):
        OrtModel(bad)
    with pytest.raises(SfscError, match="not found"):
        OrtModel(tmp_path / "missing.onnx")


def test_truncated_onnx_is_one_line(tmp_path):
    _, model, _ = export(tmp_path)
    data = model.SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(SfscError, match="not a readable ONNX model|cannot load"):
        OrtModel(tmp_path / "cut.onnx")


def test_external_data_outside_the_folder_is_refused(tmp_path):
    _, model, _ = export(tmp_path)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 4096)
    inner = tmp_path / "models"
    inner.mkdir()
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    onnx.save(model, str(inner / "evil.onnx"))
    with pytest.raises(SfscError, match="outside its folder"):
        OrtModel(inner / "evil.onnx")
    entry.value = "missing.bin"
    onnx.save(model, str(inner / "lost.onnx"))
    with pytest.raises(SfscError, match="external data file"):
        OrtModel(inner / "lost.onnx")


def test_a_trace_that_would_not_hold_for_other_inputs_is_refused(tmp_path):
    """Python branching on a tensor value is frozen into the trace; the tracer's warning is an error."""
    import warnings

    import torch

    from exporters.onnx_export import to_onnx

    class Branchy(torch.nn.Module):
        def forward(self, x):
            flat = x.mean(dim=(2, 3))
            return flat * 2 if float(flat.sum()) > 0 else flat  # the branch taken is baked in

    graph = DeployGraph(Branchy(), MEAN, STD)
    with pytest.raises(SfscError, match="not traceable"):
        to_onnx(graph, SIZE, {"producer": "test"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and the exporter's own deprecation notice is not shown
        to_onnx(DeployGraph(torch.nn.Flatten(), MEAN, STD), SIZE, {"producer": "test"})
