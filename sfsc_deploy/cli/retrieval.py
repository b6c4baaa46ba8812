"""Retrieval commands: index a split's features (extract), check an artifact against a gallery (verify)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from exporters.parity import TOLERANCES, tolerance_for
from sfsc_deploy.cli.options import DataOpt, DeviceOpt, ForceOpt, FormatOpt, SynthSeedOpt, app, dataset, out
from sfsc_deploy.retrieval.gallery import DTYPES, SPLITS


def _per_precision(field: str) -> str:
    return ", ".join(f"{p} {getattr(t, field):g}" for p, t in TOLERANCES.items())


@app.command()
def extract(
    out_path: Annotated[Path, typer.Option("--out", help="Gallery feature file to write (.npz).")],
    model: Annotated[
        Path | None, typer.Option(help="Exported artifact (.onnx, .xml OpenVINO IR, or .engine).")
    ] = None,
    checkpoint_path: Annotated[
        Path | None, typer.Option("--checkpoint", help="Or a checkpoint (PyTorch).")
    ] = None,
    width: Annotated[float | None, typer.Option(help="Width of --checkpoint (default 1.0).")] = None,
    data: DataOpt = "synthetic",
    fmt: FormatOpt = None,
    synthetic_seed: SynthSeedOpt = 0,
    split: Annotated[str, typer.Option(help=" | ".join(SPLITS))] = SPLITS[0],
    dtype: Annotated[str, typer.Option(help=f"{' | '.join(DTYPES)} features in the file.")] = DTYPES[0],
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    threads: Annotated[
        int | None, typer.Option(help="Runtime threads (onnxruntime intra-op, OpenVINO inference).")
    ] = None,
    device: DeviceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Features of one split (gallery by default) with ids, cameras, paths and the model's identity."""
    from exporters.files import check_overwrite
    from sfsc_deploy.retrieval.extractors import open_extractor
    from sfsc_deploy.retrieval.gallery import extract_gallery, save_gallery

    inputs = [model, checkpoint_path, data]
    check_overwrite(out_path, force, inputs)
    extractor = open_extractor(model, checkpoint=checkpoint_path, width=width, threads=threads, device=device)
    gallery = extract_gallery(
        extractor,
        dataset(data, fmt, synthetic_seed),
        split,
        dtype=dtype,
        batch_size=batch_size,
        progress=True,
    )
    save_gallery(gallery, out_path, force=force, inputs=inputs)
    info = extractor.info
    out.print(
        f"wrote {out_path}: {len(gallery)} × {gallery.features.shape[1]} {dtype} features "
        f"({info.runtime}, width {info.width:g}, family {info.family_id[:12]})"
    )


@app.command()
def verify(
    model: Annotated[
        Path, typer.Option(help="Exported artifact (.onnx, .xml OpenVINO IR, or .engine) to check.")
    ],
    gallery_path: Annotated[Path, typer.Option("--gallery", help="Gallery file from `extract`.")],
    data: Annotated[
        str, typer.Option("--data", help="'synthetic' or a dataset folder: its query split.")
    ] = "synthetic",
    fmt: FormatOpt = None,
    synthetic_seed: SynthSeedOpt = 0,
    checkpoint_path: Annotated[
        Path | None, typer.Option("--checkpoint", help="Source checkpoint: the PyTorch reference.")
    ] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the report as JSON.")] = None,
    max_map_drop: Annotated[
        float | None,
        typer.Option(help=f"mAP points the artifact may lose (default {_per_precision('max_map_drop')})."),
    ] = None,
    max_rank1_drop: Annotated[
        float | None,
        typer.Option(help=f"Rank-1 points it may lose (default {_per_precision('max_rank1_drop')})."),
    ] = None,
    min_top1_agreement: Annotated[
        float | None,
        typer.Option(
            help=f"Share of identical nearest neighbours (default {_per_precision('min_top1_agreement')})."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Runtime threads (onnxruntime intra-op, OpenVINO inference).")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Check an artifact against a gallery and its PyTorch reference; exit 0 on pass, 1 on fail."""
    from exporters.files import check_overwrite, json_text, write_text
    from sfsc_deploy.retrieval.verify import verify_artifact

    tolerance = {
        "max_map_drop": max_map_drop,
        "max_rank1_drop": max_rank1_drop,
        "min_top1_agreement": min_top1_agreement,
    }
    tolerance_for("fp32", **tolerance)  # impossible values are refused before anything is read
    inputs = [model, gallery_path, checkpoint_path, data]
    if out_path is not None:
        check_overwrite(out_path, force, inputs)
    report = verify_artifact(
        model,
        gallery_path,
        dataset(data, fmt, synthetic_seed),
        checkpoint=checkpoint_path,
        tolerance=tolerance,
        threads=threads,
        progress=True,
    )
    table = Table(
        "check", "value", "limit", "result", title=f"verify {model.name} against {gallery_path.name}"
    )
    for c in report.checks:
        table.add_row(c.name, c.value, c.limit, "[green]pass[/]" if c.passed else "[red]FAIL[/]")
    out.print(table)
    out.print(report.summary())
    if out_path is not None:
        text = json_text(report.to_dict())
        write_text(out_path, text, force=force, inputs=inputs)
    verdict = report.verdict.upper()
    if report.verdict == "no verdict":
        verdict += " (too few queries to judge retrieval; use a larger query set)"
    out.print(f"verify: {verdict}", markup=False)
    if not report.passed:
        raise typer.Exit(1)
