"""The whole pipeline on the built-in synthetic data: train, evaluate, export, benchmark, verify.

What a newcomer runs first. Every step is a library call a user can make; the demo only chooses
small settings and writes one report that links everything it produced.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from exporters.files import json_text, write_text
from sfsc_deploy.errors import SfscError

DEFAULT_OUT = Path("sfsc-demo")


@dataclass(frozen=True)
class DemoConfig:
    out_dir: Path = DEFAULT_OUT
    quick: bool = False  # tiny model and data: a smoke run for CI (~1 minute)
    seed: int = 0
    force: bool = False

    @property
    def sizes(self) -> dict:
        if self.quick:
            return dict(
                ids=(24, 16),  # 64 queries: enough for verify's paired test (≥ 50)
                ipc=2,
                width_mult=0.25,
                input_size=(64, 32),
                dim=64,
                epochs=4,
                divisor=4,
                iters=5,
                batches=(1, 8),
            )
        return dict(
            ids=(100, 50),
            ipc=3,
            width_mult=0.5,
            input_size=(128, 64),
            dim=128,
            epochs=12,
            divisor=8,
            iters=30,
            batches=(1, 8),
        )


def run_demo(cfg: DemoConfig, console: Console | None = None) -> Path:
    """Run every step into ``cfg.out_dir`` and return the path of its report.md."""
    from sfsc_deploy.data import load_dataset
    from sfsc_deploy.data.bank import build_bank
    from sfsc_deploy.data.synthetic import SyntheticConfig
    from sfsc_deploy.deploy.export import default_images, export_tiers
    from sfsc_deploy.deploy.settings import CALIBRATION_IMAGES, PARITY_IMAGES
    from sfsc_deploy.deploy.tiers import DEFAULT_TIERS
    from sfsc_deploy.evaluation.report import matrix_markdown
    from sfsc_deploy.evaluation.runs import evaluate_run
    from sfsc_deploy.models import ArchOptions
    from sfsc_deploy.perf.bench import artifact_target
    from sfsc_deploy.perf.report import bench_report
    from sfsc_deploy.perf.results import BenchSettings, results_markdown
    from sfsc_deploy.retrieval.extractors import TorchExtractor, open_extractor
    from sfsc_deploy.retrieval.gallery import extract_gallery, save_gallery
    from sfsc_deploy.retrieval.verify import verify
    from sfsc_deploy.train import TrainConfig, train

    console = console or Console(stderr=True)
    out = Path(cfg.out_dir)
    if out.exists() and any(out.iterdir()):
        if not cfg.force:
            raise SfscError(f"{out} is not empty; pass --force to replace it or choose another --out")
        shutil.rmtree(out)
    s = cfg.sizes
    synthetic = SyntheticConfig(
        seed=cfg.seed, num_train_ids=s["ids"][0], num_test_ids=s["ids"][1], images_per_id_per_camera=s["ipc"]
    )
    splits = load_dataset("synthetic", synthetic=synthetic)
    options = ArchOptions(width_mult=s["width_mult"], input_size=s["input_size"], divisor=s["divisor"])

    console.rule("1/6 train SFSC (resnet18, widths 0.25 / 0.5 / 0.75 / 1.0)")
    tcfg = TrainConfig(method="sfsc", epochs=s["epochs"], lr=1e-3, batch_ids=8, batch_k=4, seed=cfg.seed)
    run = train(splits, "resnet18", "0.25,0.5,0.75", tcfg, out / "run", feature_dim=s["dim"], options=options)
    ck = out / "run" / "checkpoint.safetensors"

    console.rule("2/6 compatibility matrix M(φ_q, φ_g)")
    matrix = evaluate_run(out / "run", splits, out / "eval")

    console.rule("3/6 export the default tiers to ONNX (camera: int8)")
    # the quick demo's data is smaller than the default calibration + parity sets: calibrate on the rest
    calibration = min(CALIBRATION_IMAGES, len(splits.train) - PARITY_IMAGES)
    images = default_images(splits, options.input_size, calibration, PARITY_IMAGES)
    manifest = export_tiers(ck, list(DEFAULT_TIERS), out / "deploy", images)
    files = manifest.files(out / "deploy")

    console.rule("4/6 benchmark every tier (onnxruntime, 1 thread)")
    settings = BenchSettings(batches=s["batches"], threads=(1,), warmup=3, iters=s["iters"])
    bench = bench_report([artifact_target(f) for f in files], settings, out / "bench", matrix=matrix)

    console.rule("5/6 index the gallery with the full model")
    gallery = extract_gallery(TorchExtractor.from_checkpoint(ck, 1.0), splits, "gallery", progress=True)
    save_gallery(gallery, out / "gallery.npz")

    console.rule("6/6 verify every exported tier against the gallery")
    queries = build_bank(splits.query, options.input_size, split="query")
    reports = []
    for f in files:
        artifact = open_extractor(f)
        reference = TorchExtractor.from_checkpoint(
            ck, artifact.info.width, normalize=artifact.info.normalized
        )
        rep = verify(artifact, gallery, queries, reference, progress=True)
        console.print(f"{f.name}: {rep.verdict.upper()} — " + "; ".join(p.describe() for p in rep.paired))
        reports.append((f.name, rep))
    for name, rep in reports:
        write_text(
            out / "verify" / f"{Path(name).stem}.json",
            json_text(rep.to_dict()),
        )

    lines = [
        "# sfsc-deploy demo report",
        "",
        f"Data: built-in synthetic ({len(splits.train)} training images of {splits.num_classes} ids; "
        f"{len(queries)} queries, {len(gallery)} gallery images). Model: switchable resnet18, base-width "
        f"multiplier {s['width_mult']}, {s['input_size'][0]}×{s['input_size'][1]} input, D = {s['dim']}, "
        f"SFSC ({tcfg.kl} KL, {tcfg.aggregation}), {s['epochs']} epochs"
        + (" (--quick)." if cfg.quick else "."),
        "",
        "## Compatibility matrix (mAP / R1, %)",
        "",
        matrix_markdown(matrix),
        "",
        f"Compatibility rule on every pair: {'pass' if matrix.all_pass() else 'FAIL on some pairs'}.",
        "",
        "## Exported tiers and latency",
        "",
        results_markdown(bench.results),
        "",
        "![latency vs width](bench/latency_vs_width.png)",
        "",
        "![accuracy vs latency](bench/accuracy_vs_latency.png)",
        "",
        "## Verification against the full model's gallery",
        "",
        "| artifact | precision | mAP reference → artifact | top-1 agreement | min cos "
        "| rank-1 (paired, 95%) | result |",
        "|---|---|---:|---:|---:|---|:---:|",
    ]
    for name, rep in reports:
        lines.append(
            f"| {name} | {rep.artifact.precision} | {rep.reference_metrics.mAP:.2f} → "
            f"{rep.artifact_metrics.mAP:.2f} | {rep.top1_agreement:.3f} | "
            f"{rep.parity.min_cosine:.5f} | {rep.paired[1].describe()} | {rep.verdict} |"
        )
    lines += [
        "",
        "## Files",
        "",
        "- `run/`: checkpoint, training log, networks.json",
        "- `eval/compat_matrix.{json,md,png}`",
        "- `deploy/`: ONNX per tier + manifest.json",
        "- `bench/`: bench.json and the two plots",
        "- `gallery.npz`: full-model gallery features",
        "- `verify/`: one JSON report per tier",
    ]
    report = write_text(out / "report.md", "\n".join(lines) + "\n")
    console.rule("done")
    console.print(f"report: {report}\nmodels: {out / 'deploy'}  (trained {len(run.networks)} widths)")
    return report
