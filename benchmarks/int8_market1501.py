"""The int8 model on real data: what the symmetric Q/DQ form costs per width, and where the tolerances
of ``exporters.parity.TOLERANCES["int8"]`` come from.

For every width of a Market-1501-trained checkpoint (baked uint8 preprocessing, the camera tier's
form): the default int8 model (float first conv + embedding path, the sensitive early convs kept in
float until the calibration fit reaches its target), the same without that rule, another calibration
method, and two deliberately damaged models (one layer's weight scale off by 1.5x / 2x) — each
against the PyTorch reference on 256 training images the 256 calibration images never include.

    python -m benchmarks.int8_market1501 [--checkpoint CK]

Writes ``benchmarks/results/int8_market1501.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from rich.progress import track

from benchmarks._common import MARKET, RESULTS, ROOT, provenance, provenance_md, write_results
from exporters.files import file_sha256
from exporters.graph import DeployGraph, graph_inputs
from exporters.onnx_export import OnnxOptions, read_metadata, to_onnx
from exporters.parity import INT8_FIT_MARGIN, TOLERANCES, calibration_gap, compare
from exporters.quantize import Int8Options, onnx_features, quantize_int8
from sfsc_deploy.data import load_dataset
from sfsc_deploy.deploy.export import default_images
from sfsc_deploy.io.figures import new_figure, save_png
from sfsc_deploy.models import checkpoint
from sfsc_deploy.retrieval.extractors import TorchExtractor

DEFAULT_CK = ROOT / ".bench/compat_market1501/e12/sfsc-s0/checkpoint.safetensors"


@dataclass
class Row:
    width: float
    variant: str
    float_convs: int
    calibration_fit: float | None
    min_cosine: float
    mean_cosine: float
    max_abs_rel: float
    passes: bool
    seconds: float | None
    openvino_min_cosine: float | None  # the same model through OpenVINO on this CPU (None: not installed)
    openvino_mean_cosine: float | None
    openvino_passes: bool | None


def damaged(model: onnx.ModelProto, factor: float, where: str) -> onnx.ModelProto:
    """A copy with one weight DequantizeLinear's scale multiplied by ``factor`` (a broken calibration)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    inits = {i.name: i for i in copy.graph.initializer}
    weights = [n for n in copy.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    node = weights[len(weights) // 2] if where == "middle" else weights[-1]
    scale = inits[node.input[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * factor, scale.name))
    return copy


def measure(width, variant, model, want, par, convs, fit, secs) -> Row:
    p = compare(want, onnx_features(model, par, 64), "int8")
    ov = openvino_parity(model, want, par)
    meta = read_metadata(model)  # export's decision: the table's floor and the model's own fit
    return Row(
        width,
        variant,
        convs,
        fit,
        p.min_cosine,
        p.mean_cosine,
        p.max_abs_rel,
        p.passed and calibration_gap(p.mean_cosine, meta) is None,
        secs,
        ov.min_cosine if ov else None,
        ov.mean_cosine if ov else None,
        (ov.passed and calibration_gap(ov.mean_cosine, meta) is None) if ov else None,
    )


def openvino_parity(model: onnx.ModelProto, want: np.ndarray, par: np.ndarray):
    try:
        import openvino  # noqa: F401
    except ImportError:
        return None
    from exporters.openvino_runtime import OvModel, to_openvino

    with tempfile.TemporaryDirectory(prefix="sfsc-int8-ov-") as tmp:
        path = Path(tmp) / "m.xml"
        to_openvino(model, path)
        runner = OvModel(path, threads=1)
        got = np.concatenate([runner(par[i : i + 64]) for i in range(0, len(par), 64)])
    return compare(want, got, "int8")


def plot(rows: list[Row], path: Path) -> None:
    variants = list(dict.fromkeys(r.variant for r in rows))
    widths = sorted({r.width for r in rows})
    fig = new_figure(7, 3.6)
    ax = fig.subplots()
    for v in variants:
        ax.plot(
            widths,
            [next(r.mean_cosine for r in rows if r.width == w and r.variant == v) for w in widths],
            marker="o",
            label=v,
        )
    ax.axhline(TOLERANCES["int8"].min_mean_cosine, color="k", ls="--", lw=1, label="tolerance (mean cos)")
    ax.set_xlabel("width")
    ax.set_ylabel("mean cosine to PyTorch")
    ax.set_ylim(0.85, 1.0)
    ax.set_title("int8 (symmetric Q/DQ) on Market-1501, 256 held-out images")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_png(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CK))
    parser.add_argument("--data", default=str(MARKET))
    parser.add_argument("--format", default="market1501-heldout")
    parser.add_argument("--out", default=str(RESULTS / "int8_market1501"))
    args = parser.parse_args()
    net = checkpoint.load(args.checkpoint)
    opts = net.config.options
    splits = load_dataset(args.data, args.format)
    images = default_images(splits, tuple(opts.input_size), calibration=256, parity=256)
    rows: list[Row] = []
    variants = [
        ("default", Int8Options()),
        ("8-bit weights", Int8Options(reduce_range=False)),
        ("8-bit weights, no early layers in float", Int8Options(reduce_range=False, max_float_convs=0)),
        ("percentile calibration", Int8Options(method="percentile")),
    ]
    for width in track(net.widths, description="int8 per width"):
        reference = TorchExtractor(net, width)
        graph = DeployGraph(reference.graph.model, opts.mean, opts.std, bake_preprocess=True)
        fp32 = to_onnx(
            graph, tuple(opts.input_size), {**reference.info.metadata(), "precision": "fp32"}, OnnxOptions()
        )
        cal = graph_inputs(images.calibration, opts.mean, opts.std, bake_preprocess=True).numpy()
        par = graph_inputs(images.parity, opts.mean, opts.std, bake_preprocess=True).numpy()
        want = reference.features(images.parity)

        default = None
        for name, options in variants:
            start = time.perf_counter()
            result = quantize_int8(fp32, cal, options)
            secs = time.perf_counter() - start
            rows.append(
                measure(
                    width,
                    name,
                    result.model,
                    want,
                    par,
                    len(result.float_convs),
                    result.calibration_mean_cosine,
                    secs,
                )
            )
            default = default or result
        for factor, where in ((1.5, "last"), (2.0, "middle")):
            name = f"damaged: {where} conv's weight scale x{factor:g}"
            rows.append(
                measure(
                    width,
                    name,
                    damaged(default.model, factor, where),
                    want,
                    par,
                    len(default.float_convs),
                    None,
                    None,
                )
            )
    tol = TOLERANCES["int8"]
    record = {
        "provenance": provenance(),
        "checkpoint": args.checkpoint,
        "checkpoint_sha256": file_sha256(args.checkpoint),
        "dataset": splits.name,
        "tolerance": asdict(tol),
        "rows": [asdict(r) for r in rows],
    }
    md = [
        f"# int8 (symmetric Q/DQ) per width on {splits.name}",
        "",
        provenance_md(record["provenance"]),
        f"Model `{Path(args.checkpoint).name}` (sha256 {record['checkpoint_sha256'][:12]}), baked uint8 "
        "preprocessing; 256 calibration images, parity against PyTorch on 256 other training images. "
        f"Tolerance: min cos ≥ {tol.min_cosine}, mean cos ≥ {tol.min_mean_cosine}, "
        f"max abs rel ≤ {tol.max_abs_rel}, and mean cos ≥ the model's own calibration fit − "
        f"{INT8_FIT_MARGIN} ('passes' is export's decision: both).",
        "",
        "| width | variant | early convs in float | calibration fit | min cos | mean cos | max abs rel "
        "| passes | quantise s | OpenVINO min / mean cos (passes) |",
        "|---:|---|---:|---:|---:|---:|---:|:---:|---:|---:|",
    ]
    for r in rows:
        fit = f"{r.calibration_fit:.5f}" if r.calibration_fit is not None else "–"
        secs = f"{r.seconds:.1f}" if r.seconds is not None else "–"
        ov = (
            "–"
            if r.openvino_min_cosine is None
            else f"{r.openvino_min_cosine:.5f} / {r.openvino_mean_cosine:.5f} "
            f"({'yes' if r.openvino_passes else 'NO'})"
        )
        md.append(
            f"| {r.width:g} | {r.variant} | {r.float_convs} | {fit} | {r.min_cosine:.5f} "
            f"| {r.mean_cosine:.5f} | {r.max_abs_rel:.3f} | {'yes' if r.passes else 'NO'} | {secs} | {ov} |"
        )
    damaged_fail = all(not r.passes for r in rows if r.variant.startswith("damaged"))
    default_pass = all(r.passes for r in rows if r.variant == "default")
    md += [
        "",
        f"Verdict: default int8 passes at every width: {'yes' if default_pass else 'NO'}; "
        f"every damaged model fails: {'yes' if damaged_fail else 'NO'}.",
    ]
    stem = Path(args.out)
    write_results(stem, record, md)
    plot(rows, stem.with_suffix(".png"))
    print(md[-1])


if __name__ == "__main__":
    main()
