"""The CLI end to end at tiny sizes: init → info → slice, and its error lines."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from exporters.files import OWNED
from sfsc_deploy.cli import main
from sfsc_deploy.models import checkpoint
from sfsc_deploy.models.slicing import load_sliced
from tests.cli import TINY_NET, run

TINY = [*TINY_NET, "--feature-dim", "32", "--num-classes", "10"]


@pytest.fixture
def ck(tmp_path, capsys):
    path = tmp_path / "ck.safetensors"
    code, out, _ = run(capsys, "init", *TINY, "--out", str(path))
    assert code == 0 and "family" in out
    return path


def test_info_table_and_json(ck, capsys):
    code, out, _ = run(capsys, "info", str(ck))
    assert code == 0 and "resnet18" in out and "params ratio" in out
    code, out, _ = run(capsys, "info", str(ck), "--json")
    data = json.loads(out)
    assert data["widths"] == [0.25, 0.5, 0.75, 1.0]
    assert data["family_id"] == checkpoint.read_header(ck)["family_id"]
    ratios = [r["mac_ratio"] for r in data["per_width"]]
    assert ratios == sorted(ratios) and ratios[-1] == 1.0


def test_slice_writes_a_standalone_model(ck, tmp_path, capsys):
    out_dir = tmp_path / "w025"
    code, out, _ = run(capsys, "slice", "--checkpoint", str(ck), "--width", "0.25", "--out", str(out_dir))
    assert code == 0 and "max |sliced - switchable|" in out
    model, desc = load_sliced(out_dir)
    assert desc["width"] == 0.25 and desc["max_abs_error_vs_switchable"] <= 1e-5
    assert desc["family_id"] == checkpoint.read_header(ck)["family_id"]
    net = checkpoint.load(ck)
    x = torch.randn(2, 3, 64, 32)
    with net.at_width(0.25), torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)


def test_untrained_width_is_one_line_and_exit_2(ck, tmp_path, capsys):
    code, out, err = run(
        capsys, "slice", "--checkpoint", str(ck), "--width", "0.3", "--out", str(tmp_path / "w")
    )
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "trained widths: 0.25, 0.5, 0.75, 1" in err and "--calibrate" in err
    assert not (tmp_path / "w").exists()


def test_calibrate_makes_an_untrained_width_sliceable(ck, tmp_path, capsys):
    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (128, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    code, out, err = run(
        capsys,
        "slice",
        "--checkpoint",
        str(ck),
        "--width",
        "0.3",
        "--calibrate",
        str(folder),
        "--out",
        str(tmp_path / "w03"),
    )
    assert code == 0, err
    assert "6 images" in out and "1 unreadable" in out
    _, desc = load_sliced(tmp_path / "w03")
    assert desc["width"] == 0.3 and desc["calibration_images"] == 6


def test_existing_output_needs_force(ck, tmp_path, capsys):
    args = ["slice", "--checkpoint", str(ck), "--width", "0.5", "--out", str(tmp_path / "w")]
    assert run(capsys, *args)[0] == 0
    code, _, err = run(capsys, *args)
    assert code == 2 and "--force" in err
    assert run(capsys, *args, "--force")[0] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), (b"garbage" * 20, "not a readable safetensors")],
)
def test_bad_checkpoint_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "ck.safetensors"
    if content is not None:
        path.write_bytes(content)
    code, _, err = run(capsys, "info", str(path))
    assert code == 2 and message in err and err.strip().count("\n") == 0
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    from sfsc_deploy.errors import SfscError

    with pytest.raises(SfscError):
        main(["--debug", "info", str(tmp_path / "missing.safetensors")])


def test_bad_option_values(tmp_path, capsys):
    code, _, err = run(capsys, "init", "--out", str(tmp_path / "x"), "--input-size", "big")
    assert code == 2 and "HEIGHTxWIDTH" in err
    code, _, err = run(capsys, "init", "--out", str(tmp_path / "x"), "--widths", "0.5,2")
    assert code == 2 and "outside (0, 1]" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_train_then_eval_writes_the_matrix(tmp_path, capsys):
    run_dir, eval_dir = tmp_path / "run", tmp_path / "eval"
    code, out, err = run(
        capsys,
        "train",
        "--data",
        "synthetic",
        "--arch",
        "mobilenet_v2",
        "--widths",
        "0.5",
        "--epochs",
        "1",
        "--batch-ids",
        "8",
        "--batch-k",
        "2",
        "--width-mult",
        "0.25",
        "--input-size",
        "64x32",
        "--divisor",
        "4",
        "--feature-dim",
        "16",
        "--sampler",
        "random",
        "--last-stride",
        "2",
        "--out",
        str(run_dir),
    )
    assert code == 0, err
    assert (run_dir / "networks.json").exists() and (run_dir / "train_log.jsonl").exists()
    header = checkpoint.read_header(run_dir / "checkpoint.safetensors")
    assert header["config"]["options"]["last_stride"] == 2
    assert header["extra"]["training"]["config"]["sampler"] == "random"
    code, out, err = run(
        capsys, "eval", "--checkpoint", str(run_dir), "--data", "synthetic", "--out", str(eval_dir)
    )
    assert code == 0, err
    assert "φ 0.5×" in out and "compatibility rule" in out
    data = json.loads((eval_dir / "compat_matrix.json").read_text())
    assert len(data["rules"]) == 1
    assert (eval_dir / "compat_matrix.png").stat().st_size > 1000


def test_train_bad_options_are_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--method", "magic", "--out", str(tmp_path / "r"))
    assert code == 2 and "--method 'magic' is not known" in err
    code, _, err = run(capsys, "train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"))
    assert code == 2 and "not found" in err
    code, _, err = run(capsys, "eval", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "e"))
    assert code == 2 and "networks.json" in err


def test_export_extract_verify(trained_checkpoint, tmp_path, capsys):
    """int8 needs a trained model: an untrained one's features are noise that int8 cannot keep."""
    ck = trained_checkpoint
    exp = tmp_path / "exp"
    code, out, err = run(
        capsys,
        "export",
        "--checkpoint",
        str(ck),
        "--width",
        "0.25",
        "--precision",
        "int8",
        "--bake-preprocess",
        "--calibration-images",
        "64",
        "--parity-images",
        "16",
        "--out",
        str(exp),
    )
    assert code == 0, err
    manifest = json.loads((exp / "manifest.json").read_text())
    artifact = exp / manifest["artifacts"][0]["file"]
    assert artifact.name.endswith("_w0.25_int8.onnx") and artifact.exists()
    gallery = tmp_path / "g.npz"
    code, out, err = run(capsys, "extract", "--checkpoint", str(ck), "--out", str(gallery))
    assert code == 0 and "features" in out, err
    report = tmp_path / "report.json"
    args = ["verify", "--model", str(artifact), "--gallery", str(gallery), "--data", "synthetic"]
    code, out, err = run(capsys, *args, "--checkpoint", str(ck), "--out", str(report))
    assert code == 0 and "verify: PASS" in out, out + err
    saved = json.loads(report.read_text())
    assert saved["passed"] is True and saved["verdict"] == "pass"
    # the console says each drop with its paired interval, not only the report
    assert "mAP drop" in out and "rank-1 drop" in out and "McNemar p" in out and "queries" in out
    assert [p["metric"] for p in saved["paired"]] == ["mAP", "rank-1"]
    assert all(p["low"] <= p["drop"] <= p["high"] for p in saved["paired"])
    # a failed check is exit 1, not an error: int8 never keeps every nearest neighbour here
    assert json.loads(report.read_text())["top1_agreement"] < 1.0
    code, out, _ = run(capsys, *args, "--checkpoint", str(ck), "--min-top1-agreement", "1")
    assert code == 1 and "verify: FAIL" in out
    q = tmp_path / "q.npz"
    code, out, err = run(
        capsys, "extract", "--model", str(artifact), "--split", "query", "--dtype", "float16", "--out", str(q)
    )
    assert code == 0 and "float16" in out, err


