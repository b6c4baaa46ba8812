"""The ``sfsc-deploy`` command line: a thin layer over the library.

User errors (:class:`SfscError`) print one line and exit 2; ``--debug`` anywhere on the
command line shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .channels import format_widths, parse_widths
from .errors import SfscError

app = typer.Typer(
    name="sfsc-deploy",
    help="Train one switchable re-id network, slice it per platform tier, export and verify. "
    "Add --debug anywhere to see tracebacks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _input_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SfscError(f"--input-size {text!r} is not HEIGHTxWIDTH; use e.g. 256x128") from None
    return h, w


@app.command()
def init(
    out_path: Annotated[Path, typer.Option("--out", help="Checkpoint file to write.")],
    arch: Annotated[
        str, typer.Option(help="resnet18 | resnet50 | mobilenet_v2 | shufflenet_v2")
    ] = "resnet18",
    widths: Annotated[
        str, typer.Option(help="Comma-separated widths; 1.0 is always added.")
    ] = "0.25,0.5,0.75,1.0",
    feature_dim: Annotated[int, typer.Option(help="Retrieval feature dimension D.")] = 512,
    num_classes: Annotated[int, typer.Option(help="Training identities (classifier size).")] = 751,
    width_mult: Annotated[
        float, typer.Option(help="Base-width multiplier (ResNet base width 32 = 0.5).")
    ] = 1.0,
    input_size: Annotated[str, typer.Option(help="HEIGHTxWIDTH of the model input.")] = "256x128",
    divisor: Annotated[int, typer.Option(help="Round sliced channel counts to multiples of this.")] = 8,
    last_stride: Annotated[int, typer.Option(help="Stride of the last stage (1 = re-id default).")] = 1,
    seed: Annotated[int, typer.Option(help="Initialisation seed.")] = 0,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a freshly initialised checkpoint, to try the pipeline before training."""
    from . import checkpoint
    from .models import build

    torch.manual_seed(seed)
    net = build(
        arch,
        parse_widths(widths),
        feature_dim,
        num_classes,
        width_mult=width_mult,
        input_size=_input_size(input_size),
        divisor=divisor,
        last_stride=last_stride,
    )
    checkpoint.save(net, out_path, force=force, initialised_only=True, seed=seed)
    out.print(
        f"wrote {out_path}  ({arch}, widths {format_widths(net.widths)}, family {checkpoint.family_id(net)})"
    )


@app.command()
def info(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Architecture, widths, family id, and per width: channels, parameters, MACs, ratios."""
    from . import checkpoint
    from .complexity import width_report

    header = checkpoint.read_header(checkpoint_path)
    net = checkpoint.load(checkpoint_path)
    rows = width_report(net)
    cfg = net.config
    if as_json:
        print(
            json.dumps(
                {
                    "checkpoint": str(checkpoint_path),
                    "arch": cfg.arch,
                    "widths": net.widths,
                    "calibrated_widths": net.calibrated_widths,
                    "family_id": header["family_id"],
                    "feature_dim": cfg.feature_dim,
                    "num_classes": cfg.num_classes,
                    "input_size": list(cfg.options.input_size),
                    "options": cfg.to_dict()["options"],
                    "per_width": [r.to_dict() for r in rows],
                },
                indent=2,
            )
        )
        return
    out.print(
        f"[bold]{checkpoint_path}[/]  {cfg.arch}  family [cyan]{header['family_id']}[/]  "
        f"D={cfg.feature_dim}  ids={cfg.num_classes}  input {cfg.options.input_size[0]}x"
        f"{cfg.options.input_size[1]}  width_mult={cfg.options.width_mult:g}  "
        f"divisor={cfg.options.divisor}"
    )
    table = Table("width", "channels", "params", "MACs", "params ratio", "MACs ratio", "BN")
    for r in rows:
        table.add_row(
            f"{r.width:g}",
            str(r.channels),
            _si(r.params),
            _si(r.macs),
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
        Path | None,
        typer.Option(help="Folder of images: re-estimate the BatchNorm of an untrained width."),
    ] = None,
    calibration_images: Annotated[int, typer.Option(help="Images used by --calibrate.")] = 2048,
    force: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
) -> None:
    """Write the standalone sliced model of one width (plain layers, safetensors + JSON)."""
    from . import checkpoint
    from .calibration import calibrate_bn
    from .complexity import count_macs, count_params
    from .data.images import load_folder
    from .hashing import file_sha256
    from .slicing import save_sliced, slice_error, slice_model

    net = checkpoint.load(checkpoint_path)
    opts = net.config.options
    calibrated = None
    if calibrate is not None:
        images, bad = load_folder(calibrate, opts.input_size, opts.mean, opts.std, limit=calibration_images)
        calibrated = calibrate_bn(net, width, images)
        out.print(
            f"re-estimated BatchNorm of width {width:g} on {calibrated} images"
            + (f" ({bad} unreadable skipped)" if bad else "")
        )
    w = net.check_width(width)
    twin = slice_model(net, w)
    x = torch.randn(4, 3, *opts.input_size, generator=torch.Generator().manual_seed(0))
    error = slice_error(net, twin, w, x)
    params, macs = count_params(twin), count_macs(twin, opts.input_size)
    save_sliced(
        twin,
        net.config,
        w,
        out_dir,
        force=force,
        family_id=checkpoint.family_id(net),
        source_checkpoint_sha256=file_sha256(checkpoint_path),
        params=params,
        macs=macs,
        max_abs_error_vs_switchable=error,
        calibration_images=calibrated,
    )
    out.print(
        f"wrote {out_dir}  width {w:g}: {params:,} params, {macs:,} MACs, "
        f"max |sliced - switchable| = {error:.2e}"
    )


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if args in (["--version"], ["-V"]):
        out.print(f"sfsc-deploy {__version__}")
        return
    try:
        app(args=args, prog_name="sfsc-deploy")
    except SfscError as exc:
        if debug:
            raise
        err.print(f"error: {exc}", markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
