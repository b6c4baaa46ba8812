"""One training run per method: the switchable methods train one network, the baselines several.

Every run directory has ``networks.json`` (models.networks) mapping each width to the checkpoint
that serves it, so evaluation and export treat SFSC and the baselines alike.

The training images are preloaded (data.bank) when they fit ``cfg.bank_budget_gb`` per process at the
input size; a larger set, or ``cfg.stream``, is read from disk by the loader's workers while training
(data.stream), with the same batches. The validation images are always preloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from sfsc_deploy.data.bank import ImageBank, build_bank
from sfsc_deploy.data.records import Record, ReidSplits, split_validation
from sfsc_deploy.data.stream import StreamSource
from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.device import check_amp, resolve_device
from sfsc_deploy.models import ArchOptions, NetConfig, SwitchableNet, build, checkpoint
from sfsc_deploy.models.networks import CHECKPOINT, NETWORKS, write_networks
from sfsc_deploy.models.pretrained import PretrainedInit, PretrainedReport
from sfsc_deploy.switchable.channels import parse_widths
from sfsc_deploy.train import distributed
from sfsc_deploy.train.config import TrainConfig
from sfsc_deploy.train.log_plots import plot_log
from sfsc_deploy.train.tasks import one_to_one_task, switchable_tasks
from sfsc_deploy.train.trainer import LOG, STATE, TENSORBOARD, Reference, Trainer

PLOTS = "plots"


@dataclass
class TrainResult:
    out_dir: Path
    method: str
    networks: dict[float, Path] = field(default_factory=dict)  # width -> checkpoint serving it
    pretrained: PretrainedReport | None = None  # the ImageNet start (cfg.init) of a network not resumed
    streamed: bool = False  # the training images were read from disk while training, not preloaded


def _validator(val: tuple[ImageBank, ImageBank] | None, widths: list[float]):
    """mAP on the validation identities carved from the training set (never the test ids).

    Many processes: every rank calls it, extracts its shard of the images with rank 0's BatchNorm
    statistics (those rank 0 saves) and gets the whole result.
    """
    if val is None:
        return None
    from sfsc_deploy.evaluation import compatibility_matrix, extract_features

    query, gallery = val

    def validate(net: SwitchableNet) -> dict[str, Any]:
        opts = net.config.options
        qf, gf = {}, {}
        with distributed.rank0_buffers(net):
            for w in [w for w in widths if w in net.widths]:
                with net.at_width(w):
                    qf[w] = extract_features(net, query.images, opts.mean, opts.std)
                    gf[w] = extract_features(net, gallery.images, opts.mean, opts.std)
        matrix = compatibility_matrix(qf, gf, query.pids, gallery.pids, query.camids, gallery.camids)
        return {f"mAP/{q:g}->{g:g}": round(m.mAP, 2) for (q, g), m in matrix.metrics.items()}

    return validate


def train(
    splits: ReidSplits,
    arch: str,
    widths: list[float] | str,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    feature_dim: int = NetConfig.feature_dim,
    options: ArchOptions | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    tensorboard: bool = False,
    plots: bool = True,
) -> TrainResult:
    """Train ``cfg.method`` on ``splits.train`` and write the run directory ``out_dir``.

    ``plots`` draws the training log's pictures into ``<run>/plots`` at the end (``plot_log``);
    ``tensorboard`` also writes a TensorBoard event file while training. ``cfg.init`` starts the
    backbone of every network (each baseline's too) from ImageNet weights (models.pretrained).

    Started by torchrun (WORLD_SIZE > 1 in the environment) every process runs this with the same
    arguments: it joins the process group (train.distributed), trains its shard of every batch, and
    rank 0 alone writes the run directory.
    """
    world = distributed.env_world()
    distributed.check_shardable(cfg.batch_ids, cfg.batch_k, cfg.sampler, world.size)
    joined = world.many and not distributed.current().many
    distributed.setup(cfg.device)
    try:
        return _train(
            splits,
            arch,
            widths,
            cfg,
            out_dir,
            feature_dim=feature_dim,
            options=options,
            resume=resume,
            force=force,
            progress=progress,
            tensorboard=tensorboard,
            plots=plots,
        )
    finally:
        if joined:
            distributed.teardown()


def _train(
    splits: ReidSplits,
    arch: str,
    widths: list[float] | str,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    feature_dim: int,
    options: ArchOptions | None,
    resume: bool,
    force: bool,
    progress: bool,
    tensorboard: bool,
    plots: bool,
) -> TrainResult:
    world = distributed.current()
    progress = progress and world.main  # one progress bar, rank 0's
    out_dir = Path(out_dir)
    widths = parse_widths(widths)
    options = options or ArchOptions()
    # a missing GPU is refused before any image is read
    check_amp(resolve_device(distributed.device_name(cfg.device, world)), cfg.amp)
    init = PretrainedInit(cfg.init) if cfg.init else None
    if init is not None:  # a width multiplier or a file no ImageNet weights fit: before any work
        init.check(arch, options)
        if not resume:
            init.read(arch)
    if out_dir.exists() and any(out_dir.iterdir()) and not (resume or force):
        raise SfscError(
            f"{out_dir} already holds a run; pass --resume to continue it, --force to "
            f"start over, or choose another --out"
        )
    distributed.barrier()  # every rank has looked at --out before rank 0 writes into it
    train_records, num_classes, val = splits.train, splits.num_classes, None
    if cfg.val_ids:
        train_records, vq, vg = split_validation(splits.train, cfg.val_ids, cfg.seed)
        num_classes = len({r.pid for r in train_records})
        val = (
            build_bank(vq, options.input_size, split="val-query", progress=progress),
            build_bank(vg, options.input_size, split="val-gallery", progress=progress),
        )
    bank = training_images(train_records, options.input_size, cfg, progress=progress)
    validate = _validator(val, widths)

    def new_net(net_widths: list[float], init_seed: int = cfg.seed) -> SwitchableNet:
        torch.manual_seed(init_seed)
        return build(arch, net_widths, feature_dim, num_classes, **vars(options))

    def fit(net, tasks, run_dir, reference=None, label="train") -> Path:
        resuming = resume and (Path(run_dir) / CHECKPOINT).exists()
        if init is not None and not resuming:  # a resumed network restores its trained weights instead
            result.pretrained = init.apply(net)
        trainer = Trainer(net, tasks, cfg, bank, run_dir, reference, validate, progress, label, tensorboard)
        if resuming:
            trainer.resume()
        checkpoint_path = trainer.fit()
        if plots and world.main:
            plot_log(run_dir, Path(run_dir) / PLOTS, title=label)
        return checkpoint_path

    if world.main:
        if force and not resume:
            _clear_run(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    result = TrainResult(out_dir, cfg.method, streamed=isinstance(bank, StreamSource))
    if cfg.switchable:
        net = new_net(widths)
        ck = fit(net, switchable_tasks(cfg, widths), out_dir, label=f"{cfg.method} {arch}")
        result.networks = {w: ck for w in widths}
    else:
        full_dir = out_dir / "w1"
        full_ck = fit(
            new_net([1.0]), [one_to_one_task(cfg, 1.0, "unified")], full_dir, label=f"{cfg.method} {arch} 1.0"
        )
        result.networks[1.0] = full_ck
        reference = None
        if cfg.method in ("bct", "asym"):
            frozen = checkpoint.load(full_ck).requires_grad_(False)
            reference = Reference(frozen)
        for w in [w for w in widths if w < 1.0]:
            kind = "unified" if cfg.method == "unified" else cfg.method
            run_dir = out_dir / f"w{w:g}"
            result.networks[w] = fit(
                new_net([w], network_seed(cfg.seed, w)),
                [one_to_one_task(cfg, w, kind)],
                run_dir,
                reference,
                label=f"{cfg.method} {arch} {w:g}",
            )
    if world.main:
        write_networks(result.out_dir, result.method, result.networks)
    distributed.barrier()
    return result


def training_images(
    records: list[Record], size: tuple[int, int], cfg: TrainConfig, *, progress: bool = True
) -> ImageBank | StreamSource:
    """The preloaded bank when the images fit ``cfg.bank_budget_gb`` (uint8, 3×H×W each) and
    ``cfg.stream`` is off; otherwise a source the loader's workers read from disk (said on the console)."""
    needed = len(records) * 3 * int(size[0]) * int(size[1]) / 1e9
    if not cfg.stream and needed <= cfg.bank_budget_gb:
        return build_bank(records, size, split="train", progress=progress)
    if distributed.current().main:
        budget = f"{needed:.3g} GB preloaded > --bank-budget-gb {cfg.bank_budget_gb:g}"
        why = "--stream" if cfg.stream else budget
        Console(stderr=True).print(
            f"train: streaming {len(records)} images from disk while training ({why})",
            markup=False,
            soft_wrap=True,  # one line, whatever the terminal's width
        )
    return StreamSource(records, size, split="train", progress=progress)


def network_seed(seed: int, width: float) -> int:
    """The initialisation seed of a baseline's separate width-w network.

    Separate networks are independent models: seeding them alike would make each narrow one start
    from the slice of the full model's initialisation, a shared start the baselines must not get.
    """
    return seed if width >= 1.0 else seed * 1_000_003 + round(width * 10_000)


def _clear_run(out_dir: Path) -> None:
    """--force: remove the files a previous run wrote (only those, never the whole folder)."""
    for folder in [out_dir, *sorted(out_dir.glob("w*"))]:
        for name in (CHECKPOINT, STATE, LOG, NETWORKS):
            (folder / name).unlink(missing_ok=True)
        written = [*(folder / PLOTS).glob("*.png"), *(folder / TENSORBOARD).glob("events.out.tfevents.*")]
        for path in written:
            path.unlink()
