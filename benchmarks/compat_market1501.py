"""SFSC vs the baselines on the Market-1501 held-out protocol, over several seeds.

Every method trains with the same recipe: ResNet-18 at base width 32 (``width_mult 0.5``), 128×64
input, D = 256, W = {0.25, 0.5, 0.75, 1.0}, Adam 3.5e-4 (weight decay 5e-4), shuffled batches of
64 at a constant learning rate, flip + pad-crop, 12 epochs. (Asym-S trains on the same shuffled
batches: its contrastive loss pairs each sub-model feature with the full model's feature of the
same image, so every batch has its positives.) Seeds pair the runs across methods: seed s gives
every method the same batches and augmentation, and the switchable methods the same
initialisation; the separate networks of unified / bct / asym start from their own seed per width.

The core methods (SFSC with its defaults — which are the paper's loss plus the logit offset, as
chosen on validation identities — BCT-S, Asym-S, unified) run with ``--seeds`` (default 0,1,2);
the one-to-one baselines, LCE-S and the two SFSC ablations (sum instead of projection; the loss as
it was before the offset fix) with the first seed.
Runs train side by side (``--jobs 2``, one thread each), resume after an interruption, and are
reused only when their saved training config equals the requested one.

    python -m benchmarks.compat_market1501 [--methods sfsc,bct-s] [--seeds 0,1,2] [--jobs 2]
    python -m benchmarks.compat_market1501 --report-only   # the report of the finished runs

Writes ``benchmarks/results/compat_market1501.{json,md,png}`` and the training-log figures
``compat_market1501_{grad_norms,uncertainty,conflicts}.png``.

Whether a longer budget helps (the paper trains ~120 epochs): SFSC and BCT-S for 36 epochs with 100
training ids carved into a validation split, whose matrix is logged after every epoch; the report
then adds the trend per epoch (``..._val_trend.png``):

    python -m benchmarks.compat_market1501 --methods sfsc,bct-s --seeds 0 --epochs 36 --val-ids 100 \
        --out benchmarks/results/compat_market1501_e36
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks._common import (
    MARKET,
    RECIPES,
    RESULTS,
    ROOT,
    provenance,
    provenance_md,
    rule_counts,
    write_results,
)
from benchmarks._jobs import EVAL, RunSpec, add_job_arguments, run_all, saved_training_config
from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.matrix import CompatibilityMatrix
from sfsc_deploy.evaluation.seeds import paired_difference, spread
from sfsc_deploy.io.figures import new_figure, save_png
from sfsc_deploy.models import ArchOptions
from sfsc_deploy.train import TrainConfig
from sfsc_deploy.train.log import TrainLog, read_log
from sfsc_deploy.train.log_plots import plot_comparison, plot_cumulative_conflicts
from sfsc_deploy.train.trainer import LOG

WIDTHS = [0.25, 0.5, 0.75, 1.0]
# (query, gallery) with the gallery wider: the pairs the compatibility rule is judged on
WIDTH_PAIRS = [(q, g) for i, q in enumerate(WIDTHS) for g in WIDTHS[i + 1 :]]
# name -> (label, TrainConfig overrides, seeded): seeded methods run every --seeds, the rest the first
METHODS: dict[str, tuple[str, dict, bool]] = {
    "sfsc": ("SFSC (defaults: the paper's loss + the logit offset)", {"method": "sfsc"}, True),
    "bct-s": ("BCT-S", {"method": "bct-s"}, True),
    "asym-s": ("Asym-S", {"method": "asym-s"}, True),
    "unified": ("unified (separate networks)", {"method": "unified"}, True),
    "bct": ("BCT, one-to-one", {"method": "bct"}, False),
    "asym": ("Asym, one-to-one", {"method": "asym"}, False),
    "lce-s": ("LCE-S", {"method": "lce-s"}, False),
    "sfsc+sum": ("SFSC + sum (no projection)", {"method": "sfsc", "aggregation": "sum"}, False),
    "sfsc-pinned": (
        "SFSC as before the fix: no logit offset, sensoy KL, λ 0.01 annealed over 10 epochs",
        {
            "method": "sfsc",
            "kl": "sensoy",
            "kl_weight": 0.01,
            "kl_anneal_epochs": 10,
            "evidence_offset": False,
        },
        False,
    ),
}
DEFAULT_METHODS = ",".join(METHODS)
BASELINES = ("bct-s", "asym-s", "unified")


def specs_for(args, names: list[str], seeds: list[int]) -> list[tuple[str, int, RunSpec]]:
    """(method, seed, spec) in the order they should run: every method's first seed, then the rest."""
    fmt = None if args.data == "synthetic" else args.format
    size = tuple(int(v) for v in args.input_size.split("x"))
    options = ArchOptions(width_mult=args.width_mult, input_size=size)
    work = Path(args.work) / (f"e{args.epochs}" + (f"-val{args.val_ids}" if args.val_ids else ""))
    order = [(n, s) for s in seeds for n in names if METHODS[n][2]]  # the seeded core first, seed by seed
    order += [(n, seeds[0]) for n in names if not METHODS[n][2]]
    runs = []
    for name, seed in order:
        overrides = METHODS[name][1]
        cfg = TrainConfig(
            **{**RECIPES["random-constant"], **overrides}, epochs=args.epochs, seed=seed, val_ids=args.val_ids
        )
        runs.append((name, seed, RunSpec.make(work / f"{name}-s{seed}", args.data, fmt, cfg, options)))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MARKET))
    parser.add_argument("--format", default="market1501-heldout")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--val-ids",
        type=int,
        default=0,
        help="carve N training ids into a validation split and log its matrix every epoch (the trend)",
    )
    add_job_arguments(parser)
    parser.add_argument("--width-mult", type=float, default=0.5)
    parser.add_argument("--input-size", default="128x64")
    parser.add_argument("--report-only", action="store_true", help="report the finished runs, train none")
    parser.add_argument("--work", default=str(ROOT / ".bench" / "compat_market1501"))
    parser.add_argument("--out", default=str(RESULTS / "compat_market1501"))
    args = parser.parse_args()
    names = args.methods.split(",")
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = specs_for(args, names, seeds)
    if not args.report_only:
        run_all([spec for _, _, spec in runs], jobs=args.jobs, threads=args.threads)
    report(args, runs)


