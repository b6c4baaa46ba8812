"""onnxruntime vs OpenVINO on this CPU: the same exported models, 1 thread, side by side.

Per width (0.25 / 0.5 / 0.75 / 1.0) and precision (fp32, int8 Q/DQ) the ONNX model is made as
``export`` makes it (``to_onnx``; ``quantize_int8`` calibrated on ``--data``'s training images) and
converted to OpenVINO IR with ``exporters.openvino_runtime.to_openvino``, so both runtimes run the
very same graph. Latency at batch 1 and one larger batch is timed round-robin (``interleaved``:
machine noise hits both runtimes alike), each runtime with one thread (onnxruntime intra-op 1;
OpenVINO ``INFERENCE_NUM_THREADS`` 1, ``LATENCY`` hint, f32 inference precision). Reported: median
latency with its interquartile range, the OpenVINO / onnxruntime ratio of medians, and the feature
parity of the two runtimes (to each other and to PyTorch) on held-out images.

The model: ``--checkpoint CK``, or by default a quick SFSC run on the built-in synthetic data
(ResNet-18, base width 32, 128×64, D = 256, W = {0.25, 0.5, 0.75, 1.0}) trained under ``--work``.
Training, the ONNX models and finished timing rows are kept under ``--work`` and reused when run again with
the same checkpoint and settings (``--fresh`` retimes), so an interrupted run resumes. **Time it
alone**: other processes on the machine skew latency (the 1-minute load average at the start is
recorded, and a warning printed when it is above 0.5). Needs ``pip install "sfsc-deploy[openvino]"``.

    python -m benchmarks.runtimes_cpu [--checkpoint CK] [--batches 1,8] [--rounds 15]

Writes ``runtimes_cpu.{json,md,png}`` into ``--results`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
from functools import partial
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import (
    RESULTS,
    ROOT,
    interleaved,
    provenance,
    provenance_md,
    train_resumable,
    write_results,
)
from exporters.files import file_sha256, json_text, write_text
from exporters.graph import DeployGraph, graph_inputs
from exporters.onnx_export import save_onnx, to_onnx
from exporters.openvino_runtime import OvModel, cpu_has_vnni, require_openvino, to_openvino
from exporters.ort_runtime import OrtModel
from exporters.parity import compare
from exporters.quantize import quantize_int8
from sfsc_deploy.data import load_dataset
from sfsc_deploy.deploy.export import default_images
from sfsc_deploy.io.figures import new_figure, save_png
from sfsc_deploy.models import ArchOptions, checkpoint
from sfsc_deploy.retrieval.extractors import TorchExtractor
from sfsc_deploy.train import TrainConfig

NAME = "runtimes_cpu"
WIDTHS = (0.25, 0.5, 0.75, 1.0)
PRECISIONS = ("fp32", "int8")
RUNTIMES = ("onnxruntime", "openvino")
QUICK_OPTIONS = ArchOptions(width_mult=0.5, input_size=(128, 64))


def quick_checkpoint(work: Path, epochs: int) -> Path:
    """The default model: a short SFSC run on the synthetic data, trained once and then reused."""
    run = work / f"synthetic-sfsc-e{epochs}"
    cfg = TrainConfig(method="sfsc", epochs=epochs, lr=1e-3, batch_ids=8, batch_k=4)
    train_resumable(load_dataset("synthetic"), cfg, run, QUICK_OPTIONS)
    return run / "checkpoint.safetensors"


def build_models(ck: Path, work: Path, widths: list[float], calibration: torch.Tensor) -> dict:
    """{(width, precision): (onnx path, xml path)}: each width's fp32 ONNX and its int8 Q/DQ model,
    made as ``export`` makes them (``to_onnx``, ``quantize_int8`` on the calibration images) but
    without its parity gate, which a quickly trained model's int8 may miss: parity is reported
    below instead. ONNX files are kept (and reused) under ``--work``; each is converted to IR anew."""
    net = checkpoint.load(ck)
    opts = net.config.options
    folder = work / f"models-{file_sha256(ck)[:12]}-c{len(calibration)}"
    calib = graph_inputs(calibration, opts.mean, opts.std, bake_preprocess=False).numpy()
    models = {}
    for width in widths:
        reference = TorchExtractor(net, width)
        stem = folder / f"w{width:g}"
        fp32_path, int8_path = (
            stem.with_name(f"{stem.name}_fp32.onnx"),
            stem.with_name(f"{stem.name}_int8.onnx"),
        )
        if not fp32_path.exists() or not int8_path.exists():
            graph = DeployGraph(reference.graph.model, opts.mean, opts.std)
            fp32 = to_onnx(graph, tuple(opts.input_size), reference.info.metadata())
            int8 = quantize_int8(fp32, calib).model
            save_onnx(int8, int8_path)
            save_onnx(fp32, fp32_path)
        for precision, onnx_path in (("fp32", fp32_path), ("int8", int8_path)):
            xml = folder / "ir" / onnx_path.with_suffix(".xml").name
            to_openvino(onnx_path, xml)  # a second or so: always from the ONNX file in use
            models[(width, precision)] = (onnx_path, xml)
    return models


def stats(samples: list[float]) -> dict:
    q25, q50, q75 = np.percentile(samples, [25, 50, 75])
    return {"median_ms": float(q50), "q25_ms": float(q25), "q75_ms": float(q75), "n": len(samples)}


def parity_rows(ck: Path, models: dict, images: torch.Tensor) -> list[dict]:
    """Features of the same images from PyTorch, onnxruntime and OpenVINO."""
    net = checkpoint.load(ck)
    opts = net.config.options
    x = graph_inputs(images, opts.mean, opts.std, bake_preprocess=False).numpy()
    rows = []
    for (width, precision), (onnx_path, xml) in sorted(models.items()):
        reference = TorchExtractor(net, width).features(images)
        ort, ov = OrtModel(onnx_path, threads=1)(x), OvModel(xml, threads=1)(x)
        between = compare(ort, ov, precision)
        rows.append(
            {
                "width": width,
                "precision": precision,
                "images": len(images),
                "ov_vs_ort_max_abs": between.max_abs,
                "ov_vs_ort_min_cosine": between.min_cosine,
                "ov_vs_ort_mean_cosine": between.mean_cosine,
                **{
                    f"{name}_vs_pytorch": {
                        "min_cosine": p.min_cosine,
                        "mean_cosine": p.mean_cosine,
                        "max_abs": p.max_abs,
                        "passed": p.passed,
                    }
                    for name, p in (
                        ("ort", compare(reference, ort, precision)),
                        ("ov", compare(reference, ov, precision)),
                    )
                },
            }
        )
    return rows


def shown(s: dict) -> str:
    return f"{s['median_ms']:.3f} ({s['q25_ms']:.3f}–{s['q75_ms']:.3f})"


def settings_of(ov: OvModel) -> dict:
    props = {}
    for key in (
        "INFERENCE_NUM_THREADS",
        "NUM_STREAMS",
        "PERFORMANCE_HINT",
        "INFERENCE_PRECISION_HINT",
        "ENABLE_CPU_PINNING",
    ):
        try:
            props[key] = str(ov.compiled.get_property(key))
        except Exception:  # a property this OpenVINO version does not have
            props[key] = None
    return props


def main() -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a trained checkpoint (default: a quick synthetic SFSC run)")
    parser.add_argument("--data", default="synthetic", help="images for calibration and parity")
    parser.add_argument("--format", default=None, help="--data's layout (e.g. market1501-heldout)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the default quick run")
    parser.add_argument("--widths", default=",".join(f"{w:g}" for w in WIDTHS))
    parser.add_argument("--batches", default="1,8", help="batch 1 and one larger batch")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per configuration")
    parser.add_argument("--iters", type=int, default=10, help="calls per runtime per round at batch 1")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--parity-images", type=int, default=64)
    parser.add_argument("--work", default=str(ROOT / ".bench" / NAME), help="training, models, rows")
    parser.add_argument("--results", default=str(RESULTS), help=f"folder for {NAME}.{{json,md,png}}")
    parser.add_argument("--fresh", action="store_true", help="retime every row, ignoring kept ones")
    args = parser.parse_args()
    ov_module = require_openvino("run this benchmark")
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: 1-minute load average {load:.2f}: other processes will skew these timings")
    work = Path(args.work)
    ck = Path(args.checkpoint) if args.checkpoint else quick_checkpoint(work, args.epochs)
    widths = [float(w) for w in args.widths.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    size = checkpoint.read_config(ck).options.input_size
    splits = load_dataset(args.data, args.format)
    images = default_images(splits, size, args.calibration_images, args.parity_images)
    models = build_models(ck, work, widths, images.calibration)
    parity = parity_rows(ck, models, images.parity)

    # timing rows, kept per configuration so that an interrupted run resumes
    key_of = "b{}-w{:g}-{}".format
    timing = {
        "checkpoint_sha256": file_sha256(ck),
        "rounds": args.rounds,
        "iters": args.iters,
        "warmup": args.warmup,
    }
    kept_path = work / f"{NAME}-rows.json"
    kept = json.loads(kept_path.read_text()) if kept_path.exists() and not args.fresh else {}
    if kept.get("timing") != timing:
        kept = {"timing": timing, "rows": {}}
    rng = np.random.default_rng(0)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    configs = [(b, w, p) for b in batches for w in widths for p in PRECISIONS]
    with Progress(*columns) as bar:
        task = bar.add_task("timing", total=len(configs))
        for batch, width, precision in configs:
            key = key_of(batch, width, precision)
            bar.update(task, description=f"batch {batch} width {width:g} {precision}")
            if key not in kept["rows"]:
                onnx_path, xml = models[(width, precision)]
                ort, ov = OrtModel(onnx_path, threads=1), OvModel(xml, threads=1)
                x = rng.standard_normal((batch, 3, *size), dtype=np.float32)
                iters = max(1, args.iters // batch)
                samples = interleaved(
                    {"onnxruntime": partial(ort, x), "openvino": partial(ov, x)},
                    args.rounds,
                    iters,
                    args.warmup,
                )
                runtimes = {name: stats(s) for name, s in samples.items()}
                kept["rows"][key] = {
                    "batch": batch,
                    "width": width,
                    "precision": precision,
                    **runtimes,
                    "ov_over_ort": runtimes["openvino"]["median_ms"] / runtimes["onnxruntime"]["median_ms"],
                    "openvino_settings": settings_of(ov),
                    "onnxruntime_provider": ort.providers[0],
                    "openvino_device": ov.providers[0],
                }
                write_text(kept_path, json_text(kept))
            bar.advance(task)
    rows = [kept["rows"][key_of(*c)] for c in configs]

    import onnxruntime

    record = {
        "provenance": provenance(),
        "onnxruntime": onnxruntime.__version__,
        "openvino": ov_module.get_version(),
        "cpu_has_vnni": cpu_has_vnni(),
        "load_average_1min_at_start": load,
        "checkpoint": str(ck),
        "checkpoint_sha256": timing["checkpoint_sha256"],
        "input_size": list(size),
        "threads": 1,
        "timing": timing,
        "rows": rows,
        "parity": parity,
    }
    md = [
        "# onnxruntime vs OpenVINO on this CPU (1 thread, same exported models)",
        "",
        provenance_md(record["provenance"]),
        f"onnxruntime {record['onnxruntime']}, OpenVINO {record['openvino']}; CPU VNNI: "
        f"{ {True: 'yes', False: 'no', None: 'unknown'}[record['cpu_has_vnni']] }; "
        f"load average at start {load:.2f}.",
        "",
        f"Model `{ck}` (sha256 {timing['checkpoint_sha256'][:12]}), {size[0]}×{size[1]} input. Each ONNX "
        "model (fp32; int8 Q/DQ as `export` makes it) converted to IR, so both runtimes run the same graph. "
        f"Median latency (interquartile range) of {args.rounds} interleaved rounds; ratio = OpenVINO / "
        "onnxruntime medians (below 1: OpenVINO faster).",
        "",
        "| batch | width | precision | onnxruntime ms | OpenVINO ms | OV / ORT |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        ort, ov = (shown(r[name]) for name in RUNTIMES)
        md.append(
            f"| {r['batch']} | {r['width']:g} | {r['precision']} | {ort} | {ov} | {r['ov_over_ort']:.2f} |"
        )
    md += [
        "",
        f"Feature parity on {args.parity_images} held-out {splits.name} images (OV = OpenVINO, ORT = "
        "onnxruntime; 'pass' against PyTorch with the tier precision's tolerance):",
        "",
        "| width | precision | OV vs ORT max abs | OV vs ORT min cos | ORT vs PyTorch min cos | "
        "OV vs PyTorch min cos |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for p in parity:
        ort_p, ov_p = p["ort_vs_pytorch"], p["ov_vs_pytorch"]
        verdict = {True: "pass", False: "FAIL"}
        md.append(
            f"| {p['width']:g} | {p['precision']} | {p['ov_vs_ort_max_abs']:.2e} "
            f"| {p['ov_vs_ort_min_cosine']:.6f} | {ort_p['min_cosine']:.6f} ({verdict[ort_p['passed']]}) "
            f"| {ov_p['min_cosine']:.6f} ({verdict[ov_p['passed']]}) |"
        )
    results = Path(args.results)
    fig = new_figure(4.5 * len(batches), 3.6)
    for i, batch in enumerate(batches):
        ax = fig.add_subplot(1, len(batches), i + 1)
        for runtime in RUNTIMES:
            for precision, style in zip(PRECISIONS, ("-", "--"), strict=True):
                pts = [r for r in rows if r["batch"] == batch and r["precision"] == precision]
                med = [r[runtime]["median_ms"] for r in pts]
                err = [
                    [m - r[runtime]["q25_ms"] for m, r in zip(med, pts, strict=True)],
                    [r[runtime]["q75_ms"] - m for m, r in zip(med, pts, strict=True)],
                ]
                ax.errorbar(
                    [r["width"] for r in pts],
                    med,
                    yerr=err,
                    fmt="o" + style,
                    capsize=3,
                    label=f"{runtime} {precision}",
                )
        ax.set_xlabel("width")
        ax.set_ylabel("median ms (IQR)")
        ax.set_title(f"batch {batch}, 1 thread")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, results / f"{NAME}.png")
    write_results(results / NAME, record, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
