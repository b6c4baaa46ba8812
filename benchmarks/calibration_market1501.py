"""Is the training pipeline sound? A plain ResNet-18 against docs/method.md §6's calibration point.

docs/method.md §6: a plain (non-switchable) ResNet-18 at base width 32, 128×64 input, BN-neck D = 256,
Adam 3.5e-4, wd 5e-4, CE with label smoothing 0.1, batch 64, flip + pad-crop, 12 epochs reaches
mAP 50.1 / rank-1 65.2 on ``market1501-heldout`` in ~7 minutes. This trains that model (widths
1.0 only, so only L_ori) under the recipe choices that text leaves open (the batch sampler, the
learning-rate schedule, the last stage's stride) and reports each against the calibration figures,
so that a gap in the compatibility benchmark can be traced to the recipe instead of guessed at.

    python -m benchmarks.calibration_market1501 [--variants pk-cosine,random-cosine] [--epochs 12]

Writes ``benchmarks/results/calibration_market1501.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from benchmarks._common import (
    MARKET,
    RECIPES,
    RESULTS,
    ROOT,
    provenance,
    provenance_md,
    train_resumable,
    write_results,
)
from exporters.files import write_text
from sfsc_deploy.data import load_dataset
from sfsc_deploy.evaluation.runs import evaluate_run
from sfsc_deploy.io.figures import new_figure, save_png
from sfsc_deploy.models import ArchOptions
from sfsc_deploy.train import TrainConfig

CALIBRATION = {"mAP": 50.1, "rank1": 65.2}
# name -> TrainConfig overrides (plus ARCH_KEYS)
VARIANTS = {
    **RECIPES,
    # torchvision's last stage: a 4×2 instead of 8×4 final feature map
    "random-constant-stride2": {**RECIPES["random-constant"], "last_stride": 2},
}
ARCH_KEYS = ("last_stride",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MARKET))
    parser.add_argument("--format", default="market1501-heldout")
    parser.add_argument("--variants", default="pk-cosine,random-cosine,random-constant")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--work", default=str(ROOT / ".bench" / "calibration_market1501"))
    parser.add_argument("--out", default=str(RESULTS / "calibration_market1501"))
    args = parser.parse_args()
    fmt = None if args.data == "synthetic" else args.format
    splits = load_dataset(args.data, fmt)
    options = ArchOptions(width_mult=0.5, input_size=(128, 64))
    record: dict = {
        "provenance": provenance(),
        "dataset": splits.name,
        "calibration": CALIBRATION,
        "config": {
            "arch": "resnet18 (plain: width 1.0 only)",
            "width_mult": 0.5,
            "input_size": [128, 64],
            "feature_dim": 256,
            "epochs": args.epochs,
            "optimizer": "adam",
            "lr": 3.5e-4,
            "weight_decay": 5e-4,
            "label_smoothing": 0.1,
            "batch": 64,
            "augmentation": "flip + pad-crop",
            "seed": 0,
        },
        "variants": {},
    }
    for name in args.variants.split(","):
        overrides = {k: v for k, v in VARIANTS[name].items() if k not in ARCH_KEYS}
        arch = {k: v for k, v in VARIANTS[name].items() if k in ARCH_KEYS}
        cfg = TrainConfig(method="sfsc", epochs=args.epochs, erasing=0.0, **overrides)
        run_dir = Path(args.work) / f"{name}-e{args.epochs}"
        result = run_dir / "calibration_result.json"  # kept with the run: a re-run only combines
        if not result.exists():
            tic = time.perf_counter()
            train_resumable(splits, cfg, run_dir, replace(options, **arch), widths="1.0")
            train_s = time.perf_counter() - tic
            m = evaluate_run(run_dir / "checkpoint.safetensors", splits, progress=False).metrics[(1.0, 1.0)]
            scores = {"mAP": m.mAP, "rank1": m.cmc[1], "mINP": m.mINP, "train_s": train_s}
            write_text(result, json.dumps(scores, indent=2) + "\n")
        record["variants"][name] = {"overrides": VARIANTS[name], **json.loads(result.read_text())}
        v = record["variants"][name]
        print(f"{name}: mAP {v['mAP']:.1f} R1 {v['rank1']:.1f} ({v['train_s'] / 60:.1f} min)", flush=True)
    lines = [
        f"# Plain ResNet-18 vs docs/method.md's calibration point ({splits.name})",
        "",
        provenance_md(record["provenance"]),
        "Configuration: " + ", ".join(f"{k} {v}" for k, v in record["config"].items()),
        "",
        f"Calibration point (docs/method.md §6): mAP {CALIBRATION['mAP']} / rank-1 {CALIBRATION['rank1']}.",
        "",
        "| variant | overrides | mAP | rank-1 | mINP | Δ mAP vs calibration | train min |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in record["variants"].items():
        lines.append(
            f"| {name} | `{v['overrides']}` | {v['mAP']:.1f} | {v['rank1']:.1f} | {v['mINP']:.1f} | "
            f"{v['mAP'] - CALIBRATION['mAP']:+.1f} | {v['train_s'] / 60:.1f} |"
        )
    out = Path(args.out)
    lines += ["", f"![mAP per variant]({out.name}.png)"]
    write_results(out, record, lines)
    plot(record, out.with_suffix(".png"))


def plot(record: dict, path: Path) -> None:
    names = list(record["variants"])
    fig = new_figure(7, 3.6)
    ax = fig.subplots()
    values = [record["variants"][n]["mAP"] for n in names]
    bars = ax.bar(names, values, color="#4c72b0", label="this pipeline")
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylim(0, 1.2 * max(values + [CALIBRATION["mAP"]]))
    ax.axhline(CALIBRATION["mAP"], color="#c44e52", linestyle="--", label="docs/method.md calibration")
    ax.set_ylabel("mAP (%)")
    ax.set_title(f"Plain ResNet-18, {record['config']['epochs']} epochs, {record['dataset']}")
    ax.legend(loc="lower right")
    for label in ax.get_xticklabels():
        label.set_rotation(15)
        label.set_horizontalalignment("right")
    fig.tight_layout()
    save_png(fig, path)


if __name__ == "__main__":
    main()