def report(args, runs: list[tuple[str, int, RunSpec]]) -> None:
    record: dict = {
        "provenance": provenance(),
        "dataset": args.format if args.data != "synthetic" else "synthetic",
        "config": {
            "arch": "resnet18",
            "widths": WIDTHS,
            "feature_dim": 256,
            "width_mult": args.width_mult,
            "input_size": args.input_size,
            "epochs": args.epochs,
            "val_ids": args.val_ids,
            "recipe": "random-constant (shuffled batches of 64, constant lr) for every method",
            "augmentation": "flip + pad-crop",
        },
        "runs": [],
    }
    matrices: dict[str, dict[int, CompatibilityMatrix]] = {}
    for name, seed, spec in runs:
        if not spec.finished():
            continue
        matrix = CompatibilityMatrix.from_dict(json.loads((spec.path / EVAL).read_text())["matrix"])
        matrices.setdefault(name, {})[seed] = matrix
        record["runs"].append(
            {
                "method": name,
                "seed": seed,
                "run_dir": str(spec.path.relative_to(ROOT))
                if spec.path.is_relative_to(ROOT)
                else spec.run_dir,
                "saved_config": saved_training_config(spec.path),
                "options": spec.options,
                "matrix": matrix.to_dict(),
            }
        )
    if not matrices:
        print("no finished runs yet")
        return
    summary = summarize(matrices)
    record["summary"] = summary
    record["targets"] = targets(summary, matrices)
    out = Path(args.out)
    logs = plot_logs(runs, out)
    record["grad_norm_balance"] = {name: grad_norm_balance(log) for name, log in logs.items()}
    record["uncertainty_per_epoch"] = {
        name: {
            f"{w:g}": [round(float(v), 4) for v in log.epoch_mean(u)]
            for w, u in log.per_width("uncertainty").items()
        }
        for name, log in logs.items()
    }
    record["validation_trend"] = validation_trend(runs)
    if record["validation_trend"]:
        plot_validation_trend(record["validation_trend"], Path(f"{out}_val_trend.png"))
    md = markdown(record, summary, matrices, out.name)
    write_results(out, record, md)
    plot_summary(summary, out.with_suffix(".png"))
    print("\n".join(md))


def summarize(matrices: dict[str, dict[int, CompatibilityMatrix]]) -> dict:
    """Per method: every cell as mean ± std over seeds, the rule per pair as passes / seeds."""
    out = {}
    for name, by_seed in matrices.items():
        cells = {}
        for q in WIDTHS:
            for g in WIDTHS:
                s = spread([m.value(q, g) for m in by_seed.values()])
                cells[f"{q:g}->{g:g}"] = asdict(s)
        rule = {f"{q:g}->{g:g}": sum(m.rule(q, g) for m in by_seed.values()) for q, g in WIDTH_PAIRS}
        out[name] = {"seeds": sorted(by_seed), "mAP": cells, "rule_passes": rule}
    return out


