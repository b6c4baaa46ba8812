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

from sfsc_deploy import __version__
from sfsc_deploy.errors import SfscError
from sfsc_deploy.switchable.channels import format_widths, parse_widths
from sfsc_deploy.train.config import TrainConfig

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
    from sfsc_deploy.models import build, checkpoint

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
    from sfsc_deploy.models import checkpoint
    from sfsc_deploy.perf.complexity import width_report

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
    from exporters.files import file_sha256
    from sfsc_deploy.data.images import load_folder
    from sfsc_deploy.models import checkpoint
    from sfsc_deploy.models.calibration import calibrate_bn
    from sfsc_deploy.models.slicing import save_sliced, slice_error, slice_model
    from sfsc_deploy.perf.complexity import count_macs, count_params

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


def _dataset(data: str, fmt: str | None, synthetic_seed: int):
    from sfsc_deploy.data import load_dataset
    from sfsc_deploy.data.synthetic import SyntheticConfig

    return load_dataset(data, fmt, synthetic=SyntheticConfig(seed=synthetic_seed))


DataOpt = Annotated[str, typer.Option("--data", help="'synthetic' (built in) or a dataset folder.")]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="market1501 | market1501-heldout | folder (default: detected)."),
]
SynthSeedOpt = Annotated[int, typer.Option(help="Seed of the built-in synthetic dataset.")]


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory to write.")],
    data: DataOpt = "synthetic",
    fmt: FormatOpt = None,
    arch: Annotated[
        str, typer.Option(help="resnet18 | resnet50 | mobilenet_v2 | shufflenet_v2")
    ] = "resnet18",
    widths: Annotated[
        str, typer.Option(help="Narrow widths to train; 1.0 is always trained.")
    ] = "0.25,0.5,0.75",
    method: Annotated[
        str,
        typer.Option(
            help="sfsc | bct-s | asym-s | lce-s (one switchable network); "
            "unified | bct | asym (one network per width)."
        ),
    ] = "sfsc",
    loss: Annotated[
        str, typer.Option(help="Full model's loss: softmax | softmax+triplet | circle.")
    ] = "softmax",
    aggregation: Annotated[
        str | None, typer.Option(help="sum | project (default: project for sfsc, sum otherwise).")
    ] = None,
    kl: Annotated[
        str, typer.Option(help="SFSC KL term: paper (on α) | sensoy (on α̃: wrong classes only).")
    ] = TrainConfig.kl,
    kl_weight: Annotated[
        float, typer.Option(help="λ of the SFSC KL term (the paper's is 0.2; see the README).")
    ] = TrainConfig.kl_weight,
    kl_anneal_epochs: Annotated[
        int, typer.Option(help="Ramp λ up linearly over this many epochs (0: constant, the paper's).")
    ] = TrainConfig.kl_anneal_epochs,
    evidence_offset: Annotated[
        bool,
        typer.Option(
            help="Learn the classifier's logit offset in the evidential loss (without it u is "
            "pinned near 0.5; see the README)."
        ),
    ] = TrainConfig.evidence_offset,
    offset_init: Annotated[
        float | None, typer.Option(help="Start value of that offset (default: −ln C, C the identities).")
    ] = TrainConfig.offset_init,
    offset_lr: Annotated[float, typer.Option(help="Learning rate of that offset.")] = TrainConfig.offset_lr,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 12,
    batch_ids: Annotated[int, typer.Option(help="Identities per batch (P).")] = 16,
    batch_k: Annotated[int, typer.Option(help="Images per identity (K).")] = 4,
    sampler: Annotated[
        str,
        typer.Option(
            help="pk: P identities × K images per batch; random: shuffled batches of P·K images "
            "(not with softmax+triplet, which needs same-identity pairs)."
        ),
    ] = "pk",
    optimizer: Annotated[str, typer.Option(help="adam | sgd (momentum 0.9, Nesterov).")] = "adam",
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 3.5e-4,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = 5e-4,
    warmup_epochs: Annotated[float, typer.Option(help="Linear warm-up length in epochs.")] = 1.0,
    schedule: Annotated[str, typer.Option(help="cosine | step (x0.1 at 50% and 75%).")] = "cosine",
    erasing: Annotated[float, typer.Option(help="Random-erasing probability.")] = 0.0,
    val_ids: Annotated[
        int,
        typer.Option(
            help="Carve this many training identities out as a "
            "validation split (for tuning; never the test ids)."
        ),
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, batches and augmentation.")] = 0,
    feature_dim: Annotated[int, typer.Option(help="Retrieval feature dimension D.")] = 512,
    width_mult: Annotated[float, typer.Option(help="Base-width multiplier (0.5 = ResNet base 32).")] = 1.0,
    input_size: Annotated[str, typer.Option(help="HEIGHTxWIDTH of the model input.")] = "256x128",
    divisor: Annotated[int, typer.Option(help="Channel divisor of the sliced widths.")] = 8,
    last_stride: Annotated[
        int, typer.Option(help="Stride of the last stage: 1 (re-id default, 2× feature map) or 2.")
    ] = 1,
    synthetic_seed: SynthSeedOpt = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last epoch.")] = False,
    force: Annotated[bool, typer.Option(help="Start over in a non-empty --out.")] = False,
    tensorboard: Annotated[
        bool, typer.Option(help="Also write a TensorBoard event file (needs the tensorboard package).")
    ] = False,
    plots: Annotated[
        bool, typer.Option(help="Draw the log's plots into <out>/plots at the end (see plot-log).")
    ] = True,
) -> None:
    """Train SFSC (or a baseline) and write checkpoints, a JSONL log, plots and networks.json."""
    from sfsc_deploy.models import ArchOptions
    from sfsc_deploy.train import train as run_training

    cfg = TrainConfig(
        method=method,
        loss=loss,
        aggregation=aggregation,
        kl=kl,
        kl_weight=kl_weight,
        kl_anneal_epochs=kl_anneal_epochs,
        evidence_offset=evidence_offset,
        offset_init=offset_init,
        offset_lr=offset_lr,
        epochs=epochs,
        batch_ids=batch_ids,
        batch_k=batch_k,
        sampler=sampler,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        schedule=schedule,
        erasing=erasing,
        val_ids=val_ids,
        seed=seed,
    )
    options = ArchOptions(
        width_mult=width_mult, input_size=_input_size(input_size), divisor=divisor, last_stride=last_stride
    )
    splits = _dataset(data, fmt, synthetic_seed)
    result = run_training(
        splits,
        arch,
        widths,
        cfg,
        out_dir,
        feature_dim=feature_dim,
        options=options,
        resume=resume,
        force=force,
        tensorboard=tensorboard,
        plots=plots,
    )
    out.print(
        f"trained {cfg.method} ({cfg.aggregation}) on {splits.name}: "
        f"{len(result.networks)} widths → {out_dir}/networks.json"
    )


