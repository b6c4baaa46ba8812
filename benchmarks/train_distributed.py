"""Two gloo training processes against one, same global batch, on this CPU: the step-time ratio and
the all-reduce's share of the step.

One SFSC step (k = 4 width tasks) of ResNet-18 ×0.5 at 128×64, D = 256, 500 classes, global batch 64
(P = 16 × K = 4) in three configurations, each in fresh processes started by torch.multiprocessing:
one process with one thread (the reference), two gloo processes with one thread each (each computes
its 32 images' k gradients, then the step's one all_reduce of the k×P matrix G plus the k losses),
and one process with two threads (the other way to use both cores). The configurations alternate
round by round so machine noise hits them alike; median step time. The all-reduce time is the
trainer's own ``allreduce_s`` (wall time in the collective, waiting for the slower rank included).
**Time it alone.**

    python -m benchmarks.train_distributed [--rounds 3] [--steps 4]

Writes ``benchmarks/results/train_distributed.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from benchmarks._common import RESULTS, provenance, provenance_md, write_results
from sfsc_deploy.io.figures import new_figure, save_png

WIDTHS, SIZE, BATCH, CLASSES = (0.25, 0.5, 0.75, 1.0), (128, 64), 64, 500
CONFIGS = {  # name: (processes, threads per process)
    "1 process × 1 thread": (1, 1),
    "2 gloo processes × 1 thread": (2, 1),
    "1 process × 2 threads": (1, 2),
}


@dataclass
class Row:
    config: str
    processes: int
    threads: int
    median_step_s: float
    images_per_s: float
    ratio_to_one_process: float
    allreduce_median_s: float | None
    allreduce_share: float | None


def _worker(rank: int, world: int, threads: int, port: int, steps: int, out: str) -> None:
    from sfsc_deploy.data.bank import ImageBank
    from sfsc_deploy.models import build
    from sfsc_deploy.train import TrainConfig, distributed
    from sfsc_deploy.train.tasks import switchable_tasks
    from sfsc_deploy.train.trainer import Trainer

    torch.set_num_threads(threads)
    if world > 1:
        env = dict(RANK=rank, WORLD_SIZE=world, LOCAL_RANK=rank, MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        os.environ.update({k: str(v) for k, v in env.items()})
        distributed.setup("cpu")
    try:
        torch.manual_seed(0)
        net = build("resnet18", list(WIDTHS), 256, CLASSES, width_mult=0.5, input_size=SIZE).train()
        cfg = TrainConfig(method="sfsc", device="cpu", batch_ids=16, batch_k=4)
        images = torch.zeros(BATCH, 3, *SIZE, dtype=torch.uint8)
        bank = ImageBank(images, torch.arange(BATCH) // 4, torch.zeros(BATCH), ["x"] * BATCH)
        trainer = Trainer(net, switchable_tasks(cfg, list(WIDTHS)), cfg, bank, out, progress=False)
        data = torch.Generator().manual_seed(1)
        x, y = (
            torch.randn(BATCH, 3, *SIZE, generator=data),
            torch.randint(0, CLASSES, (BATCH,), generator=data),
        )
        part = torch.as_tensor(distributed.shard(range(BATCH), distributed.current()))
        x, y = x[part], y[part]
        times, reduce = [], []
        for step in range(steps + 1):  # the first step warms up
            distributed.barrier()
            tic = time.perf_counter()
            record = trainer._train_step(x, y, 0, torch.Generator().manual_seed(step))
            if step:
                times.append(time.perf_counter() - tic)
                reduce.append(record.get("allreduce_s"))
        if rank == 0:
            payload = {"times": times, "allreduce": reduce, "reduced_bytes": trainer.reduced.numel() * 4}
            Path(out, "rank0.json").write_text(json.dumps(payload))
    finally:
        distributed.teardown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_config(processes: int, threads: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(processes, threads, _free_port(), steps, out), nprocs=processes, join=True)
        return json.loads(Path(out, "rank0.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per configuration per round")
    parser.add_argument("--out", default=str(RESULTS / "train_distributed"))
    args = parser.parse_args()
    from rich.progress import Progress

    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    reduce: dict[str, list[float]] = {name: [] for name in CONFIGS}
    payload = 0
    with Progress() as bar:
        job = bar.add_task("rounds × configurations", total=args.rounds * len(CONFIGS))
        for _ in range(args.rounds):
            for name, (processes, threads) in CONFIGS.items():
                result = run_config(processes, threads, args.steps)
                times[name] += result["times"]
                reduce[name] += [r for r in result["allreduce"] if r is not None]
                payload = result["reduced_bytes"]
                bar.advance(job)
    base = float(np.median(times["1 process × 1 thread"]))
    rows = []
    for name, (processes, threads) in CONFIGS.items():
        med = float(np.median(times[name]))
        red = float(np.median(reduce[name])) if reduce[name] else None
        rows.append(
            Row(name, processes, threads, med, BATCH / med, med / base, red, red / med if red else None)
        )
    two = next(r for r in rows if r.processes == 2)
    threads2 = next(r for r in rows if r.threads == 2)
    spread = {name: [float(np.min(t)), float(np.max(t))] for name, t in times.items()}
    record = {
        "provenance": {**provenance(), "torch_threads": "per configuration"},
        "setup": f"SFSC, ResNet-18 ×0.5, {SIZE[0]}×{SIZE[1]}, D 256, {CLASSES} classes, widths {WIDTHS}, "
        f"global batch {BATCH}",
        "allreduce_payload_mb": payload / 2**20,
        "step_s_min_max": spread,
        "rows": [asdict(r) for r in rows],
    }
    verdict = (
        f"Verdict: two gloo processes take {two.ratio_to_one_process:.2f}× the step time of one process "
        f"(ideal 0.50 on two cores); the all-reduce of {payload / 2**20:.1f} MB is "
        f"{100 * two.allreduce_share:.1f}% of the step. One process with two threads: "
        f"{threads2.ratio_to_one_process:.2f}×."
    )
    md = [
        "# Two training processes vs one, same global batch (CPU, gloo)",
        "",
        provenance_md(record["provenance"]),
        f"{record['setup']}; {args.rounds} alternating rounds × {args.steps} timed steps per configuration "
        "(fresh processes each round, one warm-up step), median. The all-reduce is one collective per step "
        "carrying G (k × P float32) and the k losses; its time includes waiting for the slower rank.",
        "",
        "| configuration | step s | min–max | images/s | ratio to 1 process | all-reduce s | share |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lo, hi = spread[r.config]
        red = f"{r.allreduce_median_s:.3f}" if r.allreduce_median_s is not None else "–"
        share = f"{100 * r.allreduce_share:.1f}%" if r.allreduce_share is not None else "–"
        md.append(
            f"| {r.config} | {r.median_step_s:.3f} | {lo:.3f}–{hi:.3f} | {r.images_per_s:.1f} | "
            f"{r.ratio_to_one_process:.2f} | {red} | {share} |"
        )
    md += ["", verdict]
    stem = Path(args.out)
    write_results(stem, record, md)
    fig = new_figure(7, 3.0)
    ax = fig.subplots()
    ax.barh([r.config for r in rows], [r.median_step_s for r in rows], color="tab:blue", label="step")
    ax.barh(
        [two.config], [two.allreduce_median_s or 0.0], color="tab:orange", label="all-reduce (in the step)"
    )
    ax.axvline(base / 2, color="k", ls="--", lw=1, label="ideal for two cores (½ of one process)")
    ax.set_xlabel("median step time (s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, stem.with_suffix(".png"))
    print(verdict)


if __name__ == "__main__":
    main()