def _values(matrices, name: str, q: float, g: float, seeds: list[int]) -> list[float]:
    return [matrices[name][s].value(q, g) for s in seeds]


def comparisons(matrices: dict[str, dict[int, CompatibilityMatrix]]) -> list[dict]:
    """SFSC minus each baseline on M(q, 1.0) for every q, paired by seed."""
    rows = []
    if "sfsc" not in matrices:
        return rows
    for base in BASELINES:
        if base not in matrices:
            continue
        seeds = sorted(set(matrices["sfsc"]) & set(matrices[base]))
        if not seeds:
            continue
        for q in WIDTHS:
            d = paired_difference(
                _values(matrices, "sfsc", q, 1.0, seeds), _values(matrices, base, q, 1.0, seeds)
            )
            rows.append(
                {
                    "baseline": base,
                    "query": q,
                    "seeds": seeds,
                    "difference": d.mean,
                    "ci95": [d.low, d.high],
                    "exceeds_spread": d.exceeds_spread,
                    "text": d.text(),
                }
            )
    return rows


def targets(summary: dict, matrices) -> list[str]:
    lines = []
    if "sfsc" not in summary:
        return ["SFSC not finished yet"]
    sfsc = summary["sfsc"]
    n = len(sfsc["seeds"])
    pairs = sfsc["rule_passes"]
    every = all(v == n for v in pairs.values())
    lines.append(
        f"SFSC passes the rule on all 6 pairs in every seed: {'yes' if every else 'NO'} "
        f"({sum(v == n for v in pairs.values())}/6 pairs pass in all {n} seeds)"
    )
    rows = comparisons(matrices)
    for base in ("bct-s", "asym-s"):
        mine = [r for r in rows if r["baseline"] == base and r["query"] < 1.0]
        if mine:
            ok = all(r["difference"] > 0 and r["exceeds_spread"] for r in mine)
            detail = "; ".join(f"{r['query']:g}×: {r['text']}" for r in mine)
            lines.append(
                f"SFSC M(q, 1.0) beats {base} at every q < 1 beyond the seed spread: "
                f"{'yes' if ok else 'NO'} ({detail})"
            )
        else:
            lines.append(f"SFSC M(q, 1.0) beats {base}: not measured (no finished {base} run to pair with)")
    if "unified" not in summary:
        lines.append("SFSC full mAP ≥ unified − 0.5: not measured (no finished unified run)")
    else:
        gap = sfsc["mAP"]["1->1"]["mean"] - summary["unified"]["mAP"]["1->1"]["mean"]
        lines.append(
            f"SFSC full mAP − unified full mAP = {gap:+.1f} (target ≥ −0.5): {'yes' if gap >= -0.5 else 'NO'}"
        )
    return lines


