"""Exported ONNX Runtime vs PyTorch eager on the same sliced sub-model: batch 1, 1 thread.

Target: ONNX Runtime ≥ 1.5× faster.

    python -m benchmarks.ort_vs_eager

Writes ``benchmarks/results/ort_vs_eager.{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
from functools import partial
from pathlib import Path

import torch

from benchmarks._common import RESULTS, interleaved, median, provenance, provenance_md, write_results
from exporters.graph import DeployGraph
from exporters.onnx_export import save_onnx, to_onnx
from exporters.ort_runtime import OrtModel
from sfsc_deploy.models import build
from sfsc_deploy.models.slicing import slice_model

SIZE = (256, 128)
WIDTHS = [0.25, 0.5, 0.75, 1.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=str(RESULTS / "ort_vs_eager"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for arch in ("resnet18", "mobilenet_v2"):
            net = build(arch, WIDTHS, feature_dim=512, num_classes=751, input_size=SIZE).eval()
            for w in WIDTHS:
                twin = slice_model(net, w)
                path = save_onnx(
                    to_onnx(DeployGraph(twin, (0.5,) * 3, (0.5,) * 3), SIZE, {}), Path(tmp) / "m.onnx"
                )
                ort = OrtModel(path, threads=1)
                x = torch.randn(1, 3, *SIZE)
                xn = x.numpy()
                t = interleaved({"eager": partial(twin, x), "ort": partial(ort, xn)}, args.rounds, 8)
                speedup = median(t["eager"]) / median(t["ort"])
                rows.append(
                    {
                        "arch": arch,
                        "width": w,
                        "eager_ms": median(t["eager"]),
                        "ort_ms": median(t["ort"]),
                        "speedup": speedup,
                        "pass": speedup >= 1.5,
                    }
                )
                print(rows[-1], flush=True)
    record = {"provenance": provenance(), "threads": 1, "batch": 1, "input_size": list(SIZE), "rows": rows}
    md = [
        "# ONNX Runtime vs PyTorch eager, same sub-model (batch 1, 1 thread)",
        "",
        provenance_md(record["provenance"]),
        f"Full-size models, 256×128 input; median of {args.rounds} interleaved rounds; "
        "target speed-up ≥ 1.5×.",
        "",
        "| arch | width | eager ms | ORT ms | speed-up | target |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['arch']} | {r['width']:g} | {r['eager_ms']:.2f} | {r['ort_ms']:.2f} | {r['speedup']:.2f}× "
            f"| {'✅' if r['pass'] else '❌'} |"
        )
    write_results(Path(args.out), record, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
