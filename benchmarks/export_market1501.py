"""Every tier of examples/tiers.toml exported from a Market-1501-trained model, and verified.

For each tier: the export's parity against PyTorch (on training images), then `verify` of the
artifact's queries against the full model's gallery (market1501-heldout test identities): the
artifact's mAP / R1 next to its PyTorch reference's, top-1 agreement, pass/fail. For every int8
tier also its whole row of the compatibility matrix, M(φ_q int8, φ_g) against the gallery of every
trained width g, next to its fp32 self M(φ_q, φ_g), held to INT8_MAP_TOLERANCE mAP points.

    python -m benchmarks.export_market1501 [--checkpoint CK]

The default checkpoint is the SFSC run of ``benchmarks/compat_market1501.py``.

Writes ``benchmarks/results/export_market1501.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks._common import MARKET, RESULTS, ROOT, provenance, provenance_md, write_results
from exporters.files import (
    file_sha256,
)
from exporters.parity import TOLERANCES
from sfsc_deploy.data import load_dataset
from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.deploy.export import (
    default_images,
    export_tiers,
)
from sfsc_deploy.deploy.tiers import load_tiers
from sfsc_deploy.evaluation.metrics import evaluate
from sfsc_deploy.io.figures import new_figure, save_png
from sfsc_deploy.models import checkpoint
from sfsc_deploy.retrieval.extractors import (
    TorchExtractor,
    open_extractor,
)
from sfsc_deploy.retrieval.gallery import extract_gallery
from sfsc_deploy.retrieval.verify import verify

DEFAULT_CK = ROOT / ".bench/compat_market1501/e12/sfsc-s0/checkpoint.safetensors"
INT8_MAP_TOLERANCE = TOLERANCES["int8"].max_map_drop  # the one tolerance table


def plot(rows: list[dict], path: Path) -> None:
    names = [f"{r['tier']}\n{r['width']:g} {r['precision']}" for r in rows]
    x = np.arange(len(rows))
    fig = new_figure(7, 3.6)
    ax = fig.subplots()
    ax.bar(x - 0.2, [r["reference_mAP"] for r in rows], 0.4, label="PyTorch reference")
    ax.bar(x + 0.2, [r["artifact_mAP"] for r in rows], 0.4, label="exported artifact")
    ax.set_xticks(x, names)
    ax.set_ylabel("mAP vs full-model gallery (%)")
    ax.set_title("M(φ_tier, φ_1.0): exported vs reference")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_png(fig, path)


def drop(row: dict, metric: str) -> str:
    """A paired drop as the table shows it: points lost, its 95% interval, McNemar's p for rank-1."""
    d = next(p for p in row["paired"] if p["metric"] == metric)
    text = f"{d['drop']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"
    return text + (f", p {d['p_value']:.2f}" if d["p_value"] is not None else "")