def test_verify_on_a_gallery_folder_from_top_k_lists(trained_checkpoint, tmp_path, capsys):
    """--ranking topk and the search options (shared with `search`) reach verify; the report says
    which ranking and which index its figures come from."""
    import importlib.util

    ck, exp = trained_checkpoint, tmp_path / "exp"
    code, _, err = run(
        capsys, "export", "--checkpoint", str(ck), "--width", "0.5", "--parity-images", "8", "--out", str(exp)
    )
    assert code == 0, err
    artifact = exp / json.loads((exp / "manifest.json").read_text())["artifacts"][0]["file"]
    folder = tmp_path / "gallery"
    code, out, err = run(
        capsys, "extract", "--checkpoint", str(ck), "--shard-size", "7", "--out", str(folder)
    )
    assert code == 0 and "shards" in out, err
    args = ["verify", "--model", str(artifact), "--gallery", str(folder), "--checkpoint", str(ck)]
    report = tmp_path / "report.json"
    topk = ["--ranking", "topk", "--k", "10", "--gallery-block", "5", "--query-block", "16"]
    code, out, err = run(capsys, *args, *topk, "--out", str(report))
    assert code == 0 and "verify: PASS" in out and "ranking: top-k (k=10)" in out, out + err
    saved = json.loads(report.read_text())
    assert saved["ranking"] == "top-k (k=10)" and saved["search"]["method"] == "exact"
    assert saved["artifact_metrics"]["ranking"] == "top-k (k=10)"
    code, out, err = run(capsys, *args)  # a small gallery: the full ranking by default
    assert code == 0 and "ranking: full" in out, out + err
    code, _, err = run(capsys, *args, "--ranking", "full", "--index", "ivf")
    assert code == 2 and "--ranking full" in err
    if importlib.util.find_spec("faiss") is not None:
        flat = ["--index", "flat", "--k", "10", "--out", str(report), "--force"]
        code, out, err = run(capsys, *args, *flat)
        assert code == 0 and "faiss-flat recall@10" in out, out + err
        saved = json.loads(report.read_text())
        assert saved["search"]["recall"] == 1.0 and saved["ranking"] == "top-k (k=10)"