def markdown(record: dict, summary: dict, matrices, stem: str) -> list[str]:
    label = {name: METHODS[name][0] for name in summary}
    md = [
        f"# Cross-width compatibility on {record['dataset']}, over seeds",
        "",
        provenance_md(record["provenance"]),
        "Configuration: " + ", ".join(f"{k} {v}" for k, v in record["config"].items()) + ".",
        "",
        "Cells are mAP (%) as mean ± sample standard deviation over the seeds listed; the rule column "
        "counts the seeds in which M(φ_q, φ_g) > M(φ_q, φ_q).",
        "",
        "## Targets",
        "",
        *[f"- {line}" for line in record["targets"]],
        "",
        "## M(φ_q, φ_1.0): the query model against the full model's gallery",
        "",
        "| method | seeds | " + " | ".join(f"φ {q:g}×" for q in WIDTHS) + " |",
        "|---|---|" + "---:|" * len(WIDTHS),
    ]
    cell = lambda name, key: _text(summary[name]["mAP"][key])  # noqa: E731
    for name in summary:
        seeds = ",".join(str(s) for s in summary[name]["seeds"])
        md.append(
            f"| {label[name]} | {seeds} | " + " | ".join(cell(name, f"{q:g}->1") for q in WIDTHS) + " |"
        )
    md += [
        "",
        "## The diagonal: each width against its own gallery",
        "",
        "| method | " + " | ".join(f"M({q:g}, {q:g})" for q in WIDTHS) + " |",
        "|---|" + "---:|" * len(WIDTHS),
    ]
    for name in summary:
        md.append(f"| {label[name]} | " + " | ".join(cell(name, f"{q:g}->{q:g}") for q in WIDTHS) + " |")
    pairs = [f"{q:g}->{g:g}" for q, g in WIDTH_PAIRS]
    md += [
        "",
        "## The compatibility rule per pair: seeds in which it passes",
        "",
        "| method | " + " | ".join(p.replace("->", "→") for p in pairs) + " |",
        "|---|" + "---:|" * len(pairs),
    ]
    for name in summary:
        n = len(summary[name]["seeds"])
        md.append(
            f"| {label[name]} | " + " | ".join(f"{summary[name]['rule_passes'][p]}/{n}" for p in pairs) + " |"
        )
    rows = comparisons(matrices)
    if rows:
        md += [
            "",
            "## SFSC minus each baseline on M(φ_q, φ_1.0), paired by seed",
            "",
            "Mean difference in mAP points with its 95% Student-t interval over the paired seeds; "
            "**bold**: the interval excludes 0, i.e. the difference exceeds the seed spread.",
            "",
            "| baseline | " + " | ".join(f"φ {q:g}×" for q in WIDTHS) + " |",
            "|---|" + "---:|" * len(WIDTHS),
        ]
        for base in BASELINES:
            mine = {r["query"]: r for r in rows if r["baseline"] == base}
            if mine:
                texts = [
                    (f"**{mine[q]['text']}**" if mine[q]["exceeds_spread"] else mine[q]["text"])
                    for q in WIDTHS
                ]
                md.append(f"| {label.get(base, base)} | " + " | ".join(texts) + " |")
    balance = {n: r for n, r in record["grad_norm_balance"].items() if r}
    if balance:
        epochs = max(len(r) for r in balance.values())
        md += [
            "",
            "## Gradient-norm balance (paper Fig. 5), first seed",
            "",
            "Per epoch, the mean ‖g‖ of the 0.25× task over the 0.75× task's (1 = balanced).",
            "",
            "| method | " + " | ".join(f"e{e + 1}" for e in range(epochs)) + " |",
            "|---|" + "---:|" * epochs,
            *(f"| {label[n]} | " + " | ".join(f"{v:.2f}" for v in r) + " |" for n, r in balance.items()),
        ]
    for name, per_width in record["uncertainty_per_epoch"].items():
        if per_width:
            epochs = max(len(v) for v in per_width.values())
            md += [
                "",
                f"Uncertainty u per width and epoch, {label[name]} (first seed):",
                "",
                "| width | " + " | ".join(f"e{e + 1}" for e in range(epochs)) + " |",
                "|---|" + "---:|" * epochs,
                *(f"| {w} | " + " | ".join(f"{v:.3f}" for v in us) + " |" for w, us in per_width.items()),
            ]
    md += _trend_markdown(record, label)
    md += [
        "",
        "## Every run's full matrix (mAP), first seed",
        "",
    ]
    for name, by_seed in matrices.items():
        m = by_seed[min(by_seed)]
        md += [
            f"### {label[name]} (seed {min(by_seed)})",
            "",
            "| query ↓ gallery → | " + " | ".join(f"{g:g}" for g in WIDTHS) + " |",
            "|---|" + "---:|" * len(WIDTHS),
            *(f"| {q:g} | " + " | ".join(f"{m.value(q, g):.1f}" for g in WIDTHS) + " |" for q in WIDTHS),
            "",
        ]
    md += [
        f"Figures: [summary]({stem}.png), gradient norm per task "
        f"([Fig. 5]({stem}_grad_norms.png)), uncertainty per width "
        f"([u]({stem}_uncertainty.png)), cumulative conflicting pairs "
        f"([Fig. 6]({stem}_conflicts.png)), all from the first seed's training logs"
        + (f"; the validation trend ([trend]({stem}_val_trend.png))." if record["validation_trend"] else "."),
    ]
    return md


def _trend_markdown(record: dict, label: dict[str, str]) -> list[str]:
    md: list[str] = []
    for name, entries in record["validation_trend"].items():
        md += [
            "",
            f"### Validation trend, {label.get(name, name)} (first seed)",
            "",
            f"After each epoch, on the {record['config']['val_ids']} validation identities carved from the "
            "training ids (never the test ids): M(φ_q, φ_1.0) in mAP and the pairs passing the rule.",
            "",
            "| epoch | " + " | ".join(f"M({q:g}, 1)" for q in WIDTHS) + " | rule pairs |",
            "|---:|" + "---:|" * (len(WIDTHS) + 1),
        ]
        for e in entries:
            cells = " | ".join(
                "–" if e["M_q_1"][f"{q:g}"] is None else f"{e['M_q_1'][f'{q:g}']:.1f}" for q in WIDTHS
            )
            md.append(f"| {e['epoch']} | {cells} | {e['rule_pairs']}/{e['rule_total']} |")
    if md:
        md.insert(0, "")
        md.insert(1, "## Validation matrix per epoch")
    return md


