"""Two gloo processes on the CPU train like one process that sees the same global batch."""

import json
import os
import re

import pytest
import torch
import torch.multiprocessing as mp

from sfsc_deploy.cli import main
from sfsc_deploy.data import load_dataset
from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.data.synthetic import SyntheticConfig
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import build, checkpoint
from sfsc_deploy.models.networks import CHECKPOINT
from sfsc_deploy.train import TrainConfig, distributed, train
from sfsc_deploy.train.distributed import World, shard
from sfsc_deploy.train.tasks import switchable_tasks
from sfsc_deploy.train.trainer import LOG, Trainer
from tests.train import as_rank, free_port
from tests.train.conftest import TINY_OPTIONS

WIDTHS = [0.25, 0.5, 1.0]
# sgd: Adam's m/√v turns float rounding in a near-zero gradient into a full step, sgd keeps it small
CFG = dict(epochs=1, batch_ids=4, batch_k=2, warmup_epochs=0.5, device="cpu", optimizer="sgd", lr=0.05)


def _data():
    return load_dataset(
        "synthetic", synthetic=SyntheticConfig(num_train_ids=12, num_test_ids=6, images_per_id_per_camera=2)
    )


def _trainer(data, run_dir, cls=Trainer, **overrides) -> Trainer:
    cfg = TrainConfig(**{**CFG, **overrides})
    torch.manual_seed(cfg.seed)
    net = build("resnet18", WIDTHS[:2], 16, data.num_classes, **vars(TINY_OPTIONS))
    bank = build_bank(data.train, TINY_OPTIONS.input_size, progress=False)
    return cls(net, switchable_tasks(cfg, WIDTHS[:2]), cfg, bank, run_dir, progress=False)


class _Stopped(Exception):
    pass


class StopAfterFirstEpoch(Trainer):
    """Every rank stops once the first epoch's files are written, as if the job were killed there."""

    def _save(self, epoch, val):
        super()._save(epoch, val)
        if epoch == 0:
            raise _Stopped


def _worker(rank: int, world: int, port: int, out: str, overrides: dict, mode: str = "fit") -> None:
    as_rank(rank, world, port)
    distributed.setup("cpu")
    try:
        cls = StopAfterFirstEpoch if mode == "stop" else Trainer
        trainer = _trainer(_data(), os.path.join(out, "run"), cls, **overrides)
        if mode == "resume":
            trainer.resume()
        try:
            trainer.fit()
        except _Stopped:
            return
        torch.save(
            {k: v.clone() for k, v in trainer.net.state_dict().items()}, os.path.join(out, f"rank{rank}.pt")
        )
    finally:
        distributed.teardown()


class ShardedReference(Trainer):
    """One process, the global batch: each half's gradients (its own BatchNorm statistics, as on a
    rank), averaged: what two ranks' all_reduce computes."""

    def _train_step(self, x, y, epoch, gen):
        half = len(x) // 2
        total_g, total_l = torch.zeros_like(self.grads), torch.zeros_like(self.losses)
        for part in (slice(0, half), slice(half, None)):
            record = self._local_gradients(x[part], y[part], epoch)
            total_g += self.grads
            total_l += self.losses
        self.grads.copy_(total_g / 2)
        self.losses.copy_(total_l / 2)
        return self._update(record, epoch, gen)


@pytest.mark.slow  # two processes train an epoch (~15 s each on 2 busy cores)
@pytest.mark.parametrize("overrides", [{}, {"sampler": "random", "method": "bct-s", "aggregation": "sum"}])
def test_two_ranks_match_one_process_and_each_other(tmp_path, overrides):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path), overrides), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    torch.set_num_threads(1)
    reference = _trainer(_data(), tmp_path / "reference", ShardedReference, **overrides)
    start = {k: v.clone() for k, v in reference.net.state_dict().items()}
    reference.fit()
    expected = reference.net.state_dict()
    names = {name for name, p in reference.net.named_parameters() if p.requires_grad}
    moved = 0
    for name in names:
        assert torch.equal(rank0[name], rank1[name]), name  # identical without any broadcast
        assert torch.allclose(rank0[name], expected[name], atol=1e-5, rtol=1e-4), name
        moved += not torch.equal(rank0[name], start[name])
    assert moved > len(names) // 2  # the steps did train
    # rank 0 alone wrote the log (one line per step) and the checkpoint
    lines = [json.loads(line) for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, reference.steps_per_epoch + 1))
    assert (tmp_path / "run" / CHECKPOINT).exists()


@pytest.mark.slow
def test_two_ranks_stopped_after_an_epoch_resume_to_the_same_weights(tmp_path):
    two = dict(epochs=2, warmup_epochs=0.5)
    for folder, mode in [("whole", "fit"), ("stopped", "stop"), ("stopped", "resume")]:
        out = str(tmp_path / folder)
        mp.spawn(_worker, args=(2, free_port(), out, two, mode), nprocs=2, join=True)
        if mode == "stop":  # both ranks stopped after writing epoch 1's files
            assert not (tmp_path / folder / "rank0.pt").exists()
            assert (
                checkpoint.read_header(tmp_path / folder / "run" / CHECKPOINT)["extra"]["training"]["epoch"]
                == 0
            )
    whole, resumed = (torch.load(tmp_path / folder / "rank0.pt") for folder in ("whole", "stopped"))
    for name, value in whole.items():  # rank 0's parameters and BatchNorm statistics
        assert torch.equal(value, resumed[name]), name
    steps = [
        [json.loads(line)["step"] for line in (tmp_path / folder / "run" / LOG).read_text().splitlines()]
        for folder in ("whole", "stopped")
    ]
    assert steps[0] == steps[1] == list(range(1, len(steps[0]) + 1))


def test_shards_keep_identities_whole():
    batch = [10 * pid + i for pid in range(4) for i in range(2)]  # P=4 ids × K=2
    parts = [shard(batch, World(rank, 2)) for rank in range(2)]
    assert parts[0] + parts[1] == batch
    assert {b // 10 for b in parts[0]}.isdisjoint({b // 10 for b in parts[1]})
    assert shard(batch, World()) == batch


def test_p_not_divisible_by_the_world_is_one_error(tmp_path, monkeypatch, capsys):
    with pytest.raises(SfscError, match="--batch-ids 4 does not split over 3 processes"):
        distributed.check_shardable(4, 2, "pk", 3)
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SfscError, match="multiple of the number of processes"):
        train(_data(), "resnet18", "0.25,0.5", TrainConfig(**CFG), tmp_path / "run", options=TINY_OPTIONS)
    assert not torch.distributed.is_initialized()
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--out", str(tmp_path / "cli"), "--batch-ids", "4", "--nproc", "3", "--device", "cpu"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "does not split over 3 processes" in error


def test_nproc_launches_torchs_launcher_and_a_failed_rank_is_one_line(tmp_path, capsys):
    """Every rank fails on a missing dataset (read in the processes, not before the launch)."""
    args = ["train", "--out", str(tmp_path / "run"), "--data", str(tmp_path / "missing"), "--nproc", "2"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--device", "cpu", "--batch-ids", "4"])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(
        r"error: training process [01] of 2 failed \(exit code 2\); its own error line is printed above", last
    )
