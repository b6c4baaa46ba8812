"""Training commands: train SFSC or a baseline, evaluate the compatibility matrix, plot the log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from sfsc_deploy.cli.model import (
    WIDTHS_TEXT,
    DivisorOpt,
    FeatureDimOpt,
    InitOpt,
    InputSizeOpt,
    LastStrideOpt,
    WidthMultOpt,
    WidthsOpt,
    arch_options,
)
from sfsc_deploy.cli.options import (
    COMMAND_ARGS,  # noqa: F401  (re-exported: the command line main() ran)
    DEVICE_HELP,
    DataOpt,
    DeviceOpt,
    ForceOpt,
    FormatOpt,
    NprocOpt,
    SynthSeedOpt,
    app,
    dataset,
    given,
    is_main_process,
    out,
    relaunch,
    with_default,
    without_nproc,
)
from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.device import AMP_MODES
from sfsc_deploy.losses.names import KL_VARIANTS, ORI_LOSSES
from sfsc_deploy.models.config import ARCH_NAMES
from sfsc_deploy.train.config import AGGREGATIONS, SAMPLERS, SEPARATE_METHODS, SWITCHABLE_METHODS, TrainConfig


def _opt(text: str, name: str, flag: str | None = None):
    """An option whose default is TrainConfig's (shown in --help, applied by the library when unset)."""
    args = (flag,) if flag else ()
    return typer.Option(*args, help=with_default(text, TrainConfig, name), show_default=False)