def test_export_tiers_file(ck, tmp_path, capsys):
    tiers = tmp_path / "tiers.toml"
    tiers.write_text(
        '[[tier]]\nname = "edge"\nwidth = 0.5\n\n[[tier]]\nname = "cloud"\nwidth = 1.0\nnormalize = true\n'
    )
    code, out, err = run(
        capsys,
        "export",
        "--checkpoint",
        str(ck),
        "--tiers",
        str(tiers),
        "--out",
        str(tmp_path / "exp"),
        "--parity-images",
        "8",
        "--calibration-images",
        "8",
    )
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "exp").iterdir() if p.name != OWNED)
    assert files == ["cloud_w1_fp32.onnx", "edge_w0.5_fp32.onnx", "manifest.json"]


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "exactly one of --width"),
        (["--width", "0.5", "--export-format", "tensorrt", "--precision", "fp16"], "tensorrt"),
        (["--width", "0.5", "--precision", "fp16"], "fp16 is for GPUs"),
        (["--width", "0.5", "--batch", "1,2"], "MIN,OPT,MAX"),
        (["--width", "0.3"], "no BatchNorm"),
        (["--width", "0.5", "--opset", "11"], "opset"),
    ],
)
def test_export_bad_input_is_one_line(ck, tmp_path, capsys, extra, message):
    from exporters.tensorrt_engine import tensorrt_unavailable

    if "tensorrt" in extra and tensorrt_unavailable() is None:
        pytest.skip("TensorRT is available here")
    code, _, err = run(
        capsys,
        "export",
        "--checkpoint",
        str(ck),
        "--out",
        str(tmp_path / "exp"),
        *extra,
        "--parity-images",
        "4",
        "--calibration-images",
        "4",
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "exp").exists()


def test_verify_refuses_another_family(ck, tmp_path, capsys):
    other = tmp_path / "other.safetensors"
    assert run(capsys, "init", *TINY, "--seed", "1", "--out", str(other))[0] == 0
    assert (
        run(
            capsys,
            "export",
            "--checkpoint",
            str(other),
            "--width",
            "1.0",
            "--out",
            str(tmp_path / "e"),
            "--parity-images",
            "4",
        )[0]
        == 0
    )
    assert run(capsys, "extract", "--checkpoint", str(ck), "--out", str(tmp_path / "g.npz"))[0] == 0
    code, _, err = run(
        capsys,
        "verify",
        "--model",
        str(tmp_path / "e" / "resnet18_w1_fp32.onnx"),
        "--gallery",
        str(tmp_path / "g.npz"),
        "--data",
        "synthetic",
    )
    assert code == 2 and "model family" in err


@pytest.mark.slow
def test_bench_profile_plan(ck, tmp_path, capsys):
    exp = tmp_path / "exp"
    assert (
        run(
            capsys,
            "export",
            "--checkpoint",
            str(ck),
            "--width",
            "0.5",
            "--out",
            str(exp),
            "--parity-images",
            "4",
        )[0]
        == 0
    )
    assert run(capsys, "eval", "--checkpoint", str(ck), "--out", str(tmp_path / "ev"))[0] == 0
    out_dir = tmp_path / "b"
    code, out, err = run(
        capsys,
        "bench",
        str(exp / "resnet18_w0.5_fp32.onnx"),
        "--checkpoint",
        str(ck),
        "--widths",
        "0.5",
        "--batches",
        "1,2",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--eval",
        str(tmp_path / "ev" / "compat_matrix.json"),
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    record = json.loads((out_dir / "bench.json").read_text())
    assert {(r["runtime"], r["batch"]) for r in record["results"]} == {
        (rt, b) for rt in ("onnxruntime", "pytorch") for b in (1, 2)
    }
    for name in ("bench.md", "latency_vs_width.png", "accuracy_vs_latency.png"):
        assert (out_dir / name).stat().st_size > 0
    table = tmp_path / "dev.json"
    code, out, err = run(
        capsys,
        "profile",
        "--checkpoint",
        str(ck),
        "--out",
        str(table),
        "--batches",
        "1",
        "--iters",
        "3",
        "--warmup",
        "1",
    )
    assert code == 0, err
    code, out, _ = run(
        capsys, "plan", "--table", str(table), "--budget-ms", "100000", "--eval", str(tmp_path / "ev")
    )
    assert code == 0 and "width 1:" in out and "expected M(φ_1, φ_1.0)" in out
    code, out, _ = run(capsys, "plan", "--table", str(table), "--budget-ms", "0.000001")
    assert code == 1 and "no trained width meets" in out
    code, _, err = run(capsys, "plan", "--table", str(table), "--budget-ms", "5", "--batch", "64")
    assert code == 2 and "batch-64" in err
    code, _, err = run(capsys, "bench", "--out", str(out_dir), "--batches", "x")
    assert code == 2 and "--batches" in err
    code, _, err = run(capsys, "bench", "--out", str(tmp_path / "none"))
    assert code == 2 and "nothing to benchmark" in err


def test_extract_refuses_nan_weights_and_writes_nothing(ck, tmp_path, capsys):
    net = checkpoint.load(ck)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    bad = checkpoint.save(net, tmp_path / "nan.safetensors")
    out = tmp_path / "g.npz"
    code, _, err = run(capsys, "extract", "--checkpoint", str(bad), "--out", str(out))
    assert code == 2 and "non-finite features" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.glob(".g.npz*"))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "mobilenet_v2", "shufflenet_v2"])
