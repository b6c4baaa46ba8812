"""SFSC's training recipe on a validation split: batch sampler and learning-rate schedule.

``calibration_market1501.py`` measures these choices for a plain model; this measures them for the
switchable SFSC model (W = {0.25, 0.5, 0.75}), whose narrow widths learn through the shared
classifier, on identities carved out of the *training* ids (``--val-ids``), never the test ids.
Every variant runs in the same invocation with the same seed, so the figures are side by side.

    python -m benchmarks.recipe_variants [--variants pk-cosine,random-constant] [--epochs 3]

Writes ``benchmarks/results/recipe_variants.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks._common import (
    MARKET,
    RECIPES,
    RESULTS,
    ROOT,
    provenance,
    provenance_md,
    rule_passes,
    train_resumable,
    write_results,
)
from sfsc_deploy.data import load_dataset
from sfsc_deploy.io.figures import new_figure, save_png
from sfsc_deploy.models import ArchOptions, checkpoint
from sfsc_deploy.train import TrainConfig

# the SFSC loss these recipes were compared with (TrainConfig's defaults then): sensoy KL, λ 0.2
# annealed over 10 epochs, and no evidence offset (before the fix of sfsc_validation.md)
BEFORE_FIX = {"kl": "sensoy", "kl_weight": 0.2, "kl_anneal_epochs": 10, "evidence_offset": False}
VARIANTS = {name: {**recipe, **BEFORE_FIX} for name, recipe in RECIPES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MARKET))
    parser.add_argument("--format", default="market1501-heldout")
    parser.add_argument("--variants", default="pk-cosine,random-constant")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--val-ids", type=int, default=100)
    parser.add_argument("--work", default=str(ROOT / ".bench" / "recipe_variants"))
    parser.add_argument("--out", default=str(RESULTS / "recipe_variants"))
    args = parser.parse_args()
    splits = load_dataset(args.data, None if args.data == "synthetic" else args.format)
    options = ArchOptions(width_mult=0.5, input_size=(128, 64))
    names = args.variants.split(",")
    record: dict = {
        "provenance": provenance(),
        "dataset": splits.name,
        "val_ids": args.val_ids,
        "epochs": args.epochs,
        "config": "resnet18 base 32, 128×64, D 256, W {0.25, 0.5, 0.75}, sfsc (project), Adam 3.5e-4, "
        "batch 64, seed 0",
        "variants": {},
    }
    for name in names:
        cfg = TrainConfig(method="sfsc", epochs=args.epochs, val_ids=args.val_ids, **VARIANTS[name])
        run_dir = Path(args.work) / f"{name}-e{args.epochs}"
        tic = time.perf_counter()
        train_resumable(splits, cfg, run_dir, options)
        header = checkpoint.read_header(run_dir / "checkpoint.safetensors")
        record["variants"][name] = {
            "overrides": VARIANTS[name],
            "val": header["extra"]["training"]["val"],
            "train_s": time.perf_counter() - tic,
        }
    keys = sorted(record["variants"][names[0]]["val"])
    md = [
        "# SFSC recipe variants on the validation split (training identities)",
        "",
        provenance_md(record["provenance"]),
        f"{record['config']}; {args.epochs} epochs; {args.val_ids} validation identities.",
        "",
        "| variant | overrides |",
        "|---|---|",
        *(f"| {n} | `{VARIANTS[n]}` |" for n in names),
        "",
        "| val mAP M(φ_q, φ_g) | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    md += [f"| {k} | " + " | ".join(str(record["variants"][n]["val"][k]) for n in names) + " |" for k in keys]
    md += ["", "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    md.append(
        "| rule pairs passed (q < g) | "
        + " | ".join(rule_passes(record["variants"][n]["val"]) for n in names)
        + " |"
    )
    out = Path(args.out)
    md += ["", f"![M(φ_q, φ_g) per variant]({out.name}.png)"]
    write_results(out, record, md)
    plot(record, names, out.with_suffix(".png"))
    print("\n".join(md))


def plot(record: dict, names: list[str], path: Path) -> None:
    """One heatmap of the validation matrix per variant, on a common colour scale."""
    import numpy as np

    vals = [record["variants"][n]["val"] for n in names]
    widths = sorted({float(k.split("/")[1].split("->")[0]) for k in vals[0]})
    mats = [np.array([[v[f"mAP/{q:g}->{g:g}"] for g in widths] for q in widths]) for v in vals]
    top = max(m.max() for m in mats)
    fig = new_figure(3.6 * len(names), 3.4)
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name, m in zip(axes[0], names, mats, strict=True):
        ax.imshow(m, cmap="viridis", vmin=0, vmax=top)
        for i in range(len(widths)):
            for j in range(len(widths)):
                ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(widths)), [f"{w:g}" for w in widths])
        ax.set_yticks(range(len(widths)), [f"{w:g}" for w in widths])
        ax.set_xlabel("gallery width")
        ax.set_ylabel("query width")
        ax.set_title(f"{name} ({rule_passes(record['variants'][name]['val'])} rule pairs)", fontsize=9)
    fig.suptitle(f"SFSC validation mAP, {record['epochs']} epochs")
    fig.tight_layout()
    save_png(fig, path)


if __name__ == "__main__":
    main()