_without_nproc = without_nproc  # the shared --nproc helpers live in cli.options (train, eval, extract)


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory to write.")],
    data: DataOpt = "synthetic",
    fmt: FormatOpt = None,
    synthetic_seed: SynthSeedOpt = 0,
    arch: Annotated[str, typer.Option(help=" | ".join(ARCH_NAMES))] = ARCH_NAMES[0],
    widths: WidthsOpt = WIDTHS_TEXT,
    method: Annotated[
        str | None,
        _opt(
            f"{' | '.join(SWITCHABLE_METHODS)} (one switchable network); "
            f"{' | '.join(SEPARATE_METHODS)} (one network per width).",
            "method",
        ),
    ] = None,
    loss: Annotated[str | None, _opt(f"Full model's loss: {' | '.join(ORI_LOSSES)}.", "loss")] = None,
    aggregation: Annotated[
        str | None,
        typer.Option(help=f"{' | '.join(AGGREGATIONS)} (default: project for sfsc, sum otherwise)."),
    ] = None,
    kl: Annotated[str | None, _opt(f"SFSC KL term: {' | '.join(KL_VARIANTS)} (on α | on α̃).", "kl")] = None,
    kl_weight: Annotated[float | None, _opt("λ of the SFSC KL term.", "kl_weight")] = None,
    kl_anneal_epochs: Annotated[
        int | None, _opt("Ramp λ up linearly over this many epochs (0: constant).", "kl_anneal_epochs")
    ] = None,
    evidence_offset: Annotated[
        bool | None,
        _opt(
            "Learn the classifier's logit offset in the evidential loss (without it u is pinned near 0.5; "
            "docs/evidential_head.md).",
            "evidence_offset",
            "--evidence-offset/--no-evidence-offset",
        ),
    ] = None,
    offset_init: Annotated[float | None, _opt("Start value of that offset.", "offset_init")] = None,
    offset_lr: Annotated[float | None, _opt("Learning rate of that offset.", "offset_lr")] = None,
    epochs: Annotated[int | None, _opt("Training epochs.", "epochs")] = None,
    batch_ids: Annotated[int | None, _opt("Identities per batch (P).", "batch_ids")] = None,
    batch_k: Annotated[int | None, _opt("Images per identity (K).", "batch_k")] = None,
    sampler: Annotated[
        str | None,
        _opt(
            f"{' | '.join(SAMPLERS)}: P identities × K images per batch, or shuffled batches of P·K images "
            "(not with softmax+triplet, which needs same-identity pairs).",
            "sampler",
        ),
    ] = None,
    optimizer: Annotated[str | None, _opt("adam | sgd (momentum 0.9, Nesterov).", "optimizer")] = None,
    lr: Annotated[float | None, _opt("Peak learning rate.", "lr")] = None,
    weight_decay: Annotated[float | None, _opt("Weight decay.", "weight_decay")] = None,
    warmup_epochs: Annotated[float | None, _opt("Linear warm-up length in epochs.", "warmup_epochs")] = None,
    schedule: Annotated[str | None, _opt("cosine | step (x0.1 at 50% and 75%).", "schedule")] = None,
    erasing: Annotated[float | None, _opt("Random-erasing probability.", "erasing")] = None,
    val_ids: Annotated[
        int | None,
        _opt(
            "Carve this many training identities out as a validation split (tuning; never the test ids).",
            "val_ids",
        ),
    ] = None,
    seed: Annotated[int | None, _opt("Seed of initialisation, batches and augmentation.", "seed")] = None,
    init: InitOpt = None,
    sync_bn: Annotated[
        bool | None,
        _opt(
            "Synchronised BatchNorm: with --nproc N (or torchrun) every width's BatchNorm normalises with "
            "the statistics of the whole global batch, not each process's share (off as in FastReID); "
            "no effect with one process.",
            "sync_bn",
            "--sync-bn/--no-sync-bn",
        ),
    ] = None,
    device: Annotated[str | None, _opt(DEVICE_HELP, "device")] = None,
    amp: Annotated[
        str | None,
        _opt(
            f"Mixed precision of the forward passes: {' | '.join(AMP_MODES)} (fp16 adds loss scaling); "
            "gradients, their Gram matrix and projection stay float32.",
            "amp",
        ),
    ] = None,
    channels_last: Annotated[
        bool | None,
        _opt(
            "NHWC layout for the model and its inputs (for CUDA; on the CPU it runs PyTorch's slower "
            "native convolutions).",
            "channels_last",
            "--channels-last/--no-channels-last",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        _opt(
            "Worker processes that read and augment batches ahead of the model (pinned memory on CUDA); "
            "unset: 0 for preloaded images on the CPU, else min(8, CPUs / processes). Same batches "
            "either way.",
            "workers",
        ),
    ] = None,
    stream: Annotated[
        bool | None,
        _opt(
            "Read the training images from disk while training (in the workers) instead of preloading them.",
            "stream",
            "--stream/--no-stream",
        ),
    ] = None,
    bank_budget_gb: Annotated[
        float | None,
        _opt(
            "Preload the training images only up to this many GB per process (uint8 at the input size); "
            "a larger set streams from disk.",
            "bank_budget_gb",
        ),
    ] = None,
    feature_dim: FeatureDimOpt = None,
    width_mult: WidthMultOpt = None,
    size: InputSizeOpt = None,
    divisor: DivisorOpt = None,
    last_stride: LastStrideOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last epoch.")] = False,
    force: Annotated[bool, typer.Option(help="Start over in a non-empty --out.")] = False,
    tensorboard: Annotated[
        bool, typer.Option(help="Also write a TensorBoard event file (needs the tensorboard package).")
    ] = False,
    plots: Annotated[
        bool, typer.Option(help="Draw the log's plots into <out>/plots at the end (see plot-log).")
    ] = True,
    nproc: Annotated[
        int,
        typer.Option(
            help="Training processes on this machine (torch's elastic launcher, as torchrun "
            "--nproc-per-node): each takes --batch-ids / N identities of every batch; NCCL on CUDA "
            "(one GPU each), gloo on the CPU.",
            min=1,
        ),
    ] = 1,
) -> None:
    """Train SFSC (or a baseline) and write checkpoints, a JSONL log, plots and networks.json."""
    from sfsc_deploy.train import train as run_training

    cfg = TrainConfig(
        **given(
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
            init=init,
            sync_bn=sync_bn,
            device=device,
            amp=amp,
            channels_last=channels_last,
            workers=workers,
            stream=stream,
            bank_budget_gb=bank_budget_gb,
        )
    )
    options = arch_options(width_mult, size, divisor, last_stride)
    if nproc > 1:
        from sfsc_deploy.train.distributed import check_shardable, env_world

        if env_world().many:
            raise SfscError("--nproc starts its own processes; drop it when running under torchrun")
        check_shardable(cfg.batch_ids, cfg.batch_k, cfg.sampler, nproc)
        relaunch("train", nproc)
        return  # rank 0 printed what was trained
    splits = dataset(data, fmt, synthetic_seed)
    result = run_training(
        splits,
        arch,
        widths,
        cfg,
        out_dir,
        options=options,
        resume=resume,
        force=force,
        tensorboard=tensorboard,
        plots=plots,
        **given(feature_dim=feature_dim),
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun: rank 0 reports
        return
    if result.pretrained is not None:
        out.print(result.pretrained.summary())
    out.print(
        f"trained {cfg.method} ({cfg.aggregation}) on {splits.name}: "
        f"{len(result.networks)} widths → {out_dir}/networks.json"
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
    device: DeviceOpt = None,
    force: ForceOpt = False,
    nproc: NprocOpt = 1,
) -> None:
    """Cross-width compatibility matrix M(φ_q, φ_g) and the compatibility rule per pair."""
    from sfsc_deploy.evaluation.report import matrix_markdown
    from sfsc_deploy.evaluation.runs import evaluate_run

    if nproc > 1:
        relaunch("eval", nproc)
        return  # rank 0 printed the matrix
    matrix = evaluate_run(
        checkpoint_path,
        dataset(data, fmt, synthetic_seed),
        out_dir,
        batch_size=batch_size,
        flip=flip,
        force=force,
        **given(device=device),
    )
    if not is_main_process():  # under torchrun or --nproc: rank 0 reports (and wrote the report)
        return
    out.print(matrix_markdown(matrix))
    if matrix.all_pass():
        out.print("compatibility rule: pass on every pair")
    else:
        out.print(f"compatibility rule: FAIL on some pairs (see {out_dir}/compat_matrix.md)")
    out.print(f"wrote {out_dir}/compat_matrix.json, .md, .png")


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
    from sfsc_deploy.train.log_plots import plot_run

    for folder, plots in plot_run(run_dir, out_dir).items():
        u = read_log(folder).per_width("uncertainty")
        summary = ", ".join(f"{w:g}× {float(values[-50:].mean()):.3f}" for w, values in u.items())
        written = ", ".join(p.name for p in plots.paths)
        target = plots.losses.parent
        out.print(f"{folder}: " + (f"final u {summary}; " if u else "") + f"wrote {written} to {target}")