def test_a_fresh_network_exports_at_every_width(arch, tmp_path, capsys):
    """`init` is the way to try the pipeline before training: every width of it must export and
    pass fp32 parity, so its eval-mode signal must neither vanish nor explode."""
    ck = tmp_path / "ck.safetensors"
    options = ["--width-mult", "0.25", "--input-size", "64x32", "--feature-dim", "32", "--num-classes", "10"]
    code, _, err = run(
        capsys, "init", "--arch", arch, "--widths", "0.25,0.5,0.75", *options, "--out", str(ck)
    )
    assert code == 0, err
    tiers = tmp_path / "tiers.toml"
    tiers.write_text(
        "".join(f'[[tier]]\nname = "w{i}"\nwidth = {w}\n' for i, w in enumerate([0.25, 0.5, 0.75, 1.0]))
    )
    out = tmp_path / "exp"
    code, _, err = run(
        capsys,
        "export",
        "--checkpoint",
        str(ck),
        "--tiers",
        str(tiers),
        "--out",
        str(out),
        "--calibration-images",
        "32",
        "--parity-images",
        "16",
    )
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["artifacts"]) == 4
    assert all(a["parity"]["passed"] for a in manifest["artifacts"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--lr", "inf"], "--lr must be a finite number"),
        (["train", "--kl-weight", "nan"], "--kl-weight must be a finite number"),
        (["train", "--erasing", "5"], "--erasing must be a finite number in [0, 1]"),
        (["train", "--weight-decay", "-1"], "--weight-decay must be"),
        (["train", "--warmup-epochs", "-1"], "--warmup-epochs must be"),
        (["train", "--width-mult", "-1"], "width_mult must be in"),
        (["bench", "--threads", "-1"], "thread counts must be >= 1"),
        (["bench", "--provider", "Bogus"], "not an onnxruntime execution provider"),
        (["bench", "--seconds", "inf"], "finite --seconds"),
        (["plan", "--table", "t.json", "--budget-ms", "nan"], "--budget-ms must be a positive finite"),
        (
            ["verify", "--model", "m.onnx", "--gallery", "g.npz", "--max-map-drop", "nan"],
            "finite number >= 0",
        ),
    ],
)
def test_impossible_option_values_are_refused_up_front(ck, tmp_path, capsys, argv, message):
    """One line and exit 2 before any work: no run folder, no file, nothing discovered mid-run."""
    if argv[0] == "plan":
        table = tmp_path / "t.json"
        run(
            capsys,
            "profile",
            "--checkpoint",
            str(ck),
            "--out",
            str(table),
            "--iters",
            "1",
            "--warmup",
            "0",
            "--batches",
            "1",
        )
        argv = ["plan", "--table", str(table), *argv[3:]]
    out = tmp_path / "out"
    extra = {"train": ["--out", str(out)], "bench": ["--checkpoint", str(ck), "--out", str(out)]}.get(
        argv[0], []
    )
    code, _, err = run(capsys, *argv, *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("command", "option", "default"),
    [("train", "--epochs", "12"), ("search", "--k", "100"), ("extract", "--shard-size", "50000")],
)
def test_help_shows_the_librarys_defaults(capsys, monkeypatch, command, option, default):
    """Defaults live in the library's dataclasses; --help must still show them (rich reads an
    unescaped "[default: N]" as markup and drops it)."""
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    line = next(line for line in out.splitlines() if f" {option} " in line)
    assert f"[default: {default}]" in line