def shown(path: str) -> str:
    """A path as the reader's checkout names it."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def matrix_row(extractor, reference, queries, bank, galleries, widths, ck) -> list[dict]:
    """M(φ_q int8, φ_g) and M(φ_q fp32, φ_g) for every trained gallery width g."""
    qi = extractor.features(queries.images, progress=True, description="int8 queries")
    qf = reference.features(queries.images, progress=True, description="fp32 queries")
    rows = []
    for g in widths:
        if g not in galleries:
            galleries[g] = TorchExtractor.from_checkpoint(ck, g).features(
                bank.images, progress=True, description=f"gallery {g:g}"
            )
        args = (galleries[g], queries.pids, bank.pids, queries.camids, bank.camids)
        got, want = evaluate(qi, *args), evaluate(qf, *args)
        rows.append(
            {
                "file": Path(extractor.info.source).name,
                "query_width": extractor.info.width,
                "gallery_width": g,
                "fp32_mAP": want.mAP,
                "int8_mAP": got.mAP,
                "fp32_R1": want.rank1,
                "int8_R1": got.rank1,
                "within_tolerance": abs(got.mAP - want.mAP) <= INT8_MAP_TOLERANCE,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CK))
    parser.add_argument("--data", default=str(MARKET))
    parser.add_argument("--format", default="market1501-heldout")
    parser.add_argument("--tiers", default=str(ROOT / "examples" / "tiers.toml"))
    parser.add_argument("--out", default=str(RESULTS / "export_market1501"))
    args = parser.parse_args()
    splits = load_dataset(args.data, args.format)
    full = TorchExtractor.from_checkpoint(args.checkpoint, 1.0)
    size = full.info.input_size
    images = default_images(splits, size, calibration=256, parity=128)
    with tempfile.TemporaryDirectory(prefix="sfsc-export-bench-") as tmp:
        manifest = export_tiers(args.checkpoint, load_tiers(args.tiers), Path(tmp) / "deploy", images)
        gallery = extract_gallery(full, splits, "gallery", progress=True)
        bank = build_bank(splits.gallery, size, split="gallery")
        queries = build_bank(splits.query, size, split="query")
        trained = checkpoint.load(args.checkpoint).widths
        galleries = {1.0: gallery.features}
        rows, int8_rows = [], []
        for artifact in manifest.artifacts:
            extractor = open_extractor(Path(tmp) / "deploy" / artifact.file)
            reference = TorchExtractor.from_checkpoint(
                args.checkpoint, extractor.info.width, normalize=extractor.info.normalized
            )
            report = verify(extractor, gallery, queries, reference, progress=True)
            rows.append(
                {
                    "tier": artifact.tier,
                    "width": artifact.width,
                    "precision": artifact.precision,
                    "file": artifact.file,
                    "bytes": artifact.bytes,
                    "parity_min_cos": artifact.parity.min_cosine,
                    "parity_mean_cos": artifact.parity.mean_cosine,
                    "parity_max_abs": artifact.parity.max_abs,
                    "query_min_cos": report.parity.min_cosine,
                    "reference_mAP": report.reference_metrics.mAP,
                    "artifact_mAP": report.artifact_metrics.mAP,
                    "reference_R1": report.reference_metrics.rank1,
                    "artifact_R1": report.artifact_metrics.rank1,
                    "top1_agreement": report.top1_agreement,
                    "verify": report.verdict,
                    "paired": [asdict(d) for d in report.paired],
                    "checks": [vars(c) for c in report.checks],
                }
            )
            if artifact.precision == "int8":
                int8_rows += matrix_row(
                    extractor, reference, queries, bank, galleries, trained, args.checkpoint
                )
    record = {
        "provenance": provenance(),
        "checkpoint": args.checkpoint,
        "checkpoint_sha256": file_sha256(args.checkpoint),
        "dataset": splits.name,
        "num_query": len(queries),
        "num_gallery": len(gallery),
        "tiers_file": args.tiers,
        "tiers": rows,
        "int8_matrix_rows": int8_rows,
        "int8_map_tolerance": INT8_MAP_TOLERANCE,
    }
    md = [
        f"# Export and verification per tier on {splits.name}",
        "",
        provenance_md(record["provenance"]),
        f"Model: `{shown(args.checkpoint)}` (sha256 {record['checkpoint_sha256'][:12]}), "
        f"tiers `{shown(args.tiers)}`. "
        f"Gallery: the full model (PyTorch) on {len(gallery)} gallery images; {len(queries)} queries. "
        "Parity: 128 training images; int8 calibrated on 256 other training images. Verify: the "
        "artifact's queries vs its PyTorch reference's over the same queries — a drop is a FAIL only "
        "when it exceeds the precision's tolerance with 95% confidence (paired bootstrap, one-sided); "
        "McNemar's exact p for the rank-1 flips.",
        "",
        "| tier | width | precision | size | parity min / mean cos | parity max abs | query min cos "
        "| mAP ref → artifact | mAP drop [95% CI] | R1 ref → artifact | R1 drop [95% CI], McNemar p "
        "| top-1 agreement | verify |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['tier']} | {r['width']:g} | {r['precision']} | {r['bytes'] / 1e6:.2f} MB "
            f"| {r['parity_min_cos']:.5f} / {r['parity_mean_cos']:.5f} | {r['parity_max_abs']:.1e} "
            f"| {r['query_min_cos']:.5f} | {r['reference_mAP']:.2f} → {r['artifact_mAP']:.2f} "
            f"| {drop(r, 'mAP')} | {r['reference_R1']:.2f} → {r['artifact_R1']:.2f} | {drop(r, 'rank-1')} "
            f"| {r['top1_agreement']:.4f} | {r['verify']} |"
        )
    if int8_rows:
        md += [
            "",
            f"## int8 tiers: their row of the compatibility matrix (tolerance ±{INT8_MAP_TOLERANCE} mAP)",
            "",
            "M(φ_q, φ_g): queries from the int8 artifact of width q against the PyTorch gallery of "
            "every trained width g, next to the same width's fp32 PyTorch queries.",
            "",
            "| query | gallery φ_g | mAP fp32 | mAP int8 | Δ | R1 fp32 | R1 int8 | within tolerance |",
            "|---|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for r in int8_rows:
            md.append(
                f"| {r['file']} | {r['gallery_width']:g} | {r['fp32_mAP']:.2f} | {r['int8_mAP']:.2f} "
                f"| {r['int8_mAP'] - r['fp32_mAP']:+.2f} | {r['fp32_R1']:.2f} | {r['int8_R1']:.2f} "
                f"| {'yes' if r['within_tolerance'] else 'NO'} |"
            )
    stem = Path(args.out)
    write_results(stem, record, md)
    plot(rows, stem.with_suffix(".png"))
    print("\n".join(md))


if __name__ == "__main__":
    main()
