"""A training process killed with SIGKILL mid-epoch resumes to the same result as a straight run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from sfsc_deploy.models import checkpoint
from tests.cli import TINY_NET

pytestmark = pytest.mark.slow  # trains several runs end to end

ARGS = [
    "train",
    "--data",
    "synthetic",
    *TINY_NET,
    "--widths",
    "0.5",
    "--epochs",
    "3",
    "--feature-dim",
    "16",
    "--batch-ids",
    "8",
    "--batch-k",
    "2",
    "--lr",
    "1e-3",
    "--device",
    "cpu",  # exact resumption is a CPU property; cuDNN may pick nondeterministic kernels
]


def cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "sfsc_deploy.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_epoch_then_resume(tmp_path):
    straight = cli(*ARGS, "--out", str(tmp_path / "straight"))
    victim = cli(*ARGS, "--out", str(tmp_path / "killed"))
    log = tmp_path / "killed" / "train_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once the second epoch is under way
        if log.exists() and any(json.loads(x).get("epoch") == 1 for x in log.read_text().splitlines()[:-1]):
            break
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not list(
        (tmp_path / "killed").glob(".*.tmp")
    )  # no half-written checkpoint beside the last good one
    checkpoint.load(tmp_path / "killed" / "checkpoint.safetensors")  # the last good one is intact
    resumed = cli(*ARGS, "--out", str(tmp_path / "killed"), "--resume")
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    assert straight.wait() == 0, straight.stderr.read().decode()
    a = checkpoint.load(tmp_path / "straight" / "checkpoint.safetensors").state_dict()
    b = checkpoint.load(tmp_path / "killed" / "checkpoint.safetensors").state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    steps = [json.loads(x)["step"] for x in log.read_text().splitlines() if '"step"' in x]
    assert steps == sorted(set(steps))  # the killed epoch's steps were redone once, not duplicated
