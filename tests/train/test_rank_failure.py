"""A real kill: one of two training processes dies mid-run (SIGKILL), the job ends with one line,
and ``--resume`` continues from the last complete checkpoint to the weights of a run never killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sfsc_deploy.models import checkpoint
from sfsc_deploy.models.networks import CHECKPOINT
from sfsc_deploy.train.trainer import LOG
from tests.cli import TINY_NET

ARGS = [
    "--data", "synthetic", *TINY_NET, "--widths", "0.5,1", "--feature-dim", "16", "--epochs", "4",
    "--batch-ids", "4", "--batch-k", "2", "--optimizer", "sgd", "--lr", "0.05", "--device", "cpu",
    "--no-plots", "--nproc", "2",
]  # fmt: skip


def _train(out: Path, *extra: str, wait: bool = True) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "sfsc_deploy.cli", "train", "--out", str(out), *ARGS, *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        proc.stderr_text = proc.communicate(timeout=600)[1]
    return proc


def _ranks(out: Path) -> dict[int, int]:
    """pid of each training process of the run in ``out`` (found by its command line), by RANK."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(out).encode() in cmdline:  # the launcher has no RANK: only the ranks are found
            rank = [v for v in environ if v.startswith(b"RANK=")]
            if rank:
                found[int(rank[0][5:])] = int(entry.name)
    return found


def _epochs_logged(out: Path) -> set[int]:
    log = out / LOG
    if not log.exists():
        return set()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return {json.loads(line)["epoch"] for line in lines[:-1]}  # the last line may be half written


@pytest.mark.slow  # three two-process runs of a tiny network (~1 min on 2 cores)
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc (Linux)")
def test_a_killed_rank_ends_the_job_in_one_line_and_resume_matches_a_run_never_killed(tmp_path):
    whole = _train(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr_text

    killed_dir = tmp_path / "killed"
    job = _train(killed_dir, wait=False)
    deadline = time.monotonic() + 300
    while 1 not in _epochs_logged(killed_dir):  # epoch 1 under way: epoch 0's checkpoint is complete
        assert job.poll() is None, job.stderr.read()
        assert time.monotonic() < deadline, "training never reached its second epoch"
        time.sleep(0.05)
    ranks = _ranks(killed_dir)
    assert sorted(ranks) == [0, 1]
    os.kill(ranks[1], signal.SIGKILL)
    _, err = job.communicate(timeout=300)
    assert job.returncode == 2
    last = err.strip().splitlines()[-1]
    assert last == (
        "error: training process 1 of 2 was killed (SIGKILL); the job stopped, run the same command "
        "with --resume to continue from the last checkpoint"
    ), err
    saved = checkpoint.read_header(killed_dir / CHECKPOINT)["extra"]["training"]["epoch"]
    assert 0 <= saved < 3  # killed before the end: the last complete checkpoint is an earlier epoch
    assert not _ranks(killed_dir)  # no training process is left behind

    resumed = _train(killed_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr_text
    a, b = checkpoint.load(tmp_path / "whole" / CHECKPOINT), checkpoint.load(killed_dir / CHECKPOINT)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert x.equal(y), name  # parameters and BatchNorm statistics, bit for bit
    steps = [json.loads(line)["step"] for line in (killed_dir / LOG).read_text().splitlines()]
    whole_steps = [json.loads(line)["step"] for line in (tmp_path / "whole" / LOG).read_text().splitlines()]
    assert steps == whole_steps  # the killed epoch's lines were dropped, then written again
