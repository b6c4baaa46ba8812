"""The command line with OpenVINO IR: export an openvino tier, then extract / verify / bench / profile on
the .xml, and the one-line errors (fp16, a missing OpenVINO, an onnxruntime provider for an IR)."""

import json
import sys

import pytest

from exporters.files import OWNED
from exporters.openvino_runtime import openvino_unavailable
from tests.cli import run
from tests.cli.test_cli import TINY

REASON = openvino_unavailable()
needs_openvino = pytest.mark.skipif(REASON is not None, reason=f"{REASON}")
INSTALL = 'pip install "sfsc-deploy[openvino]"'
SMALL = ["--parity-images", "8", "--calibration-images", "32"]


@pytest.fixture
def ck(tmp_path, capsys):
    path = tmp_path / "ck.safetensors"
    assert run(capsys, "init", *TINY, "--out", path)[0] == 0
    return path


@needs_openvino
def test_export_extract_verify_an_openvino_ir(trained_checkpoint, tmp_path, capsys):
    """fp32 here; the int8 IR is covered in tests/exporters and tests/deploy."""
    ck, exp = trained_checkpoint, tmp_path / "exp"
    code, out, err = run(
        capsys, "export", "--checkpoint", ck, "--width", "0.25", "--export-format", "openvino",
        "--bake-preprocess", "--parity-images", "16", "--out", exp,
    )  # fmt: skip
    assert code == 0, err
    manifest = json.loads((exp / "manifest.json").read_text())
    (artifact,) = manifest["artifacts"]
    assert artifact["file"].endswith("_w0.25_fp32.xml") and artifact["format"] == "openvino"
    assert [c["file"] for c in artifact["companions"]] == [artifact["file"].replace(".xml", ".bin")]
    xml = exp / artifact["file"]
    assert sorted(p.name for p in exp.iterdir()) == sorted(
        [OWNED, "manifest.json", xml.name, xml.with_suffix(".bin").name]
    )
    gallery = tmp_path / "g.npz"
    assert run(capsys, "extract", "--checkpoint", ck, "--out", gallery)[0] == 0
    report = tmp_path / "verify.json"
    code, out, err = run(
        capsys, "verify", "--model", xml, "--gallery", gallery, "--checkpoint", ck, "--threads", "1",
        "--out", report,
    )  # fmt: skip
    assert code == 0 and "verify: PASS" in out, out + err
    saved = json.loads(report.read_text())
    assert saved["artifact"]["runtime"] == "openvino" and saved["artifact"]["bake_preprocess"]
    assert saved["passed"] and saved["parity"]["passed"] and saved["parity"]["min_cosine"] > 0.99999
    assert saved["top1_agreement"] >= 0.99
    queries = tmp_path / "q.npz"
    code, out, err = run(capsys, "extract", "--model", xml, "--split", "query", "--out", queries)
    assert code == 0 and "(openvino, width 0.25" in out, err
    # without its weights the IR is one line, and nothing is written
    xml.with_suffix(".bin").unlink()
    code, _, err = run(capsys, "extract", "--model", xml, "--out", tmp_path / "none.npz")
    assert code == 2 and "needs its weights file" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "none.npz").exists()


@needs_openvino
def test_bench_and_profile_record_openvino_and_the_device_that_ran(ck, tmp_path, capsys):
    exp = tmp_path / "exp"
    tiers = tmp_path / "tiers.toml"
    tiers.write_text(
        '[[tier]]\nname = "intel"\nwidth = 0.5\nformat = "openvino"\n\n'
        '[[tier]]\nname = "cpu"\nwidth = 0.5\nformat = "onnx"\n'
    )
    code, _, err = run(capsys, "export", "--checkpoint", ck, "--tiers", tiers, "--out", exp, *SMALL)
    assert code == 0, err
    xml, onnx_file = exp / "intel_w0.5_fp32.xml", exp / "cpu_w0.5_fp32.onnx"
    bench = tmp_path / "bench"
    quick = ["--batches", "1,2", "--iters", "2", "--warmup", "1"]
    code, out, err = run(capsys, "bench", xml, onnx_file, *quick, "--out", bench)
    assert code == 0, err
    record = json.loads((bench / "bench.json").read_text())
    ran = {
        (r["target"], r["runtime"], r["extra"]["execution_provider"], r["batch"]) for r in record["results"]
    }
    assert ran == {
        (name, runtime, provider, b)
        for name, runtime, provider in (
            (xml.name, "openvino", "CPU"),
            (onnx_file.name, "onnxruntime", "CPUExecutionProvider"),
        )
        for b in (1, 2)
    }
    sizes = {r["target"]: r["file_bytes"] for r in record["results"]}
    assert sizes[xml.name] == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    assert record["device"]["openvino"] and "OpenVINO" in (bench / "bench.md").read_text()
    # an onnxruntime provider cannot run an IR: refused, unless the fallback is allowed (recorded)
    gpu = ["--provider", "CUDAExecutionProvider"]
    code, _, err = run(capsys, "bench", xml, *quick, *gpu, "--out", tmp_path / "b2")
    assert code == 2 and "OpenVINO IR" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run(capsys, "bench", xml, *quick, *gpu, "--allow-fallback", "--out", tmp_path / "b3")
    assert code == 0, err
    (result, _) = json.loads((tmp_path / "b3" / "bench.json").read_text())["results"]
    assert result["extra"]["execution_provider"] == "CPU"
    # profile: exports every width as IR and times it on OpenVINO
    table = tmp_path / "dev.json"
    code, _, err = run(
        capsys, "profile", "--checkpoint", ck, "--runtime", "openvino", "--batches", "1", "--iters", "2",
        "--warmup", "1", "--out", table,
    )  # fmt: skip
    assert code == 0, err
    entries = json.loads(table.read_text())["entries"]
    assert {e["width"] for e in entries} == {0.25, 0.5, 0.75, 1.0}
    assert {(e["runtime"], e["extra"]["execution_provider"]) for e in entries} == {("openvino", "CPU")}
    code, out, _ = run(capsys, "plan", "--table", table, "--budget-ms", "100000")
    assert code == 0 and "width 1" in out
    code, _, err = run(
        capsys, "profile", "--checkpoint", ck, "--runtime", "tflite", "--out", tmp_path / "x.json"
    )
    assert code == 2 and "--runtime 'tflite' must be one of onnx, openvino" in err
    assert not (tmp_path / "x.json").exists()


def test_openvino_export_errors_are_one_line(ck, tmp_path, capsys, monkeypatch):
    code, _, err = run(
        capsys, "export", "--checkpoint", ck, "--width", "0.5", "--export-format", "openvino",
        "--precision", "fp16", "--out", tmp_path / "exp", *SMALL,
    )  # fmt: skip
    assert code == 2 and "fp16 is for GPUs" in err and len(err.strip().splitlines()) == 1, err
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    code, _, err = run(
        capsys, "export", "--checkpoint", ck, "--width", "0.5", "--export-format", "openvino",
        "--out", tmp_path / "exp", *SMALL,
    )  # fmt: skip
    assert code == 2 and INSTALL in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "exp").exists()
    (tmp_path / "m.xml").write_text("<net/>")
    code, _, err = run(capsys, "extract", "--model", tmp_path / "m.xml", "--out", tmp_path / "g.npz")
    assert code == 2 and INSTALL in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run(
        capsys, "profile", "--checkpoint", ck, "--runtime", "openvino", "--out", tmp_path / "d.json"
    )
    assert code == 2 and INSTALL in err and not (tmp_path / "d.json").exists()
