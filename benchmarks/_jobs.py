"""Training runs of the benchmarks: one spec per run, several runs side by side, each resumable.

On a 2-core machine two single-thread training processes get more done than one process with
two threads, while two processes with two threads each slow each other down many times over
(OpenMP spin-waiting). ``run_all(specs, jobs=2)`` therefore starts each unfinished run in its
own process with one thread (``OMP_NUM_THREADS=1``); ``jobs=1`` trains with every core.

A finished run is reused only when the training config, network and data saved with it equal the
spec's; anything else is refused with the run directory named, so a stale run never stands in
for a requested one. An interrupted run resumes from its last finished epoch.

    python -m benchmarks._jobs SPEC.json      # the worker: one run, in this process
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import ArchOptions, NetConfig, checkpoint
from sfsc_deploy.models.networks import NETWORKS, read_networks
from sfsc_deploy.train import TrainConfig

SPEC = "run_spec.json"
WORKER_LOG = "worker.log"
EVAL = "eval/compat_matrix.json"


@dataclass
class RunSpec:
    """Everything one benchmark training run is: data, network, training config, evaluation."""

    run_dir: str
    data: str
    format: str | None
    config: dict[str, Any]  # TrainConfig.to_dict()
    options: dict[str, Any] = field(default_factory=lambda: asdict(ArchOptions()))
    arch: str = "resnet18"
    widths: str = "0.25,0.5,0.75"
    feature_dim: int = 256
    evaluate: bool = True  # the test split's compatibility matrix, written to run_dir/eval

    @classmethod
    def make(cls, run_dir: Path, data: str, fmt: str | None, cfg: TrainConfig, options: ArchOptions, **kw):
        return cls(str(run_dir), data, fmt, cfg.to_dict(), asdict(options), **kw)

    @property
    def path(self) -> Path:
        return Path(self.run_dir)

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config)

    def finished(self) -> bool:
        done = (self.path / NETWORKS).exists()
        return done and (not self.evaluate or (self.path / EVAL).exists())

    def check_reusable(self) -> None:
        """Refuse a run directory that was trained with anything other than this spec."""
        saved = self.path / SPEC
        if saved.exists() and json.loads(saved.read_text()) != json.loads(json.dumps(asdict(self))):
            raise SfscError(
                f"{self.path} was trained from another spec ({saved}); delete the folder or use "
                f"another --work to train this one"
            )
        if not (self.path / NETWORKS).exists():
            return
        _, networks = read_networks(self.path)
        for path in sorted(set(networks.values())):
            header = checkpoint.read_header(path)
            config = NetConfig.from_dict(header["config"])
            training = header["extra"]["training"]["config"]
            if (
                training != self.config
                or config.arch != self.arch
                or asdict(config.options) != asdict(ArchOptions(**self.options))
                or config.feature_dim != self.feature_dim
            ):
                raise SfscError(
                    f"{path} holds a finished run with another configuration than requested; "
                    f"delete {self.path} or use another --work"
                )

    def epochs_done(self) -> tuple[int, int]:
        """(finished epochs, all epochs) over the run's networks, read from their training logs."""
        cfg = self.train_config
        separate = 1 if cfg.switchable else len(self.widths.split(",")) + 1
        done = 0
        for log in self.path.glob("**/train_log.jsonl"):
            done += len({json.loads(line)["epoch"] for line in log.read_text().splitlines() if line})
        return min(done, cfg.epochs * separate), cfg.epochs * separate


def saved_training_config(run_dir: Path) -> dict[str, Any]:
    """The training config saved in the run's (first) checkpoint: what the run really trained with."""
    _, networks = read_networks(run_dir)
    return checkpoint.read_header(sorted(set(networks.values()))[0])["extra"]["training"]["config"]


def run_one(spec: RunSpec, progress: bool = False) -> None:
    """Train (or resume) and evaluate one spec in this process."""
    from sfsc_deploy.data import load_dataset
    from sfsc_deploy.evaluation.runs import evaluate_run
    from sfsc_deploy.train import train

    spec.check_reusable()
    spec.path.mkdir(parents=True, exist_ok=True)
    (spec.path / SPEC).write_text(json.dumps(asdict(spec), indent=2) + "\n")
    splits = load_dataset(spec.data, spec.format)
    if not (spec.path / NETWORKS).exists():
        train(
            splits,
            spec.arch,
            spec.widths,
            spec.train_config,
            spec.path,
            feature_dim=spec.feature_dim,
            options=ArchOptions(**spec.options),
            resume=True,  # the folder holds this spec (checked above); continue whatever it has
            progress=progress,
        )
    if spec.evaluate and not (spec.path / EVAL).exists():
        evaluate_run(spec.path, splits, spec.path / "eval", progress=progress)


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """``--jobs`` and ``--threads``, the two knobs of :func:`run_all`, for every benchmark that uses it."""
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side, one thread each")
    parser.add_argument(
        "--threads", type=int, help="threads per run (default: 1 with --jobs > 1, else every core)"
    )


def run_all(specs: list[RunSpec], jobs: int = 2, threads: int | None = None) -> None:
    """Run every unfinished spec, ``jobs`` at a time, each in its own process; show one bar per run.
    ``threads`` per process defaults to 1 beside other jobs and every core alone; give 1 when another
    benchmark already trains beside this one, or the two oversubscribe the cores."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    for spec in specs:
        spec.check_reusable()
    todo = [s for s in specs if not s.finished()]
    if threads is None:
        threads = 1 if jobs > 1 else (os.cpu_count() or 1)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    running: dict[str, tuple[subprocess.Popen, RunSpec, Any]] = {}
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns) as bar:
        ids = {
            s.run_dir: bar.add_task(Path(s.run_dir).name, total=s.epochs_done()[1], start=False) for s in todo
        }
        while todo or running:
            while todo and len(running) < jobs:
                spec = todo.pop(0)
                spec.path.mkdir(parents=True, exist_ok=True)
                (spec.path / SPEC).write_text(json.dumps(asdict(spec), indent=2) + "\n")
                log = open(spec.path / WORKER_LOG, "a")  # noqa: SIM115 - closed when the worker ends
                proc = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks._jobs", str(spec.path / SPEC)],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=log,
                )
                running[spec.run_dir] = (proc, spec, log)
                bar.start_task(ids[spec.run_dir])
            time.sleep(5)
            for key, (proc, spec, log) in list(running.items()):
                bar.update(ids[key], completed=spec.epochs_done()[0])
                if proc.poll() is None:
                    continue
                log.close()
                del running[key]
                if proc.returncode != 0:
                    for other, _, _ in running.values():
                        other.terminate()
                    tail = (spec.path / WORKER_LOG).read_text().splitlines()[-15:]
                    raise SfscError(f"run {spec.run_dir} failed:\n" + "\n".join(tail))


if __name__ == "__main__":
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    run_one(RunSpec(**json.loads(Path(sys.argv[1]).read_text())))
