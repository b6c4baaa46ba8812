"""Training step cost of SFSC's `project` aggregation vs plain `sum`: resnet18, 4 tasks.

Targets: step-time ratio project / sum ≤ 1.05; the peak-memory ratio is reported. Step time is
measured round-robin in one process; peak memory (RSS) in one fresh subprocess per aggregation.

    python -m benchmarks.aggregation_step [--steps 12]

Writes ``benchmarks/results/aggregation_step.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks._common import RESULTS, ROOT, median, provenance, provenance_md, write_results

NUM_CLASSES, BATCH, SIZE = 500, 64, (128, 64)


def trainer(aggregation: str, run_dir: Path):
    from sfsc_deploy.data.bank import ImageBank
    from sfsc_deploy.models import build
    from sfsc_deploy.train import TrainConfig
    from sfsc_deploy.train.tasks import switchable_tasks
    from sfsc_deploy.train.trainer import Trainer

    torch.manual_seed(0)
    net = build("resnet18", [0.25, 0.5, 0.75], 256, NUM_CLASSES, width_mult=0.5, input_size=SIZE).train()
    cfg = TrainConfig(method="sfsc", aggregation=aggregation)
    bank = ImageBank(torch.zeros(4, 3, *SIZE, dtype=torch.uint8), torch.arange(4), torch.zeros(4), ["x"] * 4)
    cfg.batch_ids = 2
    return Trainer(net, switchable_tasks(cfg, net.widths), cfg, bank, run_dir, progress=False)


def peak_memory(aggregation: str, steps: int) -> float:
    """Run in a fresh process: peak RSS (MB) after ``steps`` training steps."""
    code = (
        f"import sys, json, resource, tempfile, torch; sys.path.insert(0, {str(ROOT)!r})\n"
        "from benchmarks.aggregation_step import trainer, BATCH, SIZE, NUM_CLASSES\n"
        f"t = trainer({aggregation!r}, tempfile.mkdtemp())\n"
        "x = torch.randn(BATCH, 3, *SIZE); y = torch.randint(0, NUM_CLASSES, (BATCH,))\n"
        f"for _ in range({steps}): t._train_step(x, y, 0, torch.Generator().manual_seed(0))\n"
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", default=str(RESULTS / "aggregation_step"))
    args = parser.parse_args()
    x = torch.randn(BATCH, 3, *SIZE)
    y = torch.randint(0, NUM_CLASSES, (BATCH,))
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {a: trainer(a, Path(tmp) / a) for a in ("sum", "project")}
        times: dict[str, list[float]] = {a: [] for a in trainers}
        conflicts = []
        for step in range(args.steps + 2):
            for a, t in trainers.items():
                t0 = time.perf_counter()
                record = t._train_step(x, y, 0, torch.Generator().manual_seed(step))
                if step >= 2:  # the first steps allocate
                    times[a].append((time.perf_counter() - t0) * 1e3)
                if a == "project":
                    conflicts.append(record["conflicts"])
    memory = {a: peak_memory(a, 3) for a in ("sum", "project")}
    ratio = median(times["project"]) / median(times["sum"])
    record = {
        "provenance": provenance(),
        "arch": "resnet18",
        "widths": [0.25, 0.5, 0.75, 1.0],
        "batch": BATCH,
        "input_size": list(SIZE),
        "num_classes": NUM_CLASSES,
        "steps": args.steps,
        "step_ms": {a: median(v) for a, v in times.items()},
        "step_ratio": ratio,
        "step_target": 1.05,
        "step_pass": ratio <= 1.05,
        "peak_rss_mb": memory,
        "memory_ratio": memory["project"] / memory["sum"],
        "mean_conflicting_pairs": sum(conflicts) / len(conflicts),
        "rusage_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    md = [
        "# Training step: `project` vs `sum` aggregation",
        "",
        provenance_md(record["provenance"]),
        f"ResNet-18 (base width 32), 4 tasks (widths 0.25/0.5/0.75/1.0), batch {BATCH}, {SIZE[0]}×{SIZE[1]}, "
        f"{NUM_CLASSES} classes, SFSC loss; median of {args.steps} alternating steps. "
        f"Conflicting pairs per step (project): {record['mean_conflicting_pairs']:.2f} of 6.",
        "",
        "| | sum | project | ratio | target |",
        "|---|---:|---:|---:|:---:|",
        f"| step time (ms) | {record['step_ms']['sum']:.0f} | {record['step_ms']['project']:.0f} "
        f"| {ratio:.3f} "
        f"| {'✅' if ratio <= 1.05 else '❌'} ≤ 1.05 |",
        f"| peak RSS (MB) | {memory['sum']:.0f} | {memory['project']:.0f} "
        f"| {record['memory_ratio']:.3f} | reported |",
    ]
    write_results(Path(args.out), record, md)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
