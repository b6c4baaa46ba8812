"""A sliced model runs exactly as fast as the same architecture built natively (fresh weights).

Target: latency ratio sliced / native = 1.00 ± 0.03 (PyTorch eager, 1 thread; ONNX Runtime too).

    python -m benchmarks.sliced_vs_native

Writes ``benchmarks/results/sliced_vs_native.{json,md}``.
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
from sfsc_deploy.models import build, build_plain
from sfsc_deploy.models.slicing import slice_model

SIZE = (256, 128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=str(RESULTS / "sliced_vs_native"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for arch in ("resnet18", "mobilenet_v2"):
            net = build(arch, [0.25, 0.5], feature_dim=512, num_classes=751, input_size=SIZE).eval()
            for w in (0.25, 0.5):
                sliced = slice_model(net, w)
                native = build_plain(net.config, w).eval()
                shapes = [tuple(p.shape) for p in sliced.state_dict().values()]
                assert shapes == [tuple(p.shape) for p in native.state_dict().values()]
                onnx = {}
                for name, model in (("sliced", sliced), ("native", native)):
                    graph = DeployGraph(model, (0.5,) * 3, (0.5,) * 3)
                    onnx[name] = OrtModel(
                        save_onnx(to_onnx(graph, SIZE, {}), Path(tmp) / f"{name}.onnx"), threads=1
                    )
                for batch in (1, 8):
                    x = torch.randn(batch, 3, *SIZE)
                    xn = x.numpy()
                    iters = 8 if batch == 1 else 2
                    s = interleaved(
                        {"sliced": partial(sliced, x), "native": partial(native, x)}, args.rounds, iters
                    )
                    o = interleaved(
                        {"sliced": partial(onnx["sliced"], xn), "native": partial(onnx["native"], xn)},
                        args.rounds,
                        iters,
                    )
                    for runtime, t in (("pytorch", s), ("onnxruntime", o)):
                        ratio = median(t["sliced"]) / median(t["native"])
                        rows.append(
                            {
                                "arch": arch,
                                "width": w,
                                "batch": batch,
                                "runtime": runtime,
                                "sliced_ms": median(t["sliced"]),
                                "native_ms": median(t["native"]),
                                "ratio": ratio,
                                "pass": abs(ratio - 1) <= 0.03,
                            }
                        )
                        print(rows[-1], flush=True)
    record = {"provenance": provenance(), "threads": 1, "input_size": list(SIZE), "rows": rows}
    md = [
        "# Sliced vs natively built model of the same shape (1 thread)",
        "",
        provenance_md(record["provenance"]),
        f"Median of {args.rounds} interleaved rounds; target ratio 1.00 ± 0.03.",
        "",
        "| arch | width | batch | runtime | sliced ms | native ms | ratio | target |",
        "|---|---:|---:|---|---:|---:|---:|:---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['arch']} | {r['width']:g} | {r['batch']} | {r['runtime']} | {r['sliced_ms']:.2f} "
            f"| {r['native_ms']:.2f} | {r['ratio']:.3f} | {'✅' if r['pass'] else '❌'} |"
        )
    write_results(Path(args.out), record, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
