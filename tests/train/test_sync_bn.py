"""``--sync-bn``: two gloo processes with synchronised BatchNorm train like ONE process on the whole
global batch (parameters and running statistics); without it the statistics are per shard."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from sfsc_deploy.cli import main
from sfsc_deploy.train import TrainConfig, distributed
from sfsc_deploy.train.trainer import Trainer
from tests.train import as_rank, free_port
from tests.train.test_distributed import _data, _trainer

# per-sample mean losses (sfsc: softmax for the full model, the evidential loss for the others), P×K
OVERRIDES = dict(sampler="pk", loss="softmax")
# a few steps: measured max |Δ| 9e-8 (parameters) and 1e-6 (running statistics), printed under pytest -s;
# a whole epoch (12 steps) drifts apart by float rounding (a ReLU input within rounding of 0 falls on the
# other side, and the steps after amplify it), not by the maths: in float64 the gradients agree to 1e-17
STEPS = 3
ATOL, RTOL = 1e-5, 1e-4


class _First:
    """The sampler's first ``STEPS`` batches of every epoch (the schedule still counts a full epoch)."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __len__(self):
        return len(self.sampler)

    def batches(self, epoch):
        return self.sampler.batches(epoch)[:STEPS]


class FewSteps(Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampler = _First(self.sampler)


def _worker(rank: int, world: int, port: int, out: str, overrides: dict) -> None:
    as_rank(rank, world, port)
    distributed.setup("cpu")
    try:
        trainer = _trainer(_data(), os.path.join(out, "run"), FewSteps, **overrides)
        trainer.fit()
        torch.save(
            {k: v.clone() for k, v in trainer.net.state_dict().items()}, os.path.join(out, f"rank{rank}.pt")
        )
    finally:
        distributed.teardown()


@pytest.fixture(scope="module")
def whole_batch(tmp_path_factory):
    """One process, no sync (nothing to sync), the whole global batch: start and end state."""
    torch.set_num_threads(1)
    trainer = _trainer(_data(), tmp_path_factory.mktemp("one") / "run", FewSteps, **OVERRIDES)
    start = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    trainer.fit()
    names = {name for name, p in trainer.net.named_parameters() if p.requires_grad}
    return start, trainer.net.state_dict(), names, STEPS


def _two_ranks(tmp_path, sync: bool) -> tuple[dict, dict]:
    mp.spawn(
        _worker, args=(2, free_port(), str(tmp_path), {**OVERRIDES, "sync_bn": sync}), nprocs=2, join=True
    )
    return torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")


def _stats(state: dict) -> list[str]:
    return [k for k in state if k.endswith(("running_mean", "running_var"))]


def _max_diff(a: dict, b: dict, names) -> float:
    return max(float((a[n].double() - b[n].double()).abs().max()) for n in names)


@pytest.mark.slow  # two processes train a few steps (~15 s on 2 busy cores)
def test_two_synced_ranks_equal_one_process_on_the_whole_batch(tmp_path, whole_batch):
    start, expected, names, steps = whole_batch
    rank0, rank1 = _two_ranks(tmp_path, sync=True)
    for name, value in rank0.items():  # ranks identical: parameters and every BatchNorm buffer
        assert torch.equal(value, rank1[name]), name
    stats = _stats(expected)
    moved = [n for n in stats if not torch.equal(expected[n], start[n])]
    assert len(moved) > len(stats) // 2  # the statistics were updated (every trained width's)
    print(
        f"\nsync-bn vs one process: max |Δ| parameters {_max_diff(rank0, expected, names):.2e}, "
        f"running statistics {_max_diff(rank0, expected, stats):.2e}"
    )
    for name in [*names, *stats]:
        assert torch.allclose(rank0[name], expected[name], atol=ATOL, rtol=RTOL), name
    for name in expected:
        if name.endswith("num_batches_tracked"):
            assert torch.equal(rank0[name], expected[name]), name


@pytest.mark.slow
def test_without_sync_the_statistics_are_per_shard(tmp_path, whole_batch):
    """The check above is not vacuous: per-rank statistics differ from the whole batch's."""
    _, expected, _, _ = whole_batch
    rank0, rank1 = _two_ranks(tmp_path, sync=False)
    stats = _stats(expected)
    far = [n for n in stats if not torch.allclose(rank0[n], expected[n], atol=100 * ATOL, rtol=100 * RTOL)]
    print(f"\nno sync vs one process: max |Δ| running statistics {_max_diff(rank0, expected, stats):.2e}")
    assert len(far) > len(stats) // 2
    assert any(not torch.equal(rank0[n], rank1[n]) for n in stats)  # each rank its own shard's


def test_sync_bn_is_a_learning_option_saved_only_when_on(tmp_path):
    assert "sync_bn" not in TrainConfig().to_dict()  # older runs and specs compare equal
    on = TrainConfig(sync_bn=True)
    assert on.to_dict()["sync_bn"] is True and on.learning_options()["sync_bn"] is True
    assert TrainConfig.from_dict(on.to_dict()) == on
    assert TrainConfig.from_dict(TrainConfig().to_dict()).sync_bn is False


def test_cli_sync_bn_flag(monkeypatch):
    seen = {}

    def fake_train(splits, arch, widths, cfg, out_dir, **kwargs):
        seen["cfg"] = cfg
        raise SystemExit(0)

    monkeypatch.setattr("sfsc_deploy.train.train", fake_train)
    for flag, value in [("--sync-bn", True), ("--no-sync-bn", False), (None, False)]:
        with pytest.raises(SystemExit):
            main(["train", "--out", "unused", *([flag] if flag else []), "--device", "cpu"])
        assert seen.pop("cfg").sync_bn is value
