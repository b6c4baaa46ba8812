"""What every benchmark records next to its figures: the command, the machine, the date."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

import sfsc_deploy
from exporters.files import json_text, write_text
from sfsc_deploy.data import ReidSplits
from sfsc_deploy.models import ArchOptions
from sfsc_deploy.perf.bench import cpu_name
from sfsc_deploy.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKET = ROOT.parent / "shared" / "datasets" / "market1501"  # the Market-1501 training split

# training recipes the Market-1501 benchmarks compare: name -> TrainConfig overrides (batch 64 in all:
# 16 ids × 4 images for P×K, 64 shuffled images for random)
CONSTANT_LR = {"schedule": "step", "milestones": [], "warmup_epochs": 0.0}
RECIPES = {
    "pk-cosine": {"sampler": "pk"},  # the trainer's defaults
    "random-cosine": {"sampler": "random"},
    "random-constant": {"sampler": "random", **CONSTANT_LR},
    "pk-constant": {"sampler": "pk", **CONSTANT_LR},
}


def git_commit() -> str:
    """The code a result was measured with: the commit, marked dirty when sources differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        changed = git("status", "--porcelain", "--", "sfsc_deploy", "exporters", "benchmarks/*.py").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" (with uncommitted changes)" if changed else "")


def command_line() -> str:
    """How the benchmark was started, as a user would type it (``python -m benchmarks.NAME ...``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    start = f"python -m {spec.name}" if spec is not None and spec.name else f"python {sys.argv[0]}"
    return " ".join([start, *(shlex.quote(a) for a in sys.argv[1:])])


def provenance() -> dict:
    cpu = cpu_name()
    return {
        "command": command_line(),
        "commit": git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sfsc_deploy": sfsc_deploy.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def provenance_md(p: dict) -> str:
    return (
        f"- command: `{p['command']}`\n- commit: {p.get('commit', 'unknown')}\n"
        f"- machine: {p['machine']}\n- date: {p['date']}\n"
        f"- python {p['python']}, torch {p['torch']}, sfsc-deploy {p['sfsc_deploy']}\n"
    )


def train_resumable(
    splits: ReidSplits, cfg: TrainConfig, run_dir: Path, options: ArchOptions, widths: str = "0.25,0.5,0.75"
) -> None:
    """The benchmarks' ResNet-18, W = {0.25, 0.5, 0.75}, D = 256 run: skipped when finished, resumed
    when interrupted, so a long benchmark survives being stopped."""
    if not (run_dir / "networks.json").exists():
        train(
            splits,
            "resnet18",
            widths,
            cfg,
            run_dir,
            feature_dim=256,
            options=options,
            resume=run_dir.exists(),
        )


def write_results(stem: Path, record: dict, md_lines: list[str]) -> None:
    """``stem``.json and ``stem``.md, each written atomically."""
    write_text(stem.with_suffix(".json"), json_text(record))
    write_text(stem.with_suffix(".md"), "\n".join(md_lines) + "\n")


def interleaved(fns: dict, rounds: int = 15, iters: int = 10, warmup: int = 5) -> dict[str, list[float]]:
    """Per-call ms of each function, timed round-robin so that machine noise hits all alike."""
    import time

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(iters):
                t0 = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return samples


def median(xs: list[float]) -> float:
    import statistics

    return statistics.median(xs)


def rule_counts(val: dict[str, float]) -> tuple[int, int]:
    """The compatibility rule on a validation matrix (``mAP/q->g`` keys): (passing pairs, all q < g)."""
    widths = sorted({float(k.split("/")[1].split("->")[0]) for k in val})
    key = "mAP/{:g}->{:g}".format
    pairs = [(q, g) for q in widths for g in widths if q < g]
    return sum(val[key(q, g)] > val[key(q, q)] for q, g in pairs), len(pairs)


def rule_passes(val: dict[str, float]) -> str:
    passed, total = rule_counts(val)
    return f"{passed}/{total}"
