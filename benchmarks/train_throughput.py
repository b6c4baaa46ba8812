"""Training throughput on this CPU: one SFSC step (k = 4 width tasks) against one plain single-width
step, and what channels_last, bf16 autocast and torch.compile change.

The ideal cost of an SFSC step relative to a plain full-width step is 1 + Σ γ_w over the narrow
widths, where γ_w is the width's MAC fraction of the full model (each task runs its own forward
and backward). The measured ratio is compared with it. All configurations are timed round-robin
in one process (machine noise hits them alike), one torch thread, ResNet-18 at base width 32,
128×64 input, D = 256, W = {0.25, 0.5, 0.75, 1.0}, batch 64, 500 classes; median step time.
**Time it alone.**

    python -m benchmarks.train_throughput [--rounds 5] [--steps 3]

Writes ``benchmarks/results/train_throughput.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import RESULTS, provenance, provenance_md, write_results
from sfsc_deploy.io.figures import new_figure, save_png

WIDTHS, SIZE, BATCH, CLASSES = (0.25, 0.5, 0.75), (128, 64), 64, 500


@dataclass
class Row:
    config: str
    tasks: int
    median_s: float
    images_per_s: float
    ratio_to_plain: float | None
    note: str = ""


def trainer(widths: tuple[float, ...], amp: str = "off", channels_last: bool = False, compiled: bool = False):
    from sfsc_deploy.data.bank import ImageBank
    from sfsc_deploy.models import build
    from sfsc_deploy.train import TrainConfig
    from sfsc_deploy.train.tasks import switchable_tasks
    from sfsc_deploy.train.trainer import Trainer

    torch.manual_seed(0)
    net = build("resnet18", list(WIDTHS), 256, CLASSES, width_mult=0.5, input_size=SIZE).train()
    cfg = TrainConfig(method="sfsc", device="cpu", amp=amp, channels_last=channels_last)
    bank = ImageBank(torch.zeros(4, 3, *SIZE, dtype=torch.uint8), torch.arange(4), torch.zeros(4), ["x"] * 4)
    cfg.batch_ids = 2
    t = Trainer(net, switchable_tasks(cfg, list(widths)), cfg, bank, tempfile.mkdtemp(), progress=False)
    if compiled:
        t.net = torch.compile(t.net)
    return t


def mac_fractions() -> dict[float, float]:
    from sfsc_deploy.models import build
    from sfsc_deploy.models.slicing import slice_model
    from sfsc_deploy.perf.complexity import count_macs

    net = build("resnet18", list(WIDTHS), 256, CLASSES, width_mult=0.5, input_size=SIZE).eval()
    macs = {w: count_macs(slice_model(net, w), SIZE) for w in (*WIDTHS, 1.0)}
    return {w: macs[w] / macs[1.0] for w in WIDTHS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per configuration per round")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument(
        "--skip", default="", help="comma-separated configurations to leave out, e.g. 'SFSC + torch.compile'"
    )
    parser.add_argument("--out", default=str(RESULTS / "train_throughput"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    all_widths = (*WIDTHS, 1.0)
    configs = {
        "plain (1 task, width 1.0)": dict(widths=(1.0,)),
        "SFSC (4 tasks)": dict(widths=all_widths),
        "SFSC + channels_last": dict(widths=all_widths, channels_last=True),
        "SFSC + bf16 autocast": dict(widths=all_widths, amp="bf16"),
        "SFSC + torch.compile": dict(widths=all_widths, compiled=True),
    }
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    configs = {k: v for k, v in configs.items() if k not in skip}
    x = torch.randn(args.batch, 3, *SIZE)
    y = torch.randint(0, CLASSES, (args.batch,))
    trainers, notes, times = {}, {}, {}
    for name, kw in configs.items():
        try:
            t = trainer(**kw)
            t._train_step(x, y, 0, torch.Generator().manual_seed(0))  # warm-up (and compilation)
            trainers[name], times[name] = t, []
        except Exception as exc:  # a configuration this torch cannot run is reported, not fatal
            notes[name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    for _ in range(args.rounds):
        for name, t in trainers.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                t._train_step(x, y, 0, torch.Generator().manual_seed(0))
            times[name].append((time.perf_counter() - start) / args.steps)
    fractions = mac_fractions()
    ideal = 1 + sum(fractions.values())
    plain = float(np.median(times["plain (1 task, width 1.0)"]))
    rows = []
    for name in configs:
        if name not in trainers:
            rows.append(
                Row(name, len(configs[name]["widths"]), float("nan"), float("nan"), None, notes[name])
            )
            continue
        med = float(np.median(times[name]))
        rows.append(Row(name, len(trainers[name].tasks), med, args.batch / med, med / plain))
    record = {
        "provenance": provenance(),
        "mac_fractions": {str(w): f for w, f in fractions.items()},
        "ideal_ratio": ideal,
        "rows": [asdict(r) for r in rows],
    }
    sfsc = next(r for r in rows if r.config == "SFSC (4 tasks)")
    md = [
        "# Training throughput on this CPU: SFSC step vs plain step",
        "",
        provenance_md(record["provenance"]),
        f"ResNet-18 ×0.5, {SIZE[0]}×{SIZE[1]}, batch {args.batch}, 1 thread, {args.rounds} interleaved "
        f"rounds of {args.steps} steps, median. MAC fractions γ = "
        + ", ".join(f"{w:g}: {f:.3f}" for w, f in fractions.items())
        + f"; ideal SFSC / plain = 1 + Σγ = {ideal:.3f} (γ: a width's MAC fraction, ≈ its width squared). "
        "torch.compile recompiles for every width (one graph per width) and falls back to eager past "
        "its recompilation limit.",
        "",
        "| configuration | tasks | step s | images/s | ratio to plain |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r.ratio_to_plain:.2f}" if r.ratio_to_plain is not None else "–"
        step = f"{r.median_s:.3f}" if r.note == "" else r.note
        md.append(f"| {r.config} | {r.tasks} | {step} | {r.images_per_s:.1f} | {ratio} |")
    md += [
        "",
        f"Verdict: SFSC step {sfsc.ratio_to_plain:.2f}× a plain step, ideal {ideal:.2f}× "
        f"({sfsc.ratio_to_plain / ideal:.2f} of ideal).",
    ]
    stem = Path(args.out)
    write_results(stem, record, md)
    fig = new_figure(7, 3.4)
    ax = fig.subplots()
    ok = [r for r in rows if r.ratio_to_plain is not None]
    ax.barh([r.config for r in ok], [r.ratio_to_plain for r in ok])
    ax.axvline(ideal, color="k", ls="--", lw=1, label=f"ideal SFSC 1 + Σγ = {ideal:.2f}")
    ax.set_xlabel("step time / plain step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, stem.with_suffix(".png"))
    print(md[-1])


if __name__ == "__main__":
    main()
