"""Does slicing buy real speed? ORT CPU latency ratio vs MAC ratio per width, 1 thread.

Targets: latency(γ)/latency(1.0) within 1.25× of MACs(γ)/MACs(1.0) for γ ≥ 0.5, within 1.5× at 0.25.
Full-size models (base width 64, 256×128 input, D = 512); widths timed round-robin in one process.

    python -m benchmarks.width_scaling [--rounds 15]

Writes ``benchmarks/results/width_scaling.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, interleaved, median, provenance, provenance_md, write_results
from exporters.graph import DeployGraph
from exporters.onnx_export import save_onnx, to_onnx
from exporters.ort_runtime import OrtModel
from sfsc_deploy.io.figures import new_figure, save_png
from sfsc_deploy.models import build
from sfsc_deploy.models.slicing import slice_model
from sfsc_deploy.perf.complexity import count_macs

WIDTHS = [0.25, 0.5, 0.75, 1.0]
SIZE = (256, 128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="resnet18,mobilenet_v2")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=str(RESULTS / "width_scaling"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            net = build(arch, WIDTHS, feature_dim=512, num_classes=751, input_size=SIZE).eval()
            models, macs = {}, {}
            for w in WIDTHS:
                twin = slice_model(net, w)
                macs[w] = count_macs(twin, SIZE)
                path = save_onnx(
                    to_onnx(DeployGraph(twin, (0.5,) * 3, (0.5,) * 3), SIZE, {}),
                    Path(tmp) / f"{arch}_{w}.onnx",
                )
                models[w] = OrtModel(path, threads=1)
            for batch in (int(b) for b in args.batches.split(",")):
                x = np.random.default_rng(0).standard_normal((batch, 3, *SIZE), dtype=np.float32)
                iters = 10 if batch == 1 else 3
                samples = interleaved({w: partial(m, x) for w, m in models.items()}, args.rounds, iters)
                full = median(samples[1.0])
                for w in WIDTHS:
                    lat_ratio = median(samples[w]) / full
                    mac_ratio = macs[w] / macs[1.0]
                    limit = 1.5 if w < 0.5 else 1.25
                    rows.append(
                        {
                            "arch": arch,
                            "batch": batch,
                            "width": w,
                            "latency_ms": median(samples[w]),
                            "latency_ratio": lat_ratio,
                            "mac_ratio": mac_ratio,
                            "excess": lat_ratio / mac_ratio,
                            "limit": limit,
                            "pass": lat_ratio / mac_ratio <= limit,
                        }
                    )
                    print(rows[-1], flush=True)
    record = {"provenance": provenance(), "input_size": list(SIZE), "threads": 1, "rows": rows}
    md = [
        "# Width scaling: ORT CPU latency ratio vs MAC ratio (1 thread)",
        "",
        provenance_md(record["provenance"]),
        "Full-size models (base width 64), 256×128 input, D = 512, random weights; median of "
        f"{args.rounds} interleaved rounds. Excess = latency ratio / MAC ratio; target ≤ 1.25 "
        "(γ ≥ 0.5), ≤ 1.5 (γ = 0.25).",
        "",
        "| arch | batch | width | latency ms | latency ratio | MAC ratio | excess | target |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['arch']} | {r['batch']} | {r['width']:g} | {r['latency_ms']:.2f} "
            f"| {r['latency_ratio']:.3f} "
            f"| {r['mac_ratio']:.3f} | {r['excess']:.2f} | {'✅' if r['pass'] else '❌'} ≤ {r['limit']} |"
        )
    stem = Path(args.out)
    write_results(stem, record, md)

    fig = new_figure(6, 4)
    ax = fig.subplots()
    for arch in args.archs.split(","):
        for batch in sorted({r["batch"] for r in rows}):
            sel = [r for r in rows if r["arch"] == arch and r["batch"] == batch]
            ax.plot(
                [r["mac_ratio"] for r in sel],
                [r["latency_ratio"] for r in sel],
                "o-",
                label=f"{arch} b{batch}",
            )
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="latency ∝ MACs")
    ax.set_xlabel("MACs(γ) / MACs(1.0)")
    ax.set_ylabel("latency(γ) / latency(1.0)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("Slicing buys speed (ORT CPU, 1 thread)")
    fig.tight_layout()
    save_png(fig, stem.with_suffix(".png"))
    print("\n".join(md))


if __name__ == "__main__":
    main()
