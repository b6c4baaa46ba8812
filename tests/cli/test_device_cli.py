"""--device on every command that runs the PyTorch model, --amp / --channels-last on train."""

import numpy as np
import pytest
import torch
from PIL import Image

from sfsc_deploy.models.slicing import load_sliced
from tests.cli import TINY_NET, run
from tests.cli.test_cli import TINY

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")
TRAIN = ["train", *TINY_NET, "--widths", "0.5", "--epochs", "1", "--batch-ids", "8", "--batch-k", "2"]
TRAIN += ["--feature-dim", "16", "--no-plots"]


@pytest.fixture
def ck(tmp_path, capsys):
    path = tmp_path / "ck.safetensors"
    assert run(capsys, "init", *TINY, "--out", str(path))[0] == 0
    return path


def one_line(code, err, *parts):
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert all(part in err for part in parts), err


@no_cuda
def test_cuda_without_a_gpu_is_one_line_before_any_work(ck, tmp_path, capsys):
    out = tmp_path / "out"
    commands = [
        ["train", "--out", str(out)],
        ["eval", "--checkpoint", str(ck), "--out", str(out)],
        ["extract", "--checkpoint", str(ck), "--out", str(out / "g.npz")],
        ["slice", "--checkpoint", str(ck), "--width", "0.5", "--out", str(out)],
    ]
    for argv in commands:
        code, _, err = run(capsys, *argv, "--device", "cuda")
        one_line(code, err, "--device cuda: PyTorch sees no CUDA GPU here", "--device cpu")
        assert not out.exists(), argv


def test_bad_device_and_amp_values_are_one_line(ck, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(capsys, "train", "--out", str(out), "--device", "gpu0")
    one_line(code, err, "--device 'gpu0' is not a device; use one of auto | cpu | cuda | cuda:N")
    code, _, err = run(capsys, "eval", "--checkpoint", str(ck), "--out", str(out), "--device", "cuda:x")
    one_line(code, err, "--device 'cuda:x' is not a device")
    code, _, err = run(capsys, "train", "--out", str(out), "--amp", "fp32")
    one_line(code, err, "--amp 'fp32' is not known; choose one of: off, bf16, fp16")
    code, _, err = run(capsys, "extract", "--model", "m.onnx", "--out", str(out), "--device", "cpu")
    one_line(code, err, "--device cpu is for a --checkpoint", "drop --device")
    assert not out.exists()


def test_extract_on_the_chosen_device_gives_the_same_cpu_features(ck, tmp_path, capsys):
    files = {}
    for device in ("auto", "cpu"):
        files[device] = tmp_path / f"{device}.npz"
        argv = ["extract", "--checkpoint", str(ck), "--out", str(files[device]), "--device", device]
        code, _, err = run(capsys, *argv)
        assert code == 0, err
    a, b = (np.load(files[d])["features"] for d in ("auto", "cpu"))
    assert a.dtype == np.float32 and a.shape == b.shape
    if not torch.cuda.is_available():  # auto is the CPU here: the very same features
        assert np.array_equal(a, b)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.999  # a GPU's (TF32) features are the CPU's within rounding


def test_slice_calibrates_on_the_chosen_device(ck, tmp_path, capsys):
    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (128, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    argv = ["slice", "--checkpoint", str(ck), "--width", "0.3", "--calibrate", str(folder)]
    code, out, err = run(capsys, *argv, "--device", "cpu", "--out", str(tmp_path / "w03"))
    assert code == 0 and "4 images" in out, err
    _, desc = load_sliced(tmp_path / "w03")
    assert desc["calibration_images"] == 4 and desc["max_abs_error_vs_switchable"] <= 1e-5


@pytest.mark.slow
def test_train_with_bf16_and_channels_last_then_eval_on_the_cpu(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [*TRAIN, "--amp", "bf16", "--channels-last", "--device", "cpu", "--out", str(run_dir)]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    code, out, err = run(
        capsys, "eval", "--checkpoint", str(run_dir), "--out", str(tmp_path / "ev"), "--device", "cpu"
    )
    assert code == 0 and "compatibility rule" in out, err
    code, _, err = run(capsys, *TRAIN, "--epochs", "1", "--out", str(run_dir), "--resume")
    assert code == 0, err  # float32, NCHW, auto: the same run, resumed (here: already complete)
