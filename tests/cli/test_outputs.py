"""An output never replaces an input, nor anything without --force; --force replaces only our own output."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from exporters.files import OWNED
from tests.cli.test_cli import TINY, run


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def run_dir(tmp_path, capsys) -> Path:
    """A folder holding a checkpoint and what training leaves beside it."""
    folder = tmp_path / "run"
    code, _, err = run(capsys, "init", *TINY, "--out", str(folder / "checkpoint.safetensors"))
    assert code == 0, err
    (folder / "train_state.safetensors").write_bytes(b"optimiser state")
    (folder / "train_log.jsonl").write_text('{"step": 1}\n')
    return folder


def one_line_refusal(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_export_force_onto_the_run_it_exports_from_is_refused(run_dir, capsys):
    before = snapshot(run_dir)
    ck = run_dir / "checkpoint.safetensors"
    code, _, err = run(
        capsys, "export", "--checkpoint", str(ck), "--width", "0.25", "--out", str(run_dir), "--force"
    )
    one_line_refusal(code, err, "contains the input", "choose another --out")
    assert snapshot(run_dir) == before


def test_verify_out_onto_its_gallery_is_refused(run_dir, tmp_path, capsys):
    gallery = tmp_path / "g.npz"
    np.savez(gallery, features=np.zeros((2, 4), np.float32))
    before = gallery.read_bytes()
    for extra in ([], ["--force"]):
        code, _, err = run(
            capsys,
            "verify",
            "--model",
            str(tmp_path / "m.onnx"),
            "--gallery",
            str(gallery),
            "--out",
            str(gallery),
            *extra,
        )
        one_line_refusal(code, err, "is the input")
        assert gallery.read_bytes() == before


def test_verify_out_needs_force_to_replace_a_file(tmp_path, capsys):
    report = tmp_path / "verify.json"
    report.write_text("keep")
    code, _, err = run(
        capsys,
        "verify",
        "--model",
        str(tmp_path / "m.onnx"),
        "--gallery",
        str(tmp_path / "g.npz"),
        "--out",
        str(report),
    )
    one_line_refusal(code, err, "already exists", "--force")
    assert report.read_text() == "keep"


def test_profile_out_onto_its_checkpoint_is_refused(run_dir, capsys):
    ck = run_dir / "checkpoint.safetensors"
    before = ck.read_bytes()
    code, _, err = run(capsys, "profile", "--checkpoint", str(ck), "--out", str(ck), "--force")
    one_line_refusal(code, err, "is the input")
    assert ck.read_bytes() == before


def test_extract_out_onto_its_checkpoint_is_refused(run_dir, capsys):
    ck = run_dir / "checkpoint.safetensors"
    before = ck.read_bytes()
    code, _, err = run(capsys, "extract", "--checkpoint", str(ck), "--out", str(ck), "--force")
    one_line_refusal(code, err, "is the input")
    assert ck.read_bytes() == before


def test_slice_force_replaces_its_own_output_but_not_a_users_folder(run_dir, tmp_path, capsys):
    ck = run_dir / "checkpoint.safetensors"
    out = tmp_path / "w025"
    assert run(capsys, "slice", "--checkpoint", str(ck), "--width", "0.25", "--out", str(out))[0] == 0
    assert json.loads((out / OWNED).read_text())["entries"] == ["model.json", "model.safetensors"]
    code, _, err = run(capsys, "slice", "--checkpoint", str(ck), "--width", "0.25", "--out", str(out))
    one_line_refusal(code, err, "--force")
    assert (
        run(capsys, "slice", "--checkpoint", str(ck), "--width", "0.25", "--out", str(out), "--force")[0] == 0
    )
    # a file the user put there: --force refuses rather than delete it
    (out / "notes.txt").write_text("mine")
    code, _, err = run(
        capsys, "slice", "--checkpoint", str(ck), "--width", "0.25", "--out", str(out), "--force"
    )
    one_line_refusal(code, err, "notes.txt", "did not write")
    assert (out / "notes.txt").read_text() == "mine"
    # a folder sfsc-deploy never wrote
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "photo.jpg").write_bytes(b"x")
    code, _, err = run(
        capsys, "slice", "--checkpoint", str(ck), "--width", "0.25", "--out", str(theirs), "--force"
    )
    one_line_refusal(code, err, "not written by sfsc-deploy")
    assert (theirs / "photo.jpg").read_bytes() == b"x"


def test_eval_and_bench_need_force_to_replace_their_reports(run_dir, tmp_path, capsys):
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "compat_matrix.json").write_text("earlier")
    (folder / "bench.json").write_text("earlier")
    ck = str(run_dir / "checkpoint.safetensors")
    code, _, err = run(capsys, "eval", "--checkpoint", ck, "--out", str(folder))
    one_line_refusal(code, err, "compat_matrix.json", "--force")
    code, _, err = run(
        capsys, "bench", "--checkpoint", ck, "--out", str(folder), "--iters", "1", "--warmup", "0"
    )
    one_line_refusal(code, err, "bench.json", "--force")
    assert (folder / "compat_matrix.json").read_text() == "earlier" and (
        folder / "bench.json"
    ).read_text() == "earlier"


def test_an_export_while_another_writes_the_same_out_fails_with_one_line(run_dir, tmp_path, capsys):
    """The lock a running export holds on its --out (here held by the test) turns the second away."""
    from exporters.files import output_lock

    out = tmp_path / "exp"
    ck = run_dir / "checkpoint.safetensors"
    with output_lock(out):
        code, _, err = run(capsys, "export", "--checkpoint", str(ck), "--width", "0.25", "--out", str(out))
    one_line_refusal(code, err, "another sfsc-deploy command is writing")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_force_onto_a_symlinked_out_is_refused_and_leaves_no_link(run_dir, tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (real / "keep.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    ck = run_dir / "checkpoint.safetensors"
    code, _, err = run(
        capsys, "export", "--checkpoint", str(ck), "--width", "0.25", "--out", str(link), "--force"
    )
    one_line_refusal(code, err, "symbolic link")
    assert link.is_symlink() and (real / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real", "run"]


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path):
    """A file-size limit makes every write past 64 KiB fail as a full disk does (EFBIG / ENOSPC)."""
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    out = tmp_path / "ck.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "sfsc_deploy.cli", "init", *TINY, "--out", str(out)],
        cwd=Path(__file__).resolve().parents[2],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=300,
    )
    one_line_refusal(proc.returncode, proc.stderr, "no space left", "unfinished output was removed")
    assert list(tmp_path.iterdir()) == []