@app.command("plot-log")
def plot_log_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of `sfsc-deploy train` (or one w*/ in it).")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the PNGs (default: RUN_DIR/plots).")
    ] = None,
) -> None:
    """Plot a training log: losses, gradient norm per task (SFSC Fig. 5), uncertainty u per width,
    conflicting gradient pairs (Fig. 6)."""
    from sfsc_deploy.train.log import read_log
    from sfsc_deploy.train.log_plots import plot_log

    folders = [run_dir] if (run_dir / "train_log.jsonl").exists() else sorted(run_dir.glob("w*/"))
    if not folders:
        raise SfscError(f"no training log in {run_dir}; pass the --out of `sfsc-deploy train`")
    for folder in folders:
        log = read_log(folder)
        target = out_dir / folder.name if out_dir and folder != run_dir else out_dir or folder / "plots"
        plots = plot_log(log, target, title=folder.name)
        u = log.per_width("uncertainty")
        summary = ", ".join(f"{w:g}× {float(values[-50:].mean()):.3f}" for w, values in u.items())
        out.print(
            f"{folder}: {len(log.step)} steps; "
            + (f"final u: {summary}; " if u else "")
            + f"wrote {', '.join(p.name for p in plots.paths)} to {target}"
        )


@app.command("eval")
def eval_cmd(
    checkpoint_path: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file or run directory.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the matrix JSON/Markdown/PNG.")],
    data: DataOpt = "synthetic",
    fmt: FormatOpt = None,
    synthetic_seed: SynthSeedOpt = 0,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    flip: Annotated[bool, typer.Option(help="Average features with the flipped image.")] = False,
) -> None:
    """Cross-width compatibility matrix M(φ_q, φ_g) and the compatibility rule per pair."""
    from sfsc_deploy.evaluation.report import matrix_markdown
    from sfsc_deploy.evaluation.runs import evaluate_run

    splits = _dataset(data, fmt, synthetic_seed)
    matrix = evaluate_run(checkpoint_path, splits, out_dir, batch_size=batch_size, flip=flip)
    out.print(matrix_markdown(matrix))
    if matrix.all_pass():
        out.print("compatibility rule: pass on every pair")
    else:
        out.print(f"compatibility rule: FAIL on some pairs (see {out_dir}/compat_matrix.md)")
    out.print(f"wrote {out_dir}/compat_matrix.json, .md, .png")


