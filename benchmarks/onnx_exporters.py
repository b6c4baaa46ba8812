"""torch.onnx: the TorchScript exporter we use vs the torch.export-based one torch now recommends.

Same sliced ResNet-18 graph through both, per width and with / without baked preprocessing:
export seconds (one after the other, in alternating order), the opset actually emitted when 17 is
asked for, node counts and op types, fp32 parity against PyTorch, and a dynamic batch check.
Needs ``onnxscript`` for the new exporter (``pip install onnxscript``). Run it alone on the machine.

    python -m benchmarks.onnx_exporters [--checkpoint CK]

Writes ``benchmarks/results/onnx_exporters.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from benchmarks._common import RESULTS, provenance, provenance_md, write_results
from exporters.graph import DeployGraph
from exporters.onnx_export import INPUT, OUTPUT, to_onnx
from exporters.parity import compare
from sfsc_deploy.io.figures import new_figure, save_png
from sfsc_deploy.models import build, checkpoint
from sfsc_deploy.models.calibration import fresh_statistics
from sfsc_deploy.models.slicing import slice_model

SIZE = (256, 128)
WIDTHS = (0.25, 1.0)
OPSET = 17


def _torch_export(graph: DeployGraph) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph,
            (graph.example_input(SIZE),),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            verbose=False,
        )
        program.optimize()
    return program.model_proto


def _describe(model: onnx.ModelProto, graph: DeployGraph) -> dict:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    parity = {}
    for batch in (1, 5):  # a dynamic batch axis must take any batch
        x = graph.example_input(SIZE, batch=batch)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.inference_mode():
            want = graph(x).numpy()
        parity[batch] = compare(want, got, "fp32")
    return {
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "nodes": len(model.graph.node),
        "ops": sorted({n.op_type for n in model.graph.node}),
        "max_abs": max(p.max_abs for p in parity.values()),
        "parity_passes": all(p.passed for p in parity.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a trained checkpoint (default: a fresh full-size ResNet-18)")
    parser.add_argument("--out", default=str(RESULTS / "onnx_exporters"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.checkpoint:
        net = checkpoint.load(args.checkpoint)
    else:
        torch.manual_seed(0)
        net = build("resnet18", [0.25, 0.5, 0.75], feature_dim=512, num_classes=751, input_size=SIZE)
        fresh_statistics(net)
    opts = net.config.options
    rows = []
    for width in WIDTHS:
        for bake in (False, True):
            graph = DeployGraph(slice_model(net, width), opts.mean, opts.std, bake_preprocess=bake).eval()
            exporters = {
                "torchscript": lambda g=graph: to_onnx(g, SIZE, {}),
                "torch.export": lambda g=graph: _torch_export(g),
            }
            order = list(exporters) if len(rows) % 4 < 2 else list(reversed(exporters))
            for name in order:
                start = time.perf_counter()
                model = exporters[name]()
                seconds = time.perf_counter() - start
                rows.append(
                    {
                        "width": width,
                        "baked": bake,
                        "exporter": name,
                        "seconds": seconds,
                        **_describe(model, graph),
                    }
                )
                print(rows[-1], flush=True)
    record = {"provenance": provenance(), "input_size": list(SIZE), "opset_asked": OPSET, "rows": rows}
    md = [
        "# ONNX exporters: TorchScript (used) vs torch.export",
        "",
        provenance_md(record["provenance"]),
        f"ResNet-18, {SIZE[0]}×{SIZE[1]} input, opset {OPSET} asked; "
        "parity against PyTorch at batch 1 and 5.",
        "",
        "| width | baked preprocessing | exporter | export s | opset emitted | nodes "
        "| fp32 parity max abs | parity |",
        "|---:|:---:|---|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['width']:g} | {'yes' if r['baked'] else 'no'} | {r['exporter']} | {r['seconds']:.1f} | "
            f"{r['opset']} | {r['nodes']} | {r['max_abs']:.1e} | {'pass' if r['parity_passes'] else 'FAIL'} |"
        )
    extra = sorted(
        {op for r in rows if r["exporter"] == "torch.export" for op in r["ops"]}
        - {op for r in rows if r["exporter"] == "torchscript" for op in r["ops"]}
    )
    md += ["", f"Op types only the torch.export graphs use: {', '.join(extra) or 'none'}."]
    fig = new_figure(6, 3.5)
    ax = fig.add_subplot()
    labels = [
        f"w{r['width']:g}{' baked' if r['baked'] else ''}" for r in rows if r["exporter"] == "torchscript"
    ]
    for i, name in enumerate(("torchscript", "torch.export")):
        secs = [r["seconds"] for r in rows if r["exporter"] == name]
        ax.bar(np.arange(len(secs)) + i * 0.4, secs, 0.4, label=name)
    ax.set_xticks(np.arange(len(labels)) + 0.2, labels)
    ax.set_ylabel("export seconds (1 thread)")
    ax.set_title("ONNX export time per model")
    ax.legend()
    save_png(fig, Path(args.out).with_suffix(".png"))
    write_results(Path(args.out), record, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
