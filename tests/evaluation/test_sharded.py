"""Evaluation and extraction on several ranks: each extracts its shard of the images, all get every
feature back in order; ``eval`` / ``extract --nproc N`` equal one process; validation during a
two-process training equals one process's validation of the network rank 0 saved."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from sfsc_deploy.cli import main
from sfsc_deploy.cli.options import without_nproc
from sfsc_deploy.evaluation import extract_features
from sfsc_deploy.retrieval.extractors import TorchExtractor
from sfsc_deploy.train import distributed
from sfsc_deploy.train.distributed import World, shard_range
from tests.cli import TINY_NET
from tests.conftest import INPUT, folder_dataset, tiny
from tests.train import as_rank, free_port

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
WIDTHS = [0.25, 0.5, 1.0]
N = 7  # not divisible by 2 ranks: shards of 4 and 3 images


def _join(rank: int, world: int, port: int) -> None:
    as_rank(rank, world, port)
    distributed.setup("cpu")


def _images(n: int = N) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 3, *INPUT), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)
    )


def _pooled(x: torch.Tensor) -> torch.Tensor:
    """A model that is no nn.Module (as an onnxruntime runner is not)."""
    return torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)


def _features() -> dict[str, torch.Tensor]:
    """What each test computes, in one process or on every rank."""
    net, images, found = tiny(widths=WIDTHS), _images(), {}
    for w in WIDTHS:
        with net.at_width(w):
            found[f"net {w:g}"] = extract_features(net, images, MEAN, STD, batch_size=3)
            found[f"net {w:g} flip"] = extract_features(net, images, MEAN, STD, batch_size=2, flip=True)
    with net.at_width(0.5):
        found["one image"] = extract_features(net, images[:1], MEAN, STD)  # rank 1's shard is empty
    found["callable"] = extract_features(_pooled, images, MEAN, STD, batch_size=3)
    extractor = TorchExtractor(net, 0.25)
    found["extractor"] = torch.from_numpy(extractor.features(images, batch_size=3))
    return found


def _extract_worker(rank: int, world: int, port: int, out: str) -> None:
    _join(rank, world, port)
    try:
        torch.save(_features(), os.path.join(out, f"rank{rank}.pt"))
    finally:
        distributed.teardown()


def test_shards_are_contiguous_and_cover_every_image():
    for total in (0, 1, 6, 7):
        for size in (1, 2, 3):
            parts = [shard_range(total, World(rank, size)) for rank in range(size)]
            assert [i for p in parts for i in range(total)[p]] == list(range(total))
            assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


def test_without_nproc_drops_only_nproc():
    argv = ["eval", "--nproc", "2", "--out", "x", "--nproc=3", "--device", "cpu"]
    assert without_nproc(argv) == ["eval", "--out", "x", "--device", "cpu"]


@pytest.mark.slow  # two processes (a few seconds each on 2 busy cores)
def test_two_ranks_extract_what_one_process_does(tmp_path):
    mp.spawn(_extract_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    reference = _features()
    assert set(ranks[0]) == set(reference)
    for name, expected in reference.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # every rank gets the same features
        got = ranks[0][name]
        assert got.shape == expected.shape and got.dtype == torch.float32, name
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), (name, (got - expected).abs().max())


# ------------------------------------------------------------------------------ the CLI, --nproc


def _cli(*argv: str) -> None:
    try:
        main(list(argv))
    except SystemExit as exc:
        assert not exc.code, exc.code


@pytest.mark.slow  # each --nproc 2 command starts two Python processes
def test_eval_and_extract_with_nproc_equal_one_process(tmp_path, capfd):
    data = str(folder_dataset(tmp_path / "data", train=(4, 2), query=(5, 1), gallery_per_id=3))
    ck = tmp_path / "ck.safetensors"
    _cli(
        "init",
        *TINY_NET,
        "--widths",
        "0.25,0.5,1.0",
        "--feature-dim",
        "16",
        "--num-classes",
        "4",
        "--out",
        str(ck),
    )
    common = ["--checkpoint", str(ck), "--data", data, "--device", "cpu", "--batch-size", "2"]
    for tag, extra in (("one", []), ("two", ["--nproc", "2"])):
        capfd.readouterr()
        _cli("eval", *common, "--out", str(tmp_path / f"eval-{tag}"), *extra)
        _cli("extract", *common, "--width", "0.5", "--out", str(tmp_path / f"{tag}.npz"), *extra)
        printed = capfd.readouterr().out
        assert printed.count("compatibility rule:") == 1 and printed.count(f"wrote {tmp_path}") == 2, printed
    one, two = (
        json.loads((tmp_path / f"eval-{t}" / "compat_matrix.json").read_text()) for t in ("one", "two")
    )
    assert len(one["matrix"]["metrics"]) == 9  # 3 × 3 widths
    assert _numbers(one) == pytest.approx(_numbers(two), abs=1e-4)
    files = [np.load(tmp_path / f"{t}.npz") for t in ("one", "two")]
    assert files[0]["features"].shape == (15, 16)
    np.testing.assert_allclose(files[0]["features"], files[1]["features"], rtol=1e-4, atol=1e-5)
    for key in ("pids", "camids", "paths", "meta"):
        assert np.array_equal(files[0][key], files[1][key]), key


def _numbers(tree) -> list[float]:
    """Every number in a JSON tree, in order (timestamps and paths are strings and are skipped)."""
    if isinstance(tree, dict):
        return [x for key in sorted(tree) for x in _numbers(tree[key])]
    if isinstance(tree, list):
        return [x for item in tree for x in _numbers(item)]
    return [float(tree)] if isinstance(tree, int | float) and not isinstance(tree, bool) else []


# ------------------------------------------------------------------ validation during training
def _train_worker(rank: int, world: int, port: int, out: str) -> None:
    from sfsc_deploy.train import train
    from tests.train.conftest import TINY_OPTIONS
    from tests.train.test_distributed import CFG, _data

    as_rank(rank, world, port)
    cfg = distributed_cfg(CFG)
    train(
        _data(),
        "resnet18",
        "0.25,0.5",
        cfg,
        Path(out) / "run",
        options=TINY_OPTIONS,
        progress=False,
        plots=False,
    )


def distributed_cfg(base: dict):
    from sfsc_deploy.train import TrainConfig

    return TrainConfig(**{**base, "epochs": 2, "val_ids": 4})


@pytest.mark.slow  # two processes train two tiny epochs
def test_validation_runs_on_every_rank_and_rank0_logs_it_once_per_epoch(tmp_path):
    from sfsc_deploy.data.bank import build_bank
    from sfsc_deploy.data.records import split_validation
    from sfsc_deploy.models import checkpoint
    from sfsc_deploy.train.run import _validator
    from sfsc_deploy.train.trainer import LOG
    from tests.train.conftest import TINY_OPTIONS
    from tests.train.test_distributed import CFG, _data

    mp.spawn(_train_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    lines = [json.loads(line) for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    vals = [line for line in lines if "val" in line]
    assert [line["epoch"] for line in vals] == [0, 1]  # rank 0 logged it, once per epoch
    # the last validation is that of the network rank 0 saved, run in one process
    cfg = distributed_cfg(CFG)
    _, vq, vg = split_validation(_data().train, cfg.val_ids, cfg.seed)
    banks = tuple(build_bank(r, TINY_OPTIONS.input_size, progress=False) for r in (vq, vg))
    net = checkpoint.load(tmp_path / "run" / "checkpoint.safetensors")
    expected = _validator(banks, list(net.widths))(net)  # the run's widths: 0.25, 0.5 and 1
    assert vals[-1]["val"].keys() == expected.keys()
    for name, value in expected.items():
        assert vals[-1]["val"][name] == pytest.approx(value, abs=0.011), name  # mAP rounded to 0.01
