"""Parameter / MAC ratios of every width to the full model, and the measured slicing error.

Full-size backbones (width_mult 1.0, 256×128 input), per-width BatchNorms given distinct
random statistics so the error figure would expose a wrong BN. Writes
``benchmarks/results/slicing_ratios.{json,md}``.

    python -m benchmarks.slicing_ratios [--archs resnet18,mobilenet_v2]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._common import RESULTS, provenance, provenance_md, write_results
from sfsc_deploy.models import build
from sfsc_deploy.models.slicing import distinct_bn_statistics, slice_error, slice_model
from sfsc_deploy.perf.complexity import width_report


def measure(arch: str, widths: list[float], images: torch.Tensor) -> list[dict]:
    torch.manual_seed(0)
    net = build(arch, widths, feature_dim=512, num_classes=751).eval()
    distinct_bn_statistics(net, seed=0)
    rows = []
    for stats in width_report(net):
        twin = slice_model(net, stats.width)
        error = slice_error(net, twin, stats.width, images)
        rows.append(
            {**stats.to_dict(), "max_abs_error": error, "feature_scale": float(twin(images).abs().max())}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="resnet18,mobilenet_v2")
    parser.add_argument("--widths", default="0.25,0.5,0.75,1.0")
    args = parser.parse_args()
    widths = [float(w) for w in args.widths.split(",")]
    images = torch.randn(8, 3, 256, 128, generator=torch.Generator().manual_seed(0))
    result = {"provenance": provenance(), "input_size": [256, 128], "batch": 8, "archs": {}}
    md = [
        "# Slicing: size ratios and exactness",
        "",
        provenance_md(result["provenance"]),
        "Full-size backbones, 256×128 input, D = 512, divisor 8; every width's BatchNorm "
        "holds distinct random statistics.",
        "",
    ]
    for arch in args.archs.split(","):
        with torch.no_grad():
            rows = measure(arch, widths, images)
        result["archs"][arch] = rows
        md += [
            f"## {arch}",
            "",
            "| width | channels | params | MACs | params ratio | MACs ratio "
            "| γ² | max abs error | max abs feature |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            md.append(
                f"| {r['width']:g} | {r['channels']} | {r['params']:,} | {r['macs']:,} | "
                f"{r['param_ratio']:.3f} | {r['mac_ratio']:.3f} | {r['width'] ** 2:.3f} | "
                f"{r['max_abs_error']:.2e} | {r['feature_scale']:.2f} |"
            )
        md.append("")
    RESULTS.mkdir(exist_ok=True)
    write_results(RESULTS / "slicing_ratios", result, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
