"""SFSC's KL term: the paper's (on α) vs Sensoy et al.'s (on α̃, annealed), on a validation split.

method.md §3 predicts that the paper's KL caps the true-class evidence (α_y ≈ 5 for C = 500)
and keeps the uncertainty near 1, while the sensoy variant has no ceiling. This measures both
on identities carved out of the *training* ids (``--val-ids``), never the test ids.

    python benchmarks/kl_variants.py [--epochs 12] [--val-ids 100]

Writes ``benchmarks/results/kl_variants.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import provenance, provenance_md, train_resumable, write_results  # noqa: E402
from sfsc_deploy import checkpoint  # noqa: E402
from sfsc_deploy.data import load_dataset  # noqa: E402
from sfsc_deploy.models import ArchOptions  # noqa: E402
from sfsc_deploy.train import TrainConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MARKET = ROOT.parent / "shared" / "datasets" / "market1501"


def last_uncertainty(log: Path) -> dict[str, float]:
    steps = [json.loads(line) for line in log.read_text().splitlines() if '"uncertainty/' in line]
    return {k: round(v, 4) for k, v in steps[-1].items() if k.startswith("uncertainty/")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MARKET))
    parser.add_argument("--format", default="market1501-heldout")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--val-ids", type=int, default=100)
    parser.add_argument("--width-mult", type=float, default=0.5)
    parser.add_argument("--input-size", default="128x64")
    parser.add_argument("--work", default=str(ROOT / ".bench" / "kl_variants"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "kl_variants"))
    args = parser.parse_args()
    splits = load_dataset(args.data, None if args.data == "synthetic" else args.format)
    size = tuple(int(v) for v in args.input_size.split("x"))
    options = ArchOptions(width_mult=args.width_mult, input_size=size)
    record = {
        "provenance": provenance(),
        "dataset": splits.name,
        "val_ids": args.val_ids,
        "epochs": args.epochs,
        "variants": {},
    }
    for variant in ("paper", "sensoy"):
        run_dir = Path(args.work) / variant
        # λ 0.2: the paper's, and the default when this comparison was made
        cfg = TrainConfig(method="sfsc", kl=variant, kl_weight=0.2, epochs=args.epochs, val_ids=args.val_ids)
        train_resumable(splits, cfg, run_dir, options)
        header = checkpoint.read_header(run_dir / "checkpoint.safetensors")
        record["variants"][variant] = {
            "val": header["extra"]["training"]["val"],
            "final_uncertainty": last_uncertainty(run_dir / "train_log.jsonl"),
        }
    keys = sorted(record["variants"]["paper"]["val"])
    md = [
        "# SFSC KL variant on the validation split (training identities)",
        "",
        provenance_md(record["provenance"]),
        "",
        "| val mAP | paper | sensoy |",
        "|---|---:|---:|",
    ]
    md += [
        f"| {k} | {record['variants']['paper']['val'][k]} | {record['variants']['sensoy']['val'][k]} |"
        for k in keys
    ]
    md += ["", "| final uncertainty u = C/S | paper | sensoy |", "|---|---:|---:|"]
    for k in sorted(record["variants"]["paper"]["final_uncertainty"]):
        md.append(
            f"| {k} | {record['variants']['paper']['final_uncertainty'][k]} | "
            f"{record['variants']['sensoy']['final_uncertainty'].get(k)} |"
        )
    write_results(Path(args.out), record, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
