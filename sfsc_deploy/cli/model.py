"""Commands on one network: create it (init), describe it (info), cut out one width (slice)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sfsc_deploy.cli.options import DeviceOpt, app, given, input_size, out, si, with_default
from sfsc_deploy.models.config import ARCH_NAMES, DEFAULT_WIDTHS, ArchOptions, NetConfig
from sfsc_deploy.models.pretrained import INIT_HELP
from sfsc_deploy.switchable.channels import format_widths

ArchOpt = Annotated[str, typer.Option(help=" | ".join(ARCH_NAMES))]
WidthsOpt = Annotated[str, typer.Option(help="Comma-separated narrow widths; 1.0 is always added.")]
WIDTHS_TEXT = ",".join(f"{w:g}" for w in DEFAULT_WIDTHS)


def arch_options(width_mult, size, divisor, last_stride) -> ArchOptions:
    """ArchOptions from the options the user set; the rest keep the library's defaults."""
    return ArchOptions(
        **given(
            width_mult=width_mult,
            input_size=input_size(size) if size else None,
            divisor=divisor,
            last_stride=last_stride,
        )
    )


WidthMultOpt = Annotated[
    float | None,
    typer.Option(
        help=with_default("Base-width multiplier (ResNet base width 32 = 0.5).", ArchOptions, "width_mult")
    ),
]
InputSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--input-size", help=with_default("HEIGHTxWIDTH of the model input.", ArchOptions, "input_size")
    ),
]
DivisorOpt = Annotated[
    int | None,
    typer.Option(
        help=with_default("Round sliced channel counts to multiples of this.", ArchOptions, "divisor")
    ),
]
LastStrideOpt = Annotated[
    int | None,
    typer.Option(
        help=with_default("Stride of the last stage (1 = re-id default).", ArchOptions, "last_stride")
    ),
]
FeatureDimOpt = Annotated[
    int | None, typer.Option(help=with_default("Retrieval feature dimension D.", NetConfig, "feature_dim"))
]
InitOpt = Annotated[
    str | None,
    typer.Option(
        "--init",
        help=f"Start the backbone from ImageNet weights: {INIT_HELP}; a torchvision or timm state dict "
        "(.safetensors, or .pth read with weights_only) of resnet18/50, mobilenet_v2 or "
        "shufflenet_v2_x1_0. Needs width multiplier 1; the ImageNet classifier is not used. "
        "Unset: random initialisation.",
    ),
]


@app.command()
def init(
    out_path: Annotated[Path, typer.Option("--out", help="Checkpoint file to write.")],
    arch: ArchOpt = ARCH_NAMES[0],
    widths: WidthsOpt = WIDTHS_TEXT,
    feature_dim: FeatureDimOpt = None,
    num_classes: Annotated[
        int | None,
        typer.Option(help=with_default("Training identities (classifier size).", NetConfig, "num_classes")),
    ] = None,
    width_mult: WidthMultOpt = None,
    size: InputSizeOpt = None,
    divisor: DivisorOpt = None,
    last_stride: LastStrideOpt = None,
    seed: Annotated[int, typer.Option(help="Initialisation seed.")] = 0,
    pretrained: InitOpt = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a freshly initialised checkpoint, to try the pipeline before training."""
    from sfsc_deploy.models import checkpoint
    from sfsc_deploy.models.pretrained import PretrainedInit

    options = arch_options(width_mult, size, divisor, last_stride)
    config = NetConfig(
        arch, widths, options=options, **given(feature_dim=feature_dim, num_classes=num_classes)
    )
    init = PretrainedInit(pretrained) if pretrained else None
    net = checkpoint.create(config, out_path, seed=seed, force=force, init=init)
    if init is not None and init.report is not None:
        out.print(init.report.summary())
    out.print(
        f"wrote {out_path}  ({arch}, widths {format_widths(net.widths)}, family {checkpoint.family_id(net)})"
    )


@app.command()
def info(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Architecture, widths, family id, and per width: channels, parameters, MACs, ratios."""
    from sfsc_deploy.perf.complexity import describe

    d = describe(checkpoint_path)
    if as_json:
        print(json.dumps(d.to_dict(), indent=2))
        return
    opts = d.options
    out.print(
        f"[bold]{checkpoint_path}[/]  {d.arch}  family [cyan]{d.family_id}[/]  "
        f"D={d.feature_dim}  ids={d.num_classes}  input {d.input_size[0]}x{d.input_size[1]}  "
        f"width_mult={opts['width_mult']:g}  divisor={opts['divisor']}"
    )
    table = Table("width", "channels", "params", "MACs", "params ratio", "MACs ratio", "BN")
    for r in d.per_width:
        table.add_row(
            f"{r.width:g}",
            str(r.channels),
            si(r.params),
            si(r.macs),
            f"{r.param_ratio:.3f}",
            f"{r.mac_ratio:.3f}",
            "calibrated" if r.calibrated else "trained",
        )
    out.print(table)


@app.command("slice")
def slice_cmd(
    checkpoint_path: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file.")],
    width: Annotated[float, typer.Option(help="Width to slice, e.g. 0.25.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write.")],
    calibrate: Annotated[
        Path | None, typer.Option(help="Folder of images: re-estimate the BatchNorm of an untrained width.")
    ] = None,
    calibration_images: Annotated[int, typer.Option(help="Images used by --calibrate.")] = 2048,
    device: DeviceOpt = None,
    force: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
) -> None:
    """Write the standalone sliced model of one width (plain layers, safetensors + JSON)."""
    from sfsc_deploy.models.slicing import slice_checkpoint

    r = slice_checkpoint(
        checkpoint_path,
        width,
        out_dir,
        calibrate=calibrate,
        calibration_images=calibration_images,
        force=force,
        **given(device=device),
    )
    if r.calibration_images is not None:
        out.print(
            f"re-estimated BatchNorm of width {r.width:g} on {r.calibration_images} images"
            + (f" ({r.unreadable} unreadable skipped)" if r.unreadable else "")
        )
    out.print(
        f"wrote {out_dir}  width {r.width:g}: {r.params:,} params, {r.macs:,} MACs, "
        f"max |sliced - switchable| = {r.max_abs_error:.2e}"
    )