def validation_trend(runs: list[tuple[str, int, RunSpec]]) -> dict[str, list[dict]]:
    """Per method, its first seed's validation matrix after each epoch (runs trained with --val-ids):
    M(φ_q, φ_1.0) and how many pairs pass the rule, to show whether a longer budget still helps."""
    trend: dict[str, list[dict]] = {}
    for name, _, spec in runs:
        if name in trend or not (spec.path / LOG).is_file():
            continue
        try:
            log = read_log(spec.path)
        except SfscError:  # no finished step yet
            continue
        entries = []
        for epoch, val in log.val:
            passed, total = rule_counts(val)
            entries.append(
                {
                    "epoch": epoch + 1,
                    "M_q_1": {f"{q:g}": val.get(f"mAP/{q:g}->1") for q in WIDTHS},
                    "rule_pairs": passed,
                    "rule_total": total,
                }
            )
        if entries:
            trend[name] = entries
    return trend


def plot_validation_trend(trend: dict[str, list[dict]], path: Path) -> None:
    """M(φ_q, φ_1.0) on the validation ids per epoch: one panel per query width, one line per method."""
    fig = new_figure(3.2 * len(WIDTHS), 3.4)
    axes = fig.subplots(1, len(WIDTHS), sharey=True)
    for ax, q in zip(axes, WIDTHS, strict=True):
        for name, entries in trend.items():
            points = [(e["epoch"], e["M_q_1"][f"{q:g}"]) for e in entries if e["M_q_1"][f"{q:g}"] is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=METHODS[name][0].split(" (")[0])
        ax.set_title(f"M(φ {q:g}, φ 1.0), validation ids", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mAP (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def _text(cell: dict) -> str:
    return f"{cell['mean']:.1f} ± {cell['std']:.1f}" if cell["n"] > 1 else f"{cell['mean']:.1f}"


def plot_summary(summary: dict, path: Path) -> None:
    fig = new_figure(11, 4)
    ax_cross, ax_diag = fig.subplots(1, 2, sharey=True)
    for name, s in summary.items():
        for ax, key in ((ax_cross, "{q:g}->1"), (ax_diag, "{q:g}->{q:g}")):
            cells = [s["mAP"][key.format(q=q)] for q in WIDTHS]
            ax.errorbar(
                WIDTHS,
                [c["mean"] for c in cells],
                yerr=[c["std"] for c in cells],
                marker="o",
                capsize=3,
                label=f"{name} ({len(s['seeds'])} seed{'s' if len(s['seeds']) > 1 else ''})",
            )
    ax_cross.set_title("M(φ_q, φ_1.0): query width q vs the full gallery")
    ax_diag.set_title("M(φ_q, φ_q): each width's own gallery")
    for ax in (ax_cross, ax_diag):
        ax.set_xlabel("query width q")
        ax.set_xticks(WIDTHS)
        ax.grid(alpha=0.3)
    ax_cross.set_ylabel("mAP (%), mean ± std over seeds")
    ax_diag.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_png(fig, path)


def plot_logs(runs: list[tuple[str, int, RunSpec]], out: Path) -> dict[str, TrainLog]:
    """Fig. 5 (gradient norm per task), u per width and Fig. 6 (conflicts) from the first seed's logs."""
    first: dict[str, TrainLog] = {}
    for name, _, spec in runs:
        if name not in first and spec.finished() and name in ("bct-s", "sfsc", "sfsc+sum", "sfsc-pinned"):
            first[name] = read_log(spec.path)
    if not first:
        return first
    plot_comparison(first, "grad_norm", "‖g_i‖ per task", f"{out}_grad_norms.png", logy=True)
    with_u = {n: log for n, log in first.items() if log.per_width("uncertainty")}
    if with_u:
        plot_comparison(with_u, "uncertainty", "u = C / S", f"{out}_uncertainty.png")
    plot_cumulative_conflicts(first, f"{out}_conflicts.png")
    return first


def grad_norm_balance(log: TrainLog) -> list[float]:
    """Per epoch: mean ‖g‖ of the narrowest task over the widest narrow task (1 = balanced)."""
    norms = log.per_width("grad_norm")
    narrow = [w for w in norms if w < 1.0]
    if len(narrow) < 2:
        return []
    ratio = norms[min(narrow)] / norms[max(narrow)]
    return [float(v) for v in log.epoch_mean(np.asarray(ratio))]


if __name__ == "__main__":
    main()
