"""Deployment command: export one width, or every tier of a tier file, each proven against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sfsc_deploy.cli.options import (
    DataOpt,
    FormatOpt,
    SynthSeedOpt,
    app,
    dataset,
    given,
    ints,
    out,
    si,
    with_default,
)
from sfsc_deploy.deploy.settings import CALIBRATION_IMAGES, PARITY_IMAGES, ExportSettings
from sfsc_deploy.deploy.tiers import FORMATS, PRECISIONS, Tier
from sfsc_deploy.errors import SfscError


def batch_range(text: str) -> tuple[int, ...]:
    values = ints(text, "--batch") if text.replace(",", "").strip().isdigit() else ()
    if len(values) != 3:
        raise SfscError(f"--batch {text!r} must be three integers MIN,OPT,MAX such as 1,8,32")
    return values


@app.command()
def export(
    checkpoint_path: Annotated[Path, typer.Option("--checkpoint", help="Trained checkpoint file.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the artifacts and manifest.json.")],
    width: Annotated[float | None, typer.Option(help="Export this width (e.g. 0.25) as one tier.")] = None,
    tiers: Annotated[
        Path | None, typer.Option(help="TOML tier file (see examples/tiers.toml): export every tier.")
    ] = None,
    export_format: Annotated[
        str | None,
        typer.Option(
            "--export-format", help=with_default(f"{' | '.join(FORMATS)} (with --width).", Tier, "format")
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                f"{' | '.join(PRECISIONS)}: fp32 | int8 on onnx / openvino (CPU), fp16 on tensorrt.",
                Tier,
                "precision",
            )
        ),
    ] = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise features in the graph.")] = False,
    bake_preprocess: Annotated[
        bool, typer.Option(help="Graph takes uint8 NHWC 0-255 images and normalises them itself.")
    ] = False,
    batch: Annotated[
        str | None,
        typer.Option(help=with_default("MIN,OPT,MAX batch (TensorRT profile; recorded).", Tier, "batch")),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Tier name for --width (default: the arch).")] = None,
    data: DataOpt = "synthetic",
    fmt: FormatOpt = None,
    synthetic_seed: SynthSeedOpt = 0,
    calibration_images: Annotated[
        int, typer.Option(help="Training images for int8 calibration.")
    ] = CALIBRATION_IMAGES,
    parity_images: Annotated[
        int, typer.Option(help="Other training images for the parity check.")
    ] = PARITY_IMAGES,
    opset: Annotated[
        int | None, typer.Option(help=with_default("ONNX opset (>= 17).", ExportSettings, "opset"))
    ] = None,
    simplify: Annotated[
        bool | None,
        typer.Option(
            "--simplify/--no-simplify", help="Run onnxsim on the exported graph. [default: simplify]"
        ),
    ] = None,
    workspace_mb: Annotated[
        int | None,
        typer.Option(help=with_default("TensorRT builder workspace limit.", ExportSettings, "workspace_mb")),
    ] = None,
    timing_cache: Annotated[Path | None, typer.Option(help="TensorRT timing cache file to reuse.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
) -> None:
    """Export sliced sub-models (one --width, or every tier of --tiers), each checked against PyTorch."""
    from sfsc_deploy.deploy.export import default_images, export_tiers
    from sfsc_deploy.deploy.tiers import load_tiers
    from sfsc_deploy.models import checkpoint

    if (width is None) == (tiers is None):
        raise SfscError("pass exactly one of --width (one export) and --tiers (a TOML tier file)")
    config = checkpoint.read_config(checkpoint_path)
    if tiers is not None:
        chosen = load_tiers(tiers)
    else:
        one = given(format=export_format, precision=precision, batch=batch_range(batch) if batch else None)
        chosen = [
            Tier(
                name or config.arch, float(width), normalize=normalize, bake_preprocess=bake_preprocess, **one
            )
        ]
    images = default_images(
        dataset(data, fmt, synthetic_seed), config.options.input_size, calibration_images, parity_images
    )
    settings = ExportSettings(
        **given(
            opset=opset,
            simplify=simplify,
            workspace_mb=workspace_mb,
            timing_cache=str(timing_cache) if timing_cache else None,
        )
    )
    manifest = export_tiers(checkpoint_path, chosen, out_dir, images, settings=settings, force=force)
    table = Table("tier", "file", "width", "precision", "min cos", "max abs", "size")
    for a in manifest.artifacts:
        table.add_row(
            a.tier,
            a.file,
            f"{a.width:g}",
            a.precision,
            f"{a.parity.min_cosine:.6f}",
            f"{a.parity.max_abs:.1e}",
            si(a.bytes) + "B",
        )
    out.print(table)
    out.print(f"wrote {out_dir}/manifest.json ({len(manifest.artifacts)} artifacts, all passed parity)")
