"""SFSC vs the baselines on the Market-1501 held-out protocol: every method's 4×4 matrix.

Same data, input size, epochs and seed for every method. The CPU configuration (2 cores):
ResNet-18 at base width 32 (``width_mult 0.5``), 128×64 input, D = 256, W = {0.25, 0.5, 0.75},
Adam 3.5e-4, weight decay 5e-4, batch 64, flip + pad-crop, seed 0, SFSC with the sensoy KL.
``--recipe random-constant`` (the default) uses shuffled batches and a constant learning rate, the
recipe that came closest to method.md's calibration point (``calibration_market1501.md``) and
was best on validation identities (``recipe_variants.md``); Asym-S keeps P×K batches (16 ids × 4)
because its contrastive loss needs same-identity pairs. ``--recipe pk-cosine`` is the P×K,
warm-up + cosine recipe of earlier runs. One method takes ~15 minutes (12 epochs) on 2 cores.
Runs are kept in ``--work`` and resumed, so an interrupted benchmark continues where it stopped;
invocations with different ``--methods`` can run in parallel and a last one combines them.

    python benchmarks/compat_market1501.py [--methods sfsc,unified] [--epochs 12]

Writes ``benchmarks/results/compat_market1501.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import (  # noqa: E402
    RECIPES,
    provenance,
    provenance_md,
    train_resumable,
    write_results,
)
from sfsc_deploy.data import load_dataset  # noqa: E402
from sfsc_deploy.evaluation.matrix import CompatibilityMatrix  # noqa: E402
from sfsc_deploy.evaluation.report import matrix_markdown  # noqa: E402
from sfsc_deploy.evaluation_runs import evaluate_run  # noqa: E402
from sfsc_deploy.models import ArchOptions  # noqa: E402
from sfsc_deploy.train import TrainConfig  # noqa: E402
from sfsc_deploy.train.config import needs_identity_pairs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MARKET = ROOT.parent / "shared" / "datasets" / "market1501"
RESULTS = ROOT / "benchmarks" / "results"
# name -> (method, aggregation, TrainConfig overrides)
RUNS = {
    "unified": ("unified", "sum", {}),
    "bct-s": ("bct-s", "sum", {}),
    "asym-s": ("asym-s", "sum", {}),
    "sfsc": ("sfsc", "project", {}),
    "sfsc+sum": ("sfsc", "sum", {}),
    "bct-s+project": ("bct-s", "project", {}),
    # the paper's λ = 0.2, next to the λ chosen on validation identities (TrainConfig's default)
    "sfsc-kl0.2": ("sfsc", "project", {"kl_weight": 0.2}),
}


def cached_matrix(run_dir: Path) -> CompatibilityMatrix | None:
    """The run's evaluation when it is newer than the run, so that parallel invocations (one method
    each) can be combined by a last invocation without evaluating again."""
    report = run_dir / "eval" / "compat_matrix.json"
    if not report.exists() or report.stat().st_mtime < (run_dir / "networks.json").stat().st_mtime:
        return None
    return CompatibilityMatrix.from_dict(json.loads(report.read_text())["matrix"])


def targets(matrices: dict[str, CompatibilityMatrix]) -> list[str]:
    lines = []
    sfsc = matrices.get("sfsc")
    if sfsc is None:
        return ["sfsc not run yet"]
    lines.append(f"SFSC passes the rule on every pair: {'yes' if sfsc.all_pass() else 'NO'}")
    for base in ("bct-s", "asym-s"):
        if base in matrices:
            wins = [sfsc.value(q, 1.0) > matrices[base].value(q, 1.0) for q in sfsc.widths if q < 1.0]
            lines.append(f"SFSC M(q, 1.0) beats {base} for every q < 1: {'yes' if all(wins) else 'NO'}")
    if "unified" in matrices:
        gap = sfsc.value(1.0, 1.0) - matrices["unified"].value(1.0, 1.0)
        lines.append(
            f"SFSC full mAP − unified full mAP = {gap:+.1f} (target ≥ −0.5): {'yes' if gap >= -0.5 else 'NO'}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MARKET))
    parser.add_argument("--format", default="market1501-heldout")
    parser.add_argument("--methods", default=",".join(RUNS))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--recipe", default="random-constant", choices=sorted(RECIPES))
    parser.add_argument("--kl", default=None, help="SFSC KL variant (default: TrainConfig's)")
    parser.add_argument("--kl-weight", type=float, default=None, help="SFSC λ (default: TrainConfig's)")
    parser.add_argument("--width-mult", type=float, default=0.5)
    parser.add_argument("--input-size", default="128x64")
    parser.add_argument("--work", default=str(ROOT / ".bench" / "compat_market1501"))
    parser.add_argument("--out", default=str(RESULTS / "compat_market1501"))
    args = parser.parse_args()
    fmt = None if args.data == "synthetic" else args.format
    splits = load_dataset(args.data, fmt)
    size = tuple(int(v) for v in args.input_size.split("x"))
    options = ArchOptions(width_mult=args.width_mult, input_size=size)
    work = Path(args.work) / f"{args.recipe}-e{args.epochs}"
    record = {
        "provenance": provenance(),
        "dataset": splits.name,
        "config": {
            "arch": "resnet18",
            "widths": [0.25, 0.5, 0.75, 1.0],
            "feature_dim": 256,
            "width_mult": args.width_mult,
            "input_size": list(size),
            "epochs": args.epochs,
            "optimizer": "adam",
            "lr": 3.5e-4,
            "weight_decay": 5e-4,
            "batch": 64,
            "recipe": args.recipe,
            "recipe_options": RECIPES[args.recipe],
            "seed": 0,
            "augmentation": "flip + pad-crop",
            "kl": args.kl or TrainConfig().kl,
            "kl_weight": TrainConfig().kl_weight if args.kl_weight is None else args.kl_weight,
            "kl_anneal_epochs": TrainConfig().kl_anneal_epochs,
        },
        "methods": {},
    }
    matrices: dict[str, CompatibilityMatrix] = {}
    for name in args.methods.split(","):
        method, aggregation, overrides = RUNS[name]
        cli = {k: v for k, v in (("kl", args.kl), ("kl_weight", args.kl_weight)) if v is not None}
        # SFSC runs trained with other --kl/--kl-weight than the defaults are kept apart by name
        tag = "".join(f"-{k}{v}" for k, v in sorted(cli.items()) if k not in overrides)
        run_dir = work / (f"{name}{tag}" if method == "sfsc" else name)
        recipe = dict(RECIPES[args.recipe])
        if needs_identity_pairs(method, TrainConfig.loss):
            recipe["sampler"] = "pk"
        settings = {**recipe, **cli, **overrides}  # a run's own overrides win over the command line
        cfg = TrainConfig(method=method, aggregation=aggregation, epochs=args.epochs, erasing=0.0, **settings)
        tic = time.perf_counter()
        train_resumable(splits, cfg, run_dir, options)
        train_s = time.perf_counter() - tic
        matrix = cached_matrix(run_dir) or evaluate_run(run_dir, splits, run_dir / "eval")
        shutil.copyfile(run_dir / "eval" / "compat_matrix.png", Path(f"{args.out}_{name}.png"))
        matrices[name] = matrix
        record["methods"][name] = {
            "method": method,
            "aggregation": aggregation,
            "sampler": cfg.sampler,
            "kl_weight": cfg.kl_weight if method == "sfsc" else None,
            "train_seconds_this_invocation": round(train_s, 1),
            "matrix": matrix.to_dict(),
            "all_pass": matrix.all_pass(),
        }
    record["targets"] = targets(matrices)
    md = [
        f"# Cross-width compatibility on {splits.name}",
        "",
        provenance_md(record["provenance"]),
        "Configuration: " + ", ".join(f"{k} {v}" for k, v in record["config"].items()),
        "",
        "## Targets",
        "",
        *[f"- {line}" for line in record["targets"]],
        "",
    ]
    md += [
        "## M(φ_q, φ_1.0) per method (mAP)",
        "",
        "| method | " + " | ".join(f"φ {q:g}×" for q in (0.25, 0.5, 0.75, 1.0)) + " |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, m in matrices.items():
        md.append(f"| {name} | " + " | ".join(f"{m.value(q, 1.0):.1f}" for q in m.widths) + " |")
    for name, m in matrices.items():
        md += ["", f"## {name}", "", matrix_markdown(m)]
    write_results(Path(args.out), record, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