def _batch_range(text: str) -> tuple[int, int, int]:
    try:
        lo, opt, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise SfscError(f"--batch {text!r} must be three integers MIN,OPT,MAX such as 1,8,32") from None
    return lo, opt, hi


@app.command()
def export(
    checkpoint_path: Annotated[Path, typer.Option("--checkpoint", help="Trained checkpoint file.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the artifacts and manifest.json.")],
    width: Annotated[float | None, typer.Option(help="Export this width (e.g. 0.25) as one tier.")] = None,
    tiers: Annotated[
        Path | None, typer.Option(help="TOML tier file (see examples/tiers.toml): export every tier.")
    ] = None,
    export_format: Annotated[str, typer.Option("--format", help="onnx | tensorrt (with --width).")] = "onnx",
    precision: Annotated[
        str, typer.Option(help="fp32 | int8 (onnx, CPU) | fp16 (tensorrt) (with --width).")
    ] = "fp32",
    normalize: Annotated[bool, typer.Option(help="L2-normalise features in the graph.")] = False,
    bake_preprocess: Annotated[
        bool, typer.Option(help="Graph takes uint8 NHWC 0-255 images and normalises them itself.")
    ] = False,
    batch: Annotated[str, typer.Option(help="MIN,OPT,MAX batch (TensorRT profile; recorded).")] = "1,8,32",
    name: Annotated[str | None, typer.Option(help="Tier name for --width (default: the arch).")] = None,
    data: Annotated[
        str, typer.Option("--data", help="Images for calibration and parity: 'synthetic' or a dataset.")
    ] = "synthetic",
    data_format: Annotated[
        str | None, typer.Option(help="Dataset layout of --data (default: detected).")
    ] = None,
    calibration_images: Annotated[int, typer.Option(help="Training images for int8 calibration.")] = 256,
    parity_images: Annotated[int, typer.Option(help="Other training images for the parity check.")] = 64,
    opset: Annotated[int, typer.Option(help="ONNX opset (>= 17).")] = 17,
    simplify: Annotated[bool, typer.Option(help="Run onnxsim on the exported graph.")] = True,
    workspace_mb: Annotated[int, typer.Option(help="TensorRT builder workspace limit.")] = 1024,
    timing_cache: Annotated[Path | None, typer.Option(help="TensorRT timing cache file to reuse.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
) -> None:
    """Export sliced sub-models (one --width, or every tier of --tiers), each checked against PyTorch."""
    from sfsc_deploy.deploy.export import ExportSettings, default_images, export_tiers
    from sfsc_deploy.deploy.tiers import Tier, load_tiers
    from sfsc_deploy.models import checkpoint

    if (width is None) == (tiers is None):
        raise SfscError("pass exactly one of --width (one export) and --tiers (a TOML tier file)")
    if calibration_images < 1 or parity_images < 1:
        raise SfscError("--calibration-images and --parity-images must be >= 1")
    config = checkpoint.read_config(checkpoint_path)
    if tiers is not None:
        chosen = load_tiers(tiers)
    else:
        w = float(width)  # type: ignore[arg-type]
        chosen = [
            Tier(
                name or config.arch,
                w,
                export_format,
                precision,
                _batch_range(batch),
                normalize=normalize,
                bake_preprocess=bake_preprocess,
            )
        ]
    images = default_images(
        _dataset(data, data_format, 0), config.options.input_size, calibration_images, parity_images
    )
    settings = ExportSettings(
        opset=opset,
        simplify=simplify,
        workspace_mb=workspace_mb,
        timing_cache=str(timing_cache) if timing_cache else None,
    )
    manifest = export_tiers(checkpoint_path, chosen, out_dir, images, settings=settings, force=force)
    table = Table("tier", "file", "width", "precision", "min cos", "max abs", "size")
    for a in manifest["artifacts"]:
        p = a["parity"]
        table.add_row(
            a["tier"],
            a["file"],
            f"{a['width']:g}",
            a["precision"],
            f"{p['min_cosine']:.6f}",
            f"{p['max_abs']:.1e}",
            _si(a["bytes"]) + "B",
        )
    out.print(table)
    out.print(f"wrote {out_dir}/manifest.json ({len(manifest['artifacts'])} artifacts, all passed parity)")


@app.command()
def extract(
    out_path: Annotated[Path, typer.Option("--out", help="Gallery feature file to write (.npz).")],
    model: Annotated[Path | None, typer.Option(help="Exported artifact (.onnx or .engine).")] = None,
    checkpoint_path: Annotated[
        Path | None, typer.Option("--checkpoint", help="Or a checkpoint (PyTorch).")
    ] = None,
    width: Annotated[float | None, typer.Option(help="Width of --checkpoint (default 1.0).")] = None,
    data: DataOpt = "synthetic",
    fmt: FormatOpt = None,
    synthetic_seed: SynthSeedOpt = 0,
    split: Annotated[str, typer.Option(help="gallery | query | train")] = "gallery",
    dtype: Annotated[str, typer.Option(help="float32 | float16 features in the file.")] = "float32",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    threads: Annotated[int | None, typer.Option(help="onnxruntime intra-op threads.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Features of one split (gallery by default) with ids, cameras, paths and the model's identity."""
    import numpy as np

    from exporters.files import check_overwrite
    from sfsc_deploy.data.bank import build_bank
    from sfsc_deploy.retrieval.extractors import open_extractor
    from sfsc_deploy.retrieval.gallery import Gallery, save_gallery

    if split not in ("gallery", "query", "train"):
        raise SfscError(f"--split {split!r} must be gallery, query or train")
    if dtype not in ("float32", "float16"):
        raise SfscError(f"--dtype {dtype!r} must be float32 or float16")
    check_overwrite(out_path, force)
    extractor = open_extractor(model, checkpoint=checkpoint_path, width=width, threads=threads)
    splits = _dataset(data, fmt, synthetic_seed)
    bank = build_bank(getattr(splits, split), extractor.info.input_size, split=split)
    features = extractor.features(bank.images, batch_size=batch_size, progress=True, description=split)
    meta = {**extractor.info.to_dict(), "dataset": splits.name, "split": split, "dtype": dtype}
    gallery = Gallery(
        features.astype(dtype), bank.pids.numpy(), bank.camids.numpy(), np.asarray(bank.paths), meta
    )
    save_gallery(gallery, out_path, force=force)
    out.print(
        f"wrote {out_path}: {len(gallery)} × {features.shape[1]} {dtype} features "
        f"({extractor.info.runtime}, width {extractor.info.width:g}, family {extractor.info.family_id[:12]})"
    )


@app.command()
def verify(
    model: Annotated[Path, typer.Option(help="Exported artifact (.onnx or .engine) to check.")],
    gallery_path: Annotated[Path, typer.Option("--gallery", help="Gallery file from `extract`.")],
    queries: Annotated[str, typer.Option(help="'synthetic' or a dataset folder: its query split.")],
    fmt: FormatOpt = None,
    synthetic_seed: SynthSeedOpt = 0,
    checkpoint_path: Annotated[
        Path | None, typer.Option("--checkpoint", help="Source checkpoint: the PyTorch reference.")
    ] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the report as JSON.")] = None,
    max_map_drop: Annotated[
        float | None, typer.Option(help="mAP points the artifact may lose (default fp32 0.1, int8 1.0).")
    ] = None,
    max_rank1_drop: Annotated[
        float | None, typer.Option(help="Rank-1 points it may lose (default fp32 0.1, int8 1.0).")
    ] = None,
    min_top1_agreement: Annotated[
        float | None, typer.Option(help="Share of identical nearest neighbours (fp32 0.99, int8 0.85).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="onnxruntime intra-op threads.")] = None,
) -> None:
    """Check an artifact against a gallery and its PyTorch reference; exit 0 on pass, 1 on fail."""
    from exporters.files import write_text
    from sfsc_deploy.data.bank import build_bank
    from sfsc_deploy.retrieval.extractors import TorchExtractor, open_extractor
    from sfsc_deploy.retrieval.gallery import load_gallery
    from sfsc_deploy.retrieval.verify import VerifyTolerance
    from sfsc_deploy.retrieval.verify import verify as run_verify

    gallery = load_gallery(gallery_path)
    artifact = open_extractor(model, threads=threads)
    reference = None
    if checkpoint_path is not None:
        reference = TorchExtractor.from_checkpoint(
            checkpoint_path, artifact.info.width, normalize=artifact.info.normalized
        )
    splits = _dataset(queries, fmt, synthetic_seed)
    bank = build_bank(splits.query, artifact.info.input_size, split="query")
    tol = VerifyTolerance.for_precision(
        artifact.info.precision,
        max_map_drop=max_map_drop,
        max_rank1_drop=max_rank1_drop,
        min_top1_agreement=min_top1_agreement,
    )
    report = run_verify(artifact, gallery, bank, reference, tol, progress=True)
    table = Table(
        "check", "value", "limit", "result", title=f"verify {model.name} against {gallery_path.name}"
    )
    for c in report.checks:
        table.add_row(c.name, c.value, c.limit, "[green]pass[/]" if c.passed else "[red]FAIL[/]")
    out.print(table)
    got = report.metrics["artifact"]
    line = f"artifact: mAP {got['mAP']:.2f}  R1 {got['cmc']['1']:.2f}"
    if "reference" in report.metrics:
        ref = report.metrics["reference"]
        line += f"   reference: mAP {ref['mAP']:.2f}  R1 {ref['cmc']['1']:.2f}"
    else:
        line += "   (no --checkpoint: parity and retrieval drop not checked)"
    out.print(line)
    if out_path is not None:
        write_text(out_path, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    out.print("verify: PASS" if report.passed else "verify: FAIL")
    if not report.passed:
        raise typer.Exit(1)


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise SfscError(f"{option} {text!r} must be comma-separated integers such as 1,8,32")
    return values


BatchesOpt = Annotated[str, typer.Option(help="Comma-separated batch sizes.")]
ThreadsOpt = Annotated[str, typer.Option(help="Comma-separated thread counts.")]
WarmupOpt = Annotated[int, typer.Option(help="Untimed runs before timing.")]
ItersOpt = Annotated[int, typer.Option(help="Timed runs per batch and thread count.")]
SecondsOpt = Annotated[float | None, typer.Option(help="Stop timing a configuration after this long.")]
CpusOpt = Annotated[str | None, typer.Option(help="Pin to these cores, e.g. 0 (emulate a small device).")]
ProviderOpt = Annotated[str, typer.Option(help="onnxruntime execution provider.")]


def _bench_settings(batches, threads, warmup, iters, seconds, provider, cpus):
    from sfsc_deploy.perf.bench import BenchSettings

    return BenchSettings(
        _ints(batches, "--batches"),
        _ints(threads, "--threads"),
        warmup,
        iters,
        seconds,
        provider,
        _ints(cpus, "--cpus") if cpus else None,
    )


@app.command()
def bench(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for bench.json/.md and the plots.")],
    models: Annotated[list[Path] | None, typer.Argument(help="Exported .onnx / .engine files.")] = None,
    checkpoint_path: Annotated[
        Path | None, typer.Option("--checkpoint", help="Also time the PyTorch sliced model (baseline).")
    ] = None,
    widths: Annotated[str | None, typer.Option(help="Widths of --checkpoint to time (default: all).")] = None,
    batches: BatchesOpt = "1,8,32",
    threads: ThreadsOpt = "1",
    warmup: WarmupOpt = 10,
    iters: ItersOpt = 100,
    seconds: SecondsOpt = None,
    provider: ProviderOpt = "CPUExecutionProvider",
    cpus: CpusOpt = None,
    eval_path: Annotated[
        Path | None, typer.Option("--eval", help="compat_matrix.json: adds the accuracy-vs-latency plot.")
    ] = None,
) -> None:
    """Latency (mean, std, percentiles), throughput, memory, size, params and MACs per model."""
    from exporters.files import write_text
    from sfsc_deploy.evaluation.report import load_matrix_report
    from sfsc_deploy.models import checkpoint
    from sfsc_deploy.perf.bench import (
        bench_targets,
        device_description,
        open_target,
        results_markdown,
        torch_target,
    )
    from sfsc_deploy.perf.plots import accuracy_vs_latency, latency_vs_width

    settings = _bench_settings(batches, threads, warmup, iters, seconds, provider, cpus)
    matrix = load_matrix_report(eval_path) if eval_path else None
    targets = [open_target(m, provider) for m in models or []]
    if checkpoint_path is not None:
        net = checkpoint.load(checkpoint_path)
        chosen = [float(w) for w in widths.split(",")] if widths else net.config.all_widths
        targets += [torch_target(net, net.check_width(w), str(checkpoint_path)) for w in chosen]
    if not targets:
        raise SfscError("nothing to benchmark; pass exported models and/or --checkpoint")
    results = bench_targets(targets, settings)
    record = {
        "device": device_description(),
        "settings": {**settings.__dict__},
        "results": [r.to_dict() for r in results],
    }
    table = results_markdown(results)
    write_text(out_dir / "bench.json", json.dumps(record, indent=2, default=list) + "\n")
    from datetime import UTC, datetime

    record["command"] = "sfsc-deploy " + " ".join(sys.argv[1:])
    record["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    dev = record["device"]
    header = (
        f"# Benchmark\n\n- command: `{record['command']}`\n- machine: {dev['cpu']}, {dev['cores']} cores, "
        f"{dev['system']}\n- date: {record['date']}\n"
        f"- onnxruntime {dev['onnxruntime']}, torch {dev['torch']}\n"
    )
    write_text(out_dir / "bench.md", f"{header}\n{table}\n")
    latency_vs_width(results, out_dir / "latency_vs_width.png")
    written = ["bench.json", "bench.md", "latency_vs_width.png"]
    if matrix is not None:
        accuracy_vs_latency(results, matrix, out_dir / "accuracy_vs_latency.png")
        written.append("accuracy_vs_latency.png")
    out.print(table)
    out.print(f"wrote {', '.join(str(out_dir / w) for w in written)}")


@app.command()
def profile(
    checkpoint_path: Annotated[Path, typer.Option("--checkpoint", help="Trained checkpoint.")],
    out_path: Annotated[Path, typer.Option("--out", help="Device latency table to write (JSON).")],
    export_dir: Annotated[
        Path | None, typer.Option(help="Reuse (or keep) the per-width ONNX exports in this folder.")
    ] = None,
    batches: BatchesOpt = "1,8",
    threads: ThreadsOpt = "1",
    warmup: WarmupOpt = 10,
    iters: ItersOpt = 50,
    seconds: SecondsOpt = None,
    provider: ProviderOpt = "CPUExecutionProvider",
    cpus: CpusOpt = None,
) -> None:
    """Benchmark every trained width on this machine and write its latency table for `plan`."""
    from sfsc_deploy.perf.planning import profile_device

    settings = _bench_settings(batches, threads, warmup, iters, seconds, provider, cpus)
    table = profile_device(checkpoint_path, out_path, settings, export_dir=export_dir)
    grid = Table("width", "batch", "threads", "p50 ms", "p99 ms", "img/s", title=table["device"]["cpu"])
    for e in table["entries"]:
        lat = e["latency_ms"]
        grid.add_row(
            f"{e['width']:g}",
            str(e["batch"]),
            str(e["threads"]),
            f"{lat['median']:.3f}",
            f"{lat['p99']:.3f}",
            f"{e['throughput']:.1f}",
        )
    out.print(grid)
    out.print(f"wrote {out_path}")


@app.command()
def plan(
    table_path: Annotated[Path, typer.Option("--table", help="Device table from `profile`.")],
    budget_ms: Annotated[float, typer.Option(help="Latency budget per batch in ms.")],
    percentile: Annotated[float, typer.Option(help="50 | 90 | 95 | 99 | 100 (max).")] = 99,
    batch: Annotated[int, typer.Option(help="Batch size the device runs.")] = 1,
    threads: Annotated[int | None, typer.Option(help="Threads (default: the fewest profiled).")] = None,
    eval_path: Annotated[
        Path | None, typer.Option("--eval", help="compat_matrix.json: report the expected accuracy.")
    ] = None,
) -> None:
    """The widest trained width whose latency meets the budget on the profiled device (exit 1: none)."""
    from sfsc_deploy.evaluation.report import load_matrix_report
    from sfsc_deploy.perf.planning import load_table, plan_width

    matrix = load_matrix_report(eval_path) if eval_path else None
    result = plan_width(
        load_table(table_path), budget_ms, percentile=percentile, batch=batch, threads=threads, matrix=matrix
    )
    grid = Table("width", f"p{percentile:g} ms", "fits")
    for c in result.candidates:
        grid.add_row(f"{c['width']:g}", f"{c['latency_ms']:.3f}", "yes" if c["fits"] else "no")
    out.print(grid)
    out.print(result.message())
    if result.width is None:
        raise typer.Exit(1)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for everything the demo makes.")] = Path(
        "sfsc-demo"
    ),
    quick: Annotated[bool, typer.Option(help="Tiny model and data (about a minute): a smoke run.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the data and the training.")] = 0,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
) -> None:
    """Train, evaluate, export every tier, benchmark and verify, on built-in data; writes report.md."""
    from sfsc_deploy.demo import DemoConfig, run_demo

    report = run_demo(DemoConfig(out_dir, quick, seed, force), err)
    out.print(f"wrote {report}")


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
