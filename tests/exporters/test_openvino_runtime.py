"""OpenVINO IR: ONNX → IR conversion (fp32 and int8 Q/DQ), the runner, and every bad input.

Needs ``pip install "sfsc-deploy[openvino]"``; without it those tests skip with that reason, and the
tests of what happens *without* OpenVINO (simulated here by hiding the module) still run.
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from exporters.errors import UserError
from exporters.graph import DeployGraph, graph_inputs
from exporters.metadata import ModelInfo
from exporters.onnx_export import read_metadata, save_onnx, to_onnx
from exporters.openvino_runtime import (
    INSTALL,
    SECTION,
    OvModel,
    openvino_unavailable,
    read_openvino_metadata,
    require_openvino,
    to_openvino,
    weights_path,
)
from exporters.ort_runtime import OrtModel
from exporters.parity import compare
from exporters.quantize import quantize_int8
from exporters.runtime import open_runner
from sfsc_deploy.models.slicing import slice_model
from tests.conftest import INPUT, tiny

REASON = openvino_unavailable()
needs_openvino = pytest.mark.skipif(REASON is not None, reason=f"{REASON}")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ROOT = Path(__file__).resolve().parents[2]


def metadata(bake: bool, precision: str = "fp32") -> dict[str, str]:
    """What export stamps on a model: a real description, so extractors accept it."""
    info = ModelInfo("onnx", "f" * 16, 0.5, 32, INPUT, MEAN, STD, False, bake, precision, "test")
    return {**info.metadata(), "tier": "test"}


def uint8_images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, *INPUT), dtype=torch.uint8, generator=g)


def int8_of(fp32: onnx.ModelProto, calibration: np.ndarray) -> onnx.ModelProto:
    result = quantize_int8(fp32, calibration)
    return getattr(result, "model", result)  # an Int8Result (the model and how it was reached)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text.strip(), text
    return text


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """fp32 (float input), fp32 with baked preprocessing (uint8 input) and int8 Q/DQ, each as ONNX
    and as IR, from one width-0.5 sliced model."""
    if REASON is not None:
        pytest.skip(REASON)
    root = tmp_path_factory.mktemp("openvino")
    twin = slice_model(tiny(), 0.5)
    out = {}
    for name, bake in (("float", False), ("uint8", True)):
        graph = DeployGraph(twin, MEAN, STD, bake_preprocess=bake)
        model = to_onnx(graph, INPUT, metadata(bake))
        out[name] = (graph, save_onnx(model, root / f"{name}.onnx"), root / f"{name}.xml", model)
        to_openvino(model, root / f"{name}.xml")  # from memory
    graph, onnx_path, _, fp32 = out["float"]
    calibration = graph_inputs(uint8_images(64, seed=5), MEAN, STD, bake_preprocess=False).numpy()
    int8_path = save_onnx(int8_of(fp32, calibration), root / "int8.onnx")
    to_openvino(int8_path, root / "int8.xml")  # from a file
    out["int8"] = (graph, int8_path, root / "int8.xml", None)
    return out


def float_inputs(n: int, seed: int = 1) -> np.ndarray:
    return graph_inputs(uint8_images(n, seed), MEAN, STD, bake_preprocess=False).numpy()


@needs_openvino
def test_fp32_ir_matches_onnxruntime_and_carries_the_metadata(models):
    graph, onnx_path, xml, _ = models["float"]
    assert xml.is_file() and weights_path(xml).is_file()
    ov = OvModel(xml, threads=1)
    assert ov.runtime == "openvino" and ov.providers == ["CPU"] and ov.max_batch is None
    assert not ov.input_uint8 and ov.input_shape == (None, 3, *INPUT) and ov.output_shape == (None, 32)
    # the ONNX's metadata, plus what converted it
    assert ov.metadata == {
        **read_metadata(onnx_path),
        "format": "openvino",
        "openvino_version": __import__("openvino").get_version(),
    }
    x = float_inputs(16)
    got, want = ov(x), OrtModel(onnx_path, threads=1)(x)
    assert got.dtype == np.float32 and got.shape == (16, 32)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(got, graph(torch.from_numpy(x)).detach().numpy(), atol=1e-5, rtol=1e-4)
    assert compare(want, got, "fp32").passed


@needs_openvino
def test_the_batch_axis_stays_dynamic(models):
    _, onnx_path, xml, _ = models["float"]
    ov, ort = OvModel(xml), OrtModel(onnx_path)
    x = float_inputs(5, seed=2)
    five = ov(x)
    assert five.shape == (5, 32)
    one = ov(x[:1])
    assert one.shape == (1, 32)
    np.testing.assert_allclose(one, five[:1], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(five, ort(x), atol=1e-5, rtol=1e-4)
    kept = one.copy()
    ov(x[1:2])
    np.testing.assert_array_equal(one, kept)  # a result is the caller's: the next call does not reuse it


@needs_openvino
def test_baked_preprocessing_takes_raw_uint8_nhwc(models):
    _, onnx_path, xml, _ = models["uint8"]
    float_graph, *_ = models["float"]
    ov = OvModel(xml)
    assert ov.input_uint8 and ov.input_shape == (None, *INPUT, 3)
    images = uint8_images(6, seed=3)
    raw = graph_inputs(images, MEAN, STD, bake_preprocess=True).numpy()
    assert raw.dtype == np.uint8
    got = ov(raw)
    np.testing.assert_allclose(got, OrtModel(onnx_path)(raw), atol=1e-5, rtol=1e-4)
    normalised = graph_inputs(images, MEAN, STD, bake_preprocess=False)
    np.testing.assert_allclose(got, float_graph(normalised).detach().numpy(), atol=1e-4, rtol=1e-4)
    with pytest.raises(UserError, match="takes uint8 input, got float32; pass raw uint8 NHWC") as exc:
        ov(normalised.numpy())
    one_line(exc)


@needs_openvino
def test_int8_qdq_converts_and_runs_in_int8_close_to_onnxruntime(models):
    graph, onnx_path, xml, _ = models["int8"]
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(onnx_path).graph.node}
    ov = OvModel(xml, threads=1)
    assert ov.metadata["precision"] == "int8"
    x = float_inputs(32, seed=4)
    got, ort = ov(x), OrtModel(onnx_path, threads=1)(x)
    reference = graph(torch.from_numpy(x)).detach().numpy()
    same = compare(ort, got, "int8")  # the two runtimes' int8 agree ...
    assert same.passed and same.min_cosine > 0.99, same.summary()
    assert compare(reference, got, "int8").passed  # ... and both pass int8 parity against PyTorch
    assert not compare(reference, got, "fp32").passed  # really quantised, not a float copy
    # OpenVINO executes the quantised convolutions in 8 bits (not float with fake quantisation)
    ops = ov.compiled.get_runtime_model().get_ordered_ops()
    precisions = {
        op.get_rt_info()["runtimePrecision"].astype(str)
        for op in ops
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    }
    assert precisions & {"u8", "i8"}, precisions


@needs_openvino
def test_threads_and_device(models):
    import openvino

    _, _, xml, _ = models["float"]
    assert OvModel(xml, threads=1).compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert OvModel(xml, threads=2).compiled.get_property("INFERENCE_NUM_THREADS") == 2
    # fp32 features even on a CPU that would default to bf16
    assert OvModel(xml).compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32
    with pytest.raises(UserError, match=r"no device 'NO_SUCH_DEVICE' here \(available: .*CPU") as exc:
        OvModel(xml, device="NO_SUCH_DEVICE")
    one_line(exc)
    assert OvModel(xml, device="AUTO").providers == ["CPU"]  # what actually ran, not what was asked


@needs_openvino
def test_open_runner_picks_openvino_for_xml(models):
    _, _, xml, _ = models["float"]
    runner = open_runner(xml, threads=1)
    assert isinstance(runner, OvModel) and runner.providers == ["CPU"]
    with pytest.raises(UserError, match="OpenVINO IR.*--allow-fallback") as exc:
        open_runner(xml, provider="CUDAExecutionProvider")
    one_line(exc)
    assert open_runner(xml, provider="CUDAExecutionProvider", allow_fallback=True).providers == ["CPU"]


@needs_openvino
def test_wrong_inputs_are_one_line(models):
    _, _, xml, _ = models["float"]
    ov = OvModel(xml)
    x = float_inputs(2)
    with pytest.raises(UserError, match="takes float32 input, got uint8") as exc:
        ov(x.astype(np.uint8))
    one_line(exc)
    with pytest.raises(UserError, match="takes float32 input, got float64") as exc:
        ov(x.astype(np.float64))
    one_line(exc)
    with pytest.raises(UserError, match=r"takes input of shape \['N', 3, 64, 32\], got \[2, 3, 32, 64\]"):
        ov(np.ascontiguousarray(x.transpose(0, 1, 3, 2)))
    with pytest.raises(UserError, match="takes input of shape"):
        ov(x[0])


def copy_ir(models, tmp_path, name="m", kind="float"):
    _, _, xml, _ = models[kind]
    dst = tmp_path / f"{name}.xml"
    dst.write_bytes(xml.read_bytes())
    weights_path(dst).write_bytes(weights_path(xml).read_bytes())
    return dst


def edit_xml(path: Path, pattern: str, replacement: str) -> None:
    text, n = re.subn(pattern, replacement, path.read_text(), flags=re.S)
    assert n == 1, pattern
    path.write_text(text)


@needs_openvino
@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing .bin", "needs its weights file m.bin beside it"),
        ("truncated .bin", "not a readable OpenVINO IR .*weights"),
        ("empty .bin", "not a readable OpenVINO IR"),
        ("garbage .xml", "not a readable OpenVINO IR"),
        ("truncated .xml", "not a readable OpenVINO IR"),
        ("an ONNX model named .xml", "carries no sfsc-deploy metadata"),
        ("metadata removed", "carries no sfsc-deploy metadata"),
        ("metadata emptied", "empty sfsc-deploy metadata"),
        ("metadata nested", "damaged sfsc-deploy metadata"),
        ("a value removed", "damaged sfsc-deploy metadata"),
        ("no .xml", "not found; pass the .xml"),
    ],
)
def test_damaged_ir_is_one_line(models, tmp_path, damage, message):
    xml = copy_ir(models, tmp_path)
    bin_ = weights_path(xml)
    section = rf"<{SECTION}>.*?</{SECTION}>"
    if damage == "missing .bin":
        bin_.unlink()
    elif damage == "truncated .bin":
        bin_.write_bytes(bin_.read_bytes()[: bin_.stat().st_size // 2])
    elif damage == "empty .bin":
        bin_.write_bytes(b"")
    elif damage == "garbage .xml":
        xml.write_text("this is not an IR")
    elif damage == "truncated .xml":
        xml.write_text(xml.read_text()[:4000])
    elif damage == "an ONNX model named .xml":
        xml.write_bytes(models["float"][1].read_bytes())
    elif damage == "metadata removed":
        edit_xml(xml, section, "")
    elif damage == "metadata emptied":
        edit_xml(xml, section, f"<{SECTION} />")
    elif damage == "metadata nested":
        edit_xml(xml, rf"<{SECTION}>", f'<{SECTION}><inner><a value="1" /></inner>')
    elif damage == "a value removed":
        edit_xml(xml, rf'(<{SECTION}>.*?<width) value="[^"]*"', r"\1")
    elif damage == "no .xml":
        xml.unlink()
    with pytest.raises(UserError, match=message) as exc:
        OvModel(xml)
    text = one_line(exc)
    assert (
        "re-export" in text or "convert the ONNX model again" in text or "copy it" in text or "pass" in text
    )


@needs_openvino
def test_a_forged_metadata_value_is_refused_by_the_extractor(models, tmp_path):
    """The runner reads the description; ModelInfo (every consumer's reader) bounds its values."""
    from sfsc_deploy.retrieval.extractors import open_extractor

    xml = copy_ir(models, tmp_path)
    assert open_extractor(xml).info.runtime == "openvino"
    edit_xml(xml, rf'(<{SECTION}>.*?<width) value="[^"]*"', r'\1 value="abc"')
    with pytest.raises(UserError, match="malformed sfsc-deploy metadata.*export it again") as exc:
        open_extractor(xml)
    one_line(exc)


@needs_openvino
def test_read_metadata_of_a_model_without_any(models):
    import openvino

    model = openvino.Core().read_model(str(models["float"][1]))  # the ONNX, read directly
    with pytest.raises(UserError, match="carries no sfsc-deploy metadata"):
        read_openvino_metadata(model, "x")


@needs_openvino
def test_conversion_writes_both_files_or_neither(models, tmp_path, monkeypatch):
    import openvino

    _, onnx_path, _, fp32 = models["float"]
    # a failure while saving (a full disk, a crash in save_model) leaves no file and no temp folder
    real = openvino.save_model

    def broken(model, path, compress_to_fp16=True):
        real(model, path, compress_to_fp16=compress_to_fp16)
        raise RuntimeError("disk full")

    monkeypatch.setattr(openvino, "save_model", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        to_openvino(fp32, tmp_path / "out" / "m.xml")
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.setattr(openvino, "save_model", real)
    # an input that is no ONNX model: one line, nothing written
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not onnx")
    with pytest.raises(UserError, match="not a readable ONNX model") as exc:
        to_openvino(junk, tmp_path / "out" / "m.xml")
    one_line(exc)
    assert list((tmp_path / "out").iterdir()) == []
    # existing outputs are refused without force, before anything is written
    to_openvino(onnx_path, tmp_path / "out" / "m.xml")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.bin", "m.xml"]
    weights_path(tmp_path / "out" / "m.xml").unlink()
    with pytest.raises(UserError, match="already exists; pass --force"):
        to_openvino(onnx_path, tmp_path / "out" / "m.xml", force=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.xml"]
    with pytest.raises(UserError, match="NAME.xml"):
        to_openvino(onnx_path, tmp_path / "out" / "m.ir")


@needs_openvino
def test_conversion_never_reads_external_data_outside_the_models_folder(models, tmp_path):
    _, _, _, fp32 = models["float"]
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    (tmp_path / "models").mkdir()
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    onnx.save(model, str(tmp_path / "models" / "evil.onnx"))
    with pytest.raises(UserError, match="outside its folder") as exc:
        to_openvino(tmp_path / "models" / "evil.onnx", tmp_path / "out" / "m.xml")
    one_line(exc)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@needs_openvino
def test_metadata_that_xml_cannot_hold_is_refused(models, tmp_path):
    _, _, _, fp32 = models["float"]
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    onnx.helper.set_model_props(model, {**read_metadata(fp32), "two words": "x"})
    with pytest.raises(UserError, match="'two words' cannot be stored in OpenVINO rt_info"):
        to_openvino(model, tmp_path / "m.xml")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------- without OpenVINO (simulated: module hidden)


@pytest.fixture
def no_openvino(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError


def test_without_openvino_every_entry_point_is_one_line_naming_the_extra(no_openvino, tmp_path):
    assert openvino_unavailable() == f"OpenVINO is not installed; {INSTALL}"
    assert INSTALL == 'pip install "sfsc-deploy[openvino]"'
    missing = f"OpenVINO is not installed; {INSTALL}"
    with pytest.raises(UserError, match=re.escape(f"cannot use format openvino: {missing}")):
        require_openvino()
    (tmp_path / "m.xml").write_text("<net/>")
    with pytest.raises(UserError, match=re.escape(f"cannot run m.xml: {missing}")) as exc:
        open_runner(tmp_path / "m.xml")
    one_line(exc)
    with pytest.raises(UserError, match=re.escape(INSTALL)):
        to_openvino(tmp_path / "m.onnx", tmp_path / "out.xml")
    assert not (tmp_path / "out.xml").exists()


def test_exporters_load_without_importing_openvino():
    code = (
        "import sys\nimport exporters.runtime, exporters.openvino_runtime\nprint('openvino' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "False", done.stdout + done.stderr
