"""SFSC's evidential loss on validation identities: the evidence fix, the KL variant, λ.

Why it exists: with a BatchNorm neck (bias frozen) and a bias-free shared classifier, every
class's logit has zero batch mean in train mode, so the evidence exp(z) has batch mean ≥ 1 per
class and u = C/S cannot fall much below 0.5: the KL term can only shrink every logit. This
measures that directly (``head statistics``: the batch mean of every class's logit, the batch
mean evidence per class, u, on training batches in train mode after training), then compares
the candidate fixes and the loss settings by the validation matrix, on identities carved out of
the *training* ids (``--val-ids``), never the test ids. Every variant: ResNet-18 base 32, 128×64,
D 256, W {0.25, 0.5, 0.75, 1.0}, Adam 3.5e-4 (wd 5e-4), shuffled batches of 64, constant lr,
flip + pad-crop, seed 0, no KL annealing unless named.

    python -m benchmarks.sfsc_validation [--variants paper-offset,paper-pinned] [--epochs 4] [--jobs 2]

Writes ``benchmarks/results/sfsc_validation.{json,md,png}`` and each run's log plots beside it.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import (
    MARKET,
    RECIPES,
    RESULTS,
    ROOT,
    provenance,
    provenance_md,
    rule_passes,
    write_results,
)
from benchmarks._jobs import RunSpec, add_job_arguments, run_all
from exporters.graph import normalize_images
from sfsc_deploy.data import load_dataset
from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.data.records import split_validation
from sfsc_deploy.io.figures import new_figure, save_png
from sfsc_deploy.losses import evidential
from sfsc_deploy.models import ArchOptions, checkpoint
from sfsc_deploy.train import TrainConfig
from sfsc_deploy.train.log import read_log
from sfsc_deploy.train.log_plots import plot_log

PAPER = {"kl": "paper", "kl_weight": 0.2, "kl_anneal_epochs": 0}
SENSOY = {"kl": "sensoy", "kl_anneal_epochs": 0}
PINNED = {"evidence_offset": False}  # the loss as it was: logits with zero batch mean per class
NECK = {"evidence_offset": False}  # the neck-bias candidate replaces the offset
SLOW = {"offset_init": None, "offset_lr": 0.01}  # round 1's offset: from −ln C at lr 0.01
ZERO = {"offset_init": 0.0}  # the offset starting where the loss without it is
# name -> (TrainConfig overrides, ArchOptions overrides)
ROUND1: dict[str, tuple[dict, dict]] = {
    "paper-pinned": ({**PAPER, **PINNED}, {}),
    "paper-neckbias": ({**PAPER, **NECK}, {"neck_bias": True}),
    "paper-offset-slow": ({**PAPER, **SLOW}, {}),
    "sensoy0.01-pinned": ({**SENSOY, "kl_weight": 0.01, **PINNED}, {}),
    "sensoy0.01-neckbias": ({**SENSOY, "kl_weight": 0.01, **NECK}, {"neck_bias": True}),
    "sensoy0.01-offset-slow": ({**SENSOY, "kl_weight": 0.01, **SLOW}, {}),
}
ROUND2: dict[str, tuple[dict, dict]] = {
    "sensoy0.01-offset": ({**SENSOY, "kl_weight": 0.01}, {}),
    "sensoy0.01-offset0": ({**SENSOY, "kl_weight": 0.01, **ZERO}, {}),
    "paper-offset": (PAPER, {}),
    "paper-offset0": ({**PAPER, **ZERO}, {}),
    "sensoy0.2-offset": ({**SENSOY, "kl_weight": 0.2}, {}),
    "bct-s": ({"method": "bct-s"}, {}),
}
VARIANTS = {**ROUND1, **ROUND2}


@dataclass
class HeadStats:
    """The evidential head on training batches in train mode (BatchNorm on batch statistics)."""

    width: float
    max_abs_class_mean_logit: float  # max over classes of |batch mean of z_c|: 0 means pinned
    logit_std: float
    min_class_mean_evidence: float  # min over classes of the batch mean of exp(z_c + b)
    classes_with_mean_evidence_ge_1: float  # fraction
    uncertainty: float  # batch mean u from the loss itself


@torch.no_grad()
def head_statistics(run_dir: Path, images: torch.Tensor, cfg: TrainConfig) -> list[HeadStats]:
    net = checkpoint.load(run_dir / "checkpoint.safetensors").train()
    opts = net.config.options
    offset = net.classifier.evidence_offset if cfg.evidence_offset else 0.0
    batches = normalize_images(images, opts.mean, opts.std).split(64)
    rows = []
    for width in sorted(net.widths):
        net.set_width(width)
        stats = []
        for x in batches:
            z = net(x).logits
            zb = (z + offset).double().clamp(-cfg.evidence_clamp, cfg.evidence_clamp)
            class_evidence = zb.exp().mean(dim=0)
            labels = z.argmax(dim=1)  # u does not depend on the labels
            u = evidential(z + offset, labels, cfg.kl_weight, cfg.evidence_clamp, cfg.kl).uncertainty
            stats.append(
                [
                    float(z.mean(dim=0).abs().max()),
                    float(z.std()),
                    float(class_evidence.min()),
                    float((class_evidence >= 1).double().mean()),
                    float(u),
                ]
            )
        mean = np.mean(stats, axis=0)
        rows.append(HeadStats(width, *(float(f"{v:.4g}") for v in mean)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MARKET))
    parser.add_argument("--format", default="market1501-heldout")
    parser.add_argument("--variants", default=",".join(ROUND2), help=f"any of {', '.join(VARIANTS)}")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--val-ids", type=int, default=100)
    add_job_arguments(parser)
    parser.add_argument("--work", default=str(ROOT / ".bench" / "sfsc_validation"))
    parser.add_argument("--out", default=str(RESULTS / "sfsc_validation"))
    args = parser.parse_args()
    fmt = None if args.data == "synthetic" else args.format
    names = args.variants.split(",")
    base = ArchOptions(width_mult=0.5, input_size=(128, 64))
    specs = {}
    for name in names:
        overrides, arch = VARIANTS[name]
        cfg = TrainConfig(
            **{"method": "sfsc", **RECIPES["random-constant"], **overrides},
            epochs=args.epochs,
            val_ids=args.val_ids,
        )
        run_dir = Path(args.work) / f"{name}-e{args.epochs}"
        specs[name] = RunSpec.make(run_dir, args.data, fmt, cfg, replace(base, **arch), evaluate=False)
    run_all(list(specs.values()), jobs=args.jobs, threads=args.threads)

    # training images for the head statistics: 640 random ones (10 batches), the same for every run
    splits = load_dataset(args.data, fmt)
    train_records, _, _ = split_validation(splits.train, args.val_ids, 0)
    picked = random.Random(0).sample(train_records, min(640, len(train_records)))
    images = build_bank(picked, base.input_size, split="head-statistics", progress=False).images
    out = Path(args.out)
    plots_dir = out.parent / out.name
    record: dict = {
        "provenance": provenance(),
        "dataset": splits.name,
        "val_ids": args.val_ids,
        "epochs": args.epochs,
        "variants": {},
    }
    for name in names:
        spec = specs[name]
        cfg = spec.train_config
        header = checkpoint.read_header(spec.path / "checkpoint.safetensors")
        log = read_log(spec.path)
        u = {
            f"{w:g}": [round(float(v), 4) for v in log.epoch_mean(vals)]
            for w, vals in log.per_width("uncertainty").items()
        }
        plot_log(log, plots_dir / name, title=name)
        record["variants"][name] = {
            "overrides": VARIANTS[name][0],
            "arch_overrides": VARIANTS[name][1],
            "saved_config": header["extra"]["training"]["config"],
            "val": header["extra"]["training"]["val"],
            "uncertainty_per_epoch": u,
            "evidence_offset_final": (
                float(log.column("evidence_offset")[-1])
                if log.column("evidence_offset") is not None
                else None
            ),
            "head_statistics": [asdict(s) for s in head_statistics(spec.path, images, cfg)],
        }
    write_report(record, names, out, plots_dir)


def write_report(record: dict, names: list[str], out: Path, plots_dir: Path) -> None:
    variants = record["variants"]
    widths = [1.0, 0.75, 0.5, 0.25]
    md = [
        "# SFSC's evidential loss on the validation split (training identities)",
        "",
        provenance_md(record["provenance"]),
        f"{record['epochs']} epochs, {record['val_ids']} validation identities carved from the training ids, "
        "seed 0, one run per variant. Overrides of each variant:",
        "",
        "| variant | training overrides | architecture overrides |",
        "|---|---|---|",
        *(f"| {n} | `{variants[n]['overrides']}` | `{variants[n]['arch_overrides']}` |" for n in names),
        "",
        "## Validation mAP",
        "",
        "| variant | "
        + " | ".join(f"M({q:g}, 1)" for q in widths)
        + " | "
        + " | ".join(f"M({q:g}, {q:g})" for q in widths[1:])
        + " | rule pairs |",
        "|---|" + "---:|" * 8,
    ]
    for n in names:
        val = variants[n]["val"]
        cells = [val[f"mAP/{q:g}->1"] for q in widths] + [val[f"mAP/{q:g}->{q:g}"] for q in widths[1:]]
        md.append(f"| {n} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {rule_passes(val)} |")
    md += [
        "",
        "## Head statistics after training (10 training batches of 64, train mode)",
        "",
        "`max |mean z_c|`: the largest batch mean of any class's logit (0: every class pinned at "
        "zero mean); "
        "`min mean e_c`: the smallest batch-mean evidence of any class, `exp(clamp(z_c + b))`; "
        "`share e_c ≥ 1`: classes whose batch-mean evidence is at least 1; u from the loss itself.",
        "",
        "| variant | width | max \\|mean z_c\\| | logit std | min mean e_c | share e_c ≥ 1 | u |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        for s in variants[n]["head_statistics"]:
            md.append(
                f"| {n} | {s['width']:g} | {s['max_abs_class_mean_logit']:.2e} | {s['logit_std']:.3f} | "
                f"{s['min_class_mean_evidence']:.3g} | {s['classes_with_mean_evidence_ge_1']:.3f} | "
                f"{s['uncertainty']:.3f} |"
            )
    md += ["", "## Uncertainty u per epoch (training batches, mean per epoch)", ""]
    md += [
        "| variant | width | "
        + " | ".join(f"epoch {e + 1}" for e in range(record["epochs"]))
        + " | offset b |"
    ]
    md += ["|---|---:|" + "---:|" * (record["epochs"] + 1)]
    for n in names:
        b = variants[n]["evidence_offset_final"]
        for w, us in variants[n]["uncertainty_per_epoch"].items():
            md.append(
                f"| {n} | {w} | "
                + " | ".join(f"{u:.3f}" for u in us)
                + f" | {'' if b is None else f'{b:.2f}'} |"
            )
    md += ["", f"Per-run plots (losses, gradient norms, u, conflicts): `{plots_dir.name}/<variant>/`.", ""]
    md += [f"![validation matrix and uncertainty]({out.name}.png)"]
    write_results(out, record, md)
    plot(record, names, out.with_suffix(".png"))
    print("\n".join(md))


def plot(record: dict, names: list[str], path: Path) -> None:
    variants = record["variants"]
    fig = new_figure(13, 4.2)
    ax, ax_u = fig.subplots(1, 2)
    x = np.arange(len(names))
    for i, q in enumerate([0.25, 0.5, 0.75, 1.0]):
        ax.bar(
            x + (i - 1.5) * 0.2,
            [variants[n]["val"][f"mAP/{q:g}->1"] for n in names],
            0.2,
            label=f"M({q:g}, 1)",
        )
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("validation mAP (%)")
    ax.set_title("query width q against the full model's gallery")
    ax.legend(fontsize=8)
    for n in names:
        us = variants[n]["uncertainty_per_epoch"].get("0.25")
        if us:
            ax_u.plot(range(1, len(us) + 1), us, "o-", label=n)
    ax_u.set_xlabel("epoch")
    ax_u.set_ylabel("u of the 0.25× sub-model")
    ax_u.set_ylim(0, 1.02)
    ax_u.legend(fontsize=7)
    ax_u.set_title("uncertainty of the narrowest width")
    fig.tight_layout()
    save_png(fig, path)


if __name__ == "__main__":
    main()
