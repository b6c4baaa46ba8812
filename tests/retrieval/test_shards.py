"""Gallery folders of shards: the same gallery as one .npz, resumable after a real kill, damage and
hostile manifests refused in one line, blocks that rebuild the features, --nproc 2 = one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sfsc_deploy.errors import SfscError
from sfsc_deploy.retrieval.extractors import TorchExtractor
from sfsc_deploy.retrieval.gallery import Gallery, extract_gallery, save_gallery
from sfsc_deploy.retrieval.shards import MANIFEST, ShardedGallery, extract_shards, open_gallery
from tests.conftest import tiny

ROOT = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------- a fast gallery folder
@pytest.fixture(scope="module")
def small():
    from sfsc_deploy.data import load_dataset
    from sfsc_deploy.data.synthetic import SyntheticConfig

    torch.set_num_threads(1)
    return (
        TorchExtractor(tiny(widths=[0.25, 0.5, 1.0]), 0.5),
        load_dataset("synthetic", synthetic=SyntheticConfig(num_train_ids=4, num_test_ids=8)),
    )


@pytest.fixture(scope="module")
def folder(small, tmp_path_factory) -> tuple[Path, Gallery]:
    """A gallery folder of 7-image shards (64 images: 10 shards, the last of 1) and its .npz twin."""
    extractor, data = small
    path = tmp_path_factory.mktemp("shards") / "gallery"
    written = extract_shards(extractor, data, "gallery", path, shard_size=7, batch_size=7)
    assert written.count == len(data.gallery) and written.count % 7 and written.kept == 0
    return path, extract_gallery(extractor, data, batch_size=7)


@pytest.fixture
def copy(folder, tmp_path) -> Path:
    shutil.copytree(folder[0], tmp_path / "g")
    return tmp_path / "g"


# ------------------------------------------------------------------------------ same as one .npz
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_sharded_extract_equals_one_npz(trained_checkpoint, synthetic_small, tmp_path, dtype):
    extractor = TorchExtractor.from_checkpoint(trained_checkpoint, 0.5)
    whole = extract_gallery(extractor, synthetic_small, dtype=dtype, batch_size=8)
    save_gallery(whole, tmp_path / "g.npz")
    assert len(whole) % 24  # the last shard is short
    written = extract_shards(
        extractor, synthetic_small, "gallery", tmp_path / "g", dtype=dtype, shard_size=24, batch_size=8
    )
    assert written.shards == -(-len(whole) // 24) and written.count == len(whole)
    sharded, npz = open_gallery(tmp_path / "g"), open_gallery(tmp_path / "g.npz")
    assert isinstance(sharded, ShardedGallery) and type(npz) is Gallery
    assert sharded.features.dtype == np.dtype(dtype) and sharded.dtype == npz.dtype == np.dtype(dtype)
    assert sharded.features.tobytes() == npz.features.tobytes()  # the same bytes
    for name in ("pids", "camids", "paths"):
        assert np.array_equal(getattr(sharded, name), getattr(npz, name)), name
    # the model's identity exactly as the .npz carries it; the header says which layout
    assert {**sharded.meta, "format": None} == {**npz.meta, "format": None}
    assert sharded.meta["format"] == "sfsc-deploy/gallery-shards"
    assert len(sharded) == len(npz) and sharded.dim == npz.dim == 32
    # every shard is a plain C-order .npy that numpy memory-maps
    mapped = np.load(tmp_path / "g" / "features-00000.npy", mmap_mode="r")
    assert isinstance(mapped, np.memmap) and mapped.shape == (24, 32) and mapped.flags.c_contiguous
    assert np.array_equal(mapped, npz.features[:24])


@pytest.mark.parametrize("rows", [1, 3, 7, 10, 14, 64, 1000])
def test_blocks_rebuild_the_features(folder, rows):
    path, whole = folder
    gallery = open_gallery(path)
    starts, parts = [], []
    for start, block in gallery.blocks(rows):
        assert block.dtype == np.float32 and block.shape[1] == gallery.dim and 0 < len(block) <= rows
        starts.append(start)
        parts.append(block.copy())
    assert starts == list(range(0, len(whole), rows))  # full blocks, across shard boundaries
    assert np.concatenate(parts).tobytes() == whole.features.tobytes()
    # the .npz gallery answers the same interface with the same blocks
    assert [s for s, _ in whole.blocks(rows)] == starts
    with pytest.raises(SfscError, match="positive number of rows"):
        next(gallery.blocks(0))


def test_open_gallery_reads_an_old_npz_and_the_manifest_path(folder, tmp_path):
    path, whole = folder
    save_gallery(whole, tmp_path / "old.npz")
    old = open_gallery(tmp_path / "old.npz")
    assert np.array_equal(old.features, whole.features) and list(old.paths) == list(whole.paths)
    assert len(open_gallery(path / MANIFEST)) == len(whole)
    with pytest.raises(SfscError, match="not found"):
        open_gallery(tmp_path / "none.npz")


# ------------------------------------------------------------------------------ damage, hostility
def test_stray_and_half_written_files_are_never_read(copy, folder):
    whole = folder[1]
    good = (copy / "features-00001.npy").read_bytes()
    (copy / f".features-00001.npy.{2**22 + 7}.abc.tmp").write_bytes(good[: len(good) // 2])  # half-written
    (copy / "features-00042.npy").write_bytes(b"junk")  # a file no manifest lists
    gallery = open_gallery(copy)
    assert np.concatenate([b for _, b in gallery.blocks(5)]).tobytes() == whole.features.tobytes()


def test_a_flipped_byte_is_one_clear_error(copy):
    path = copy / "features-00003.npy"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(
        SfscError, match=r"features-00003\.npy does not match its sha256.*re-run `sfsc-deploy extract`"
    ):
        open_gallery(copy)
    open_gallery(copy, verify=False)  # skipping the hashes is the caller's choice
    # a damaged header is refused even then, naming the file
    data[:6] = b"\x00" * 6
    path.write_bytes(bytes(data))
    with pytest.raises(SfscError, match=r"features-00003\.npy is not a readable gallery shard"):
        open_gallery(copy, verify=False)


def test_non_finite_features_are_refused_while_reading(copy):
    path = copy / "features-00002.npy"
    array = np.load(path)
    array[1, 0] = np.nan
    np.save(path, array)
    gallery = open_gallery(copy, verify=False)
    with pytest.raises(SfscError, match=r"features-00002\.npy gave non-finite features"):
        for _ in gallery.blocks(4):
            pass
    with pytest.raises(SfscError, match="does not match its sha256"):
        open_gallery(copy)


@pytest.mark.parametrize(
    "name", ["../x.npy", "/etc/passwd", "sub/features-00000.npy", "..", "features-00001.npy"]
)
def test_a_manifest_naming_files_outside_the_folder_is_refused(copy, name):
    shutil.copy(copy / "features-00000.npy", copy.parent / "x.npy")
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["shards"][0]["features"] = name
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SfscError, match="refused") as info:
        open_gallery(copy, verify=False)
    assert len(str(info.value).splitlines()) == 1


def test_a_symlinked_shard_is_refused(copy, tmp_path):
    outside = tmp_path / "elsewhere.npy"
    shutil.move(copy / "features-00000.npy", outside)
    (copy / "features-00000.npy").symlink_to(outside)
    with pytest.raises(SfscError, match="symbolic link"):
        open_gallery(copy)


def test_damaged_or_foreign_manifests_are_one_line(copy):
    manifest = json.loads((copy / MANIFEST).read_text())
    for change, message in (
        ({"format": "sfsc-deploy/gallery"}, "is not a gallery manifest"),
        ({"format_version": 99}, "newer sfsc-deploy"),
        ({"count": 5}, "not the sum"),
        ({"dim": 3}, "feature_dim 32 but 3-d"),
        ({"complete": False}, "unfinished gallery"),
    ):
        (copy / MANIFEST).write_text(json.dumps({**manifest, **change}))
        with pytest.raises(SfscError, match=message):
            open_gallery(copy, verify=False)
    (copy / MANIFEST).write_text("{")
    with pytest.raises(SfscError, match="not a readable gallery manifest"):
        open_gallery(copy)


# ---------------------------------------------------------------------------------- resume rules
def test_resume_keeps_checked_shards_and_redoes_a_damaged_one(small, copy, folder):
    extractor, data = small
    before = _files(copy)
    (copy / "features-00004.npy").write_bytes(b"damaged")
    written = extract_shards(extractor, data, "gallery", copy, shard_size=7, batch_size=7)
    assert written.kept == 9 and written.shards == 10
    assert _files(copy) == before  # shard 4 extracted again, to the same bytes


def test_another_gallery_in_the_folder_is_one_error_naming_what_differs(small, copy):
    extractor, data = small
    with pytest.raises(SfscError, match=r"another dtype \(float32, this extract: float16\).*--force"):
        extract_shards(extractor, data, "gallery", copy, dtype="float16", shard_size=7, batch_size=7)
    with pytest.raises(SfscError, match="another shard size"):
        extract_shards(extractor, data, "gallery", copy, shard_size=8, batch_size=7)
    with pytest.raises(SfscError, match="another split"):
        extract_shards(extractor, data, "query", copy, shard_size=7, batch_size=7)
    written = extract_shards(extractor, data, "gallery", copy, shard_size=8, force=True)
    assert written.kept == 0 and open_gallery(copy).manifest["shard_size"] == 8
    (copy / "notes.txt").write_text("mine")
    with pytest.raises(SfscError, match=r"notes\.txt"):
        extract_shards(extractor, data, "gallery", copy, shard_size=8, force=True)
    assert (copy / "notes.txt").exists()


# -------------------------------------------------------------------------- the CLI, a real kill
# the CLI in a child process, which (when asked) writes half of one shard's temp file, says so and
# hangs there: the parent then kills it with SIGKILL, a kill in the middle of a shard write
CHILD = """
import os, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from sfsc_deploy.retrieval import shards
hang = os.environ.get("HANG_AT")
if hang:
    real = shards._save_npy
    def save(tmp, array):
        real(tmp, array)
        if tmp.name.startswith("." + hang + "."):
            data = tmp.read_bytes()
            tmp.write_bytes(data[: len(data) // 2])
            Path(os.environ["READY"]).write_text(str(tmp))
            time.sleep(600)
    shards._save_npy = save
from sfsc_deploy.cli import main
main(sys.argv[1:])
"""


def _child(tmp_path: Path, argv: list[str], **env: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen(
        [sys.executable, str(script), *argv],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(tmp_path: Path, argv: list[str]) -> str:
    child = _child(tmp_path, argv)
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err
    return out


@pytest.mark.slow  # three command-line runs in child processes
def test_a_killed_extract_resumes_to_the_same_bytes(trained_checkpoint, tmp_path):
    common = ["extract", "--checkpoint", str(trained_checkpoint), "--width", "0.5", "--device", "cpu"]
    common += ["--shard-size", "48", "--batch-size", "16"]
    killed, whole, ready = tmp_path / "killed", tmp_path / "whole", tmp_path / "ready"
    child = _child(tmp_path, [*common, "--out", str(killed)], HANG_AT="features-00002.npy", READY=str(ready))
    deadline = time.monotonic() + 600
    while not ready.exists():
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.kill()  # SIGKILL, half-way through writing shard 2
    child.wait()
    half = Path(ready.read_text())
    assert half.exists() and half.name.endswith(".tmp")  # the half-written temp file is left there
    manifest = json.loads((killed / MANIFEST).read_text())
    assert [s["index"] for s in manifest["shards"]] == [0, 1] and not manifest["complete"]
    assert not (killed / "features-00002.npy").exists()
    with pytest.raises(SfscError, match=r"unfinished gallery \(2 of \d+ shards\).*run the same"):
        open_gallery(killed)

    printed = _run(tmp_path, [*common, "--out", str(killed)])  # the same command again resumes
    assert "2 kept from an earlier run" in printed, printed
    _run(tmp_path, [*common, "--out", str(whole)])  # and an uninterrupted run
    assert not half.exists()  # the killed writer's temp file was swept, never read
    assert _files(killed) == _files(whole)  # every shard file and the manifest, byte for byte
    assert len(open_gallery(killed)) == json.loads((whole / MANIFEST).read_text())["count"]


# ------------------------------------------------------------------------------- the CLI, --nproc
@pytest.mark.slow  # --nproc 2 starts two Python processes
def test_extract_with_nproc_2_writes_what_one_process_does(trained_checkpoint, tmp_path, capfd):
    from sfsc_deploy.cli import main

    def _cli(*argv: str) -> None:
        try:
            main(list(argv))
        except SystemExit as exc:
            assert not exc.code, exc.code

    common = ["extract", "--checkpoint", str(trained_checkpoint), "--device", "cpu"]
    common += ["--shard-size", "24", "--batch-size", "8"]
    _cli(*common, "--out", str(tmp_path / "one"))
    _cli(*common, "--out", str(tmp_path / "two"), "--nproc", "2")
    assert capfd.readouterr().out.count("wrote") == 2
    one, two = (json.loads((tmp_path / t / MANIFEST).read_text()) for t in ("one", "two"))
    assert one["complete"] and two["complete"] and len(one["shards"]) > 2

    def without_hashes(m):
        return {
            **m,
            "shards": [{k: v for k, v in s.items() if k != "features_sha256"} for s in m["shards"]],
        }

    assert without_hashes(one) == without_hashes(two)  # ids exact: same rows, files, id hashes
    a, b = open_gallery(tmp_path / "one"), open_gallery(tmp_path / "two")
    np.testing.assert_allclose(a.features, b.features, rtol=1e-4, atol=1e-5)
    for name in ("pids", "camids", "paths"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )


def test_cli_refuses_shard_size_with_a_npz_and_a_file_in_the_way(tmp_path, capsys):
    from sfsc_deploy.cli import main

    for argv, message in (
        (["--out", str(tmp_path / "g.npz"), "--shard-size", "10"], "--shard-size writes a gallery folder"),
        (["--out", str(tmp_path / "file")], "exists and is not a folder"),
    ):
        (tmp_path / "file").write_text("x")
        with pytest.raises(SystemExit) as exit_info:
            main(["extract", "--checkpoint", str(tmp_path / "none.safetensors"), *argv])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "g.npz").exists()
