"""The training loop of one network: k tasks per step, aggregated gradients, epoch checkpoints.

Per step every task does its own forward and ``autograd.grad`` (so only one graph is alive at a
time), its flattened gradient becomes a row of the k×P matrix G, and the aggregation turns G
into one update. Every random choice (batches, augmentation, projection order) comes from
generators seeded by (seed, epoch), so resuming at an epoch boundary continues exactly.

The network runs on ``cfg.device`` (sfsc_deploy.io.device); batches are read and augmented on the CPU
by the training loader (sfsc_deploy.data.loader: ``cfg.workers`` worker processes, pinned memory on
CUDA, prefetch), every image with its own generator seeded by (seed, epoch, step, its place in the
global batch), then moved. The images come preloaded (``ImageBank``) or streamed from disk
(``StreamSource``, for a set over ``cfg.bank_budget_gb`` or with ``cfg.stream``); either way, and for
any number of workers, the batches are the same. Images that fail to decode while streaming are
replaced by one of the same identity; their count reaches the log (``unreadable``, in the last step
record of an epoch) and the console once.

Under ``cfg.amp`` only the network's forward passes autocast: its outputs are cast back to float32 for
the losses, and G, the Gram matrix and the projection are float32. fp16 scales the losses
(``torch.amp.GradScaler``; a step whose gradients overflow is skipped and the scale lowered).
Checkpoints and optimiser state are saved from CPU tensors, so a run resumes on any device.

Many processes (sfsc_deploy.train.distributed): every rank draws the same global batch and reads and
augments only its own slice (each image with the generator one process would give it); its local G is
averaged over the ranks by one ``all_reduce`` before the (identically seeded) aggregation, so every
rank takes the same step. Rank 0 alone logs and writes checkpoint and state; the others wait for it at
a barrier and resume from the same files. With ``cfg.sync_bn`` the BatchNorms normalise with the
global batch's statistics while ``fit`` runs (switchable.sync_bn).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from exporters.files import write_text
from sfsc_deploy.data.bank import ImageBank
from sfsc_deploy.data.loader import EpochBatches, ImageSource, epoch_loader, resolve_workers
from sfsc_deploy.data.sampler import PKSampler, RandomSampler
from sfsc_deploy.data.transforms import TrainTransform
from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.device import (
    autocast,
    check_amp,
    grad_scaler,
    memory_format,
    resolve_device,
    training_kernels,
)
from sfsc_deploy.models import NetOutput, SwitchableNet, checkpoint
from sfsc_deploy.models.networks import CHECKPOINT
from sfsc_deploy.switchable.sync_bn import set_sync_bn
from sfsc_deploy.train import distributed
from sfsc_deploy.train.aggregation import aggregate
from sfsc_deploy.train.config import TrainConfig
from sfsc_deploy.train.schedule import lr_factor
from sfsc_deploy.train.state import load_state, save_state
from sfsc_deploy.train.tasks import StepContext, Task

STATE, LOG = "train_state.safetensors", "train_log.jsonl"
TENSORBOARD = "tensorboard"


def _summary_writer(log_dir: Path):
    """TensorBoard's own writer (torch.utils.tensorboard), for people who watch a run live."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SfscError(
            "--tensorboard needs the tensorboard package; install it with "
            "pip install 'sfsc-deploy[tensorboard]' or drop --tensorboard"
        ) from None
    return SummaryWriter(log_dir=str(log_dir))


class _NoLog:
    """The log of a rank other than 0: rank 0 writes the one log."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class TrainingDiverged(SfscError):
    """A loss became NaN/inf; the last good checkpoint is kept."""


@dataclass
class Reference:
    """A frozen full model for the one-to-one baselines."""

    net: SwitchableNet

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.eval()(x).float()


def _optimizer(
    cfg: TrainConfig, params: list[torch.nn.Parameter], offset: torch.nn.Parameter | None
) -> torch.optim.Optimizer:
    """One group for the network; the evidence offset gets its own (``offset_lr``, no weight decay:
    it is one scalar that must travel several units, and decay would pull it back to 0)."""
    groups: list[dict[str, Any]] = [{"params": [p for p in params if p is not offset]}]
    if offset is not None:
        groups.append({"params": [offset], "lr": cfg.offset_lr, "weight_decay": 0.0})
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
    )


def _generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


def _log_until(log: Path, epoch: int) -> list[str]:
    """The log's lines up to ``epoch``: the interrupted epoch's are dropped, and so is a last line
    cut off by the kill; a damaged line before it is an error, not something to drop silently."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    kept = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            at = entry["epoch"]
            if not isinstance(at, int) or isinstance(at, bool):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                break
            raise SfscError(
                f"cannot resume: {log} line {number} is damaged; repair or delete that line"
            ) from None
        if at <= epoch:
            kept.append(line)
    return kept


def _config_changes(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: saved → now`` for every model option that differs (options flattened)."""
    changes = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += _config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a} → {b}")
    return changes


class Trainer:
    def __init__(
        self,
        net: SwitchableNet,
        tasks: list[Task],
        cfg: TrainConfig,
        bank: ImageSource,  # ImageBank (preloaded) or StreamSource (read from disk while training)
        run_dir: str | Path,
        reference: Reference | None = None,
        validate: Callable[[SwitchableNet], dict[str, Any]] | None = None,
        progress: bool = True,
        label: str = "train",
        tensorboard: bool = False,
    ) -> None:
        self.net, self.tasks, self.cfg, self.bank = net, tasks, cfg, bank
        self.run_dir = Path(run_dir)
        self.reference, self.validate, self.progress, self.label = reference, validate, progress, label
        self.tensorboard = tensorboard
        self.world = distributed.current()
        distributed.check_shardable(cfg.batch_ids, cfg.batch_k, cfg.sampler, self.world.size)
        self.device = resolve_device(distributed.device_name(cfg.device, self.world))
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world.size)))
        self.workers = resolve_workers(
            cfg.workers,
            preloaded=isinstance(bank, ImageBank),
            device_type=self.device.type,
            local_processes=local,
        )
        self.failed: set[int] = set()  # images replaced because they failed to decode (every rank's)
        self.reported = 0  # how many of them the console was told about
        check_amp(self.device, cfg.amp)
        self.memory_format = memory_format(cfg.channels_last)
        if self.device.type != "cpu" or cfg.channels_last:  # before the optimiser sees the parameters
            net.to(self.device, memory_format=self.memory_format)
            if reference is not None:
                reference.net.to(self.device, memory_format=self.memory_format)
        self.scaler = grad_scaler(self.device, cfg.amp)
        # the evidence offset only trains where an evidential loss reads it
        offset = net.classifier.evidence_offset
        self.offset = offset if cfg.method == "sfsc" and cfg.evidence_offset else None
        self.params = [
            p for p in net.parameters() if p.requires_grad and (p is not offset or self.offset is not None)
        ]
        self.optimizer = _optimizer(cfg, self.params, self.offset)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.sampler = (
            PKSampler(bank.pids, cfg.batch_ids, cfg.batch_k, cfg.seed)
            if cfg.sampler == "pk"
            else RandomSampler(len(bank.pids), cfg.batch_ids * cfg.batch_k, cfg.seed)
        )
        self.transform = TrainTransform(
            net.config.options.mean, net.config.options.std, flip=cfg.flip, pad=cfg.pad, erasing=cfg.erasing
        )
        self.steps_per_epoch = len(self.sampler)
        self.sizes = [p.numel() for p in self.params]
        # G (k×P) and, in one more column, the k losses: a step's one all_reduce carries both
        total = sum(self.sizes)
        self.reduced = torch.zeros(len(tasks), total + 1, dtype=torch.float32, device=self.device)
        self.grads, self.losses = self.reduced[:, :total], self.reduced[:, total]
        # row i of G, cut once into one view per parameter: gradients are written in place
        self.grad_views = [row.split(self.sizes) for row in self.grads]
        self.start_epoch, self.step = 0, 0

    # ----------------------------------------------------------------------------------- state
    def resume(self) -> None:
        ck, state = self.run_dir / CHECKPOINT, self.run_dir / STATE
        if not ck.exists():
            raise SfscError(f"cannot resume: no {CHECKPOINT} in {self.run_dir}; start without --resume")
        saved = checkpoint.load(ck)
        changed = _config_changes(saved.config.to_dict(), self.net.config.to_dict())
        if changed:
            raise SfscError(
                f"cannot resume {self.run_dir}: it was started with another model "
                f"({'; '.join(changed)}); use the same model options or a new --out"
            )
        self.net.load_state_dict(saved.state_dict())  # copied into this run's device and layout
        info = load_state(state, self.optimizer)  # moved to each parameter's device by torch
        # through from_dict, so a run saved before an option existed compares with that option's
        # default; device, amp and channels_last may change (RUNTIME_OPTIONS)
        saved_options = TrainConfig.from_dict(info["config"]).learning_options()
        options = self.cfg.learning_options()
        if saved_options != options:
            raise SfscError(
                f"cannot resume {self.run_dir}: it was started with other options "
                f"({'; '.join(_config_changes(saved_options, options))}); use the same options or a new --out"
            )
        if self.scaler is not None and "grad_scaler" in info:  # fp16: continue with the scale reached
            self._restore_scale(info["grad_scaler"], state)
        self.start_epoch, self.step = info["epoch"] + 1, info["step"]
        log = self.run_dir / LOG
        if log.exists() and self.world.main:
            write_text(log, "".join(line + "\n" for line in _log_until(log, info["epoch"])))

    def _restore_scale(self, saved: Any, state: Path) -> None:
        """The loss scale and its growth counter from the state file (both checked: a user's file)."""
        scale = saved.get("scale") if isinstance(saved, dict) else None
        tracker = saved.get("_growth_tracker") if isinstance(saved, dict) else None
        number = isinstance(scale, int | float) and not isinstance(scale, bool)
        count = isinstance(tracker, int) and not isinstance(tracker, bool)
        if not (number and math.isfinite(scale) and scale > 0 and count and tracker >= 0):
            raise SfscError(f"cannot resume: {state} is missing or damaged; start a new run without --resume")
        restored = {**self.scaler.state_dict(), "scale": float(scale), "_growth_tracker": tracker}
        self.scaler.load_state_dict(restored)

    def _save(self, epoch: int, val: dict[str, Any] | None) -> None:
        """Rank 0 writes (atomically); every rank leaves only once the files are complete."""
        if self.world.main:
            self._write(epoch, val)
        distributed.barrier()

    def _write(self, epoch: int, val: dict[str, Any] | None) -> None:
        training = {
            "method": self.cfg.method,
            "epoch": epoch,
            "epochs": self.cfg.epochs,
            "config": self.cfg.to_dict(),
            "label": self.label,
            "val": val,
        }
        checkpoint.save(self.net, self.run_dir / CHECKPOINT, training=training)  # CPU, NCHW tensors
        info: dict[str, Any] = {"epoch": epoch, "step": self.step, "config": self.cfg.to_dict()}
        if self.scaler is not None:
            info["grad_scaler"] = self.scaler.state_dict()
        save_state(self.run_dir / STATE, self.optimizer, info)

    def _forward(self, x: torch.Tensor) -> NetOutput:
        """The network's training forward pass, autocast under ``cfg.amp``; float32 outputs."""
        with autocast(self.device, self.cfg.amp), training_kernels(self.device, self.cfg.channels_last):
            out = self.net(x)
        if self.cfg.amp == "off":
            return out
        return NetOutput(*(t.float() for t in out))

    # ------------------------------------------------------------------------------------ step
    def _train_step(
        self, x: torch.Tensor, y: torch.Tensor, epoch: int, gen: torch.Generator
    ) -> dict[str, Any]:
        record = self._local_gradients(x, y, epoch)
        return self._update(record, epoch, gen)

    def _local_gradients(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> dict[str, Any]:
        """Every task's gradient of its mean loss on (x, y) into its row of G, its loss into ``losses``."""
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)  # pinned on CUDA
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=self.memory_format)
        ctx = StepContext(epoch, self.net.classifier.weight, self.offset)
        if self.reference is not None:
            with autocast(self.device, self.cfg.amp):
                ctx.reference_features = self.reference.features(x)
            ctx.reference_classifier = self.reference.net.classifier
        record: dict[str, Any] = {}
        for i, task in enumerate(self.tasks):
            self.net.set_width(task.width)
            out = self._forward(x)
            if ctx.reference_features is None and task.width == 1.0:
                ctx.reference_features = out.features.detach()
            result = task.loss(out, y, ctx)
            loss = result.loss
            if not torch.isfinite(loss):
                if not self.world.many:
                    raise self._diverged(task, loss.item(), epoch)
                if self.cfg.sync_bn:  # the synchronised BatchNorms' backward collectives run on every rank
                    torch.autograd.grad(loss, self.params, allow_unused=True)
                # the other ranks wait in the all_reduce: raise after it, all together
                self.losses[i] = loss.detach()
                for view in self.grad_views[i]:
                    view.zero_()
                continue
            scaled = loss if self.scaler is None else self.scaler.scale(loss)
            with training_kernels(self.device, self.cfg.channels_last):
                grads = torch.autograd.grad(scaled, self.params, allow_unused=True)
            for view, g in zip(self.grad_views[i], grads, strict=True):
                if g is None:  # e.g. another width's BatchNorm
                    view.zero_()
                else:  # float32 parameters give float32 gradients; copy_ would cast any other
                    view.copy_(g.reshape(-1))
            self.losses[i] = loss.detach()
            record[f"logit_std/{task.width:g}"] = float(out.logits.detach().std())
            record.update({f"{name}/{task.width:g}": value for name, value in result.metrics.items()})
        self.net.set_width(1.0)
        return record

    def _update(self, record: dict[str, Any], epoch: int, gen: torch.Generator) -> dict[str, Any]:
        """G (averaged over the ranks) aggregated into one optimiser step."""
        # many processes: G becomes the mean of the ranks' G (distributed's docstring says for which
        # losses that is the gradient of the global batch's mean loss); the losses are averaged too
        tic = time.perf_counter()
        distributed.all_reduce_mean(self.reduced)
        losses = self.losses.tolist()  # waits for the all_reduce on every device
        if self.world.many:  # wall time in the collective, waiting for the slowest rank included
            record["allreduce_s"] = time.perf_counter() - tic
        for task, value in zip(self.tasks, losses, strict=True):
            if not math.isfinite(value):
                raise self._diverged(task, value, epoch)
            record[f"loss/{task.width:g}"] = value
        # fp16: G holds the gradients times the loss scale s (a power of 2), so the projection's
        # coefficients are exactly those of the unscaled G and the direction is s times its own
        agg = aggregate(self.grads, self.cfg.aggregation, gen)
        for p, update in zip(self.params, agg.direction.split(self.sizes), strict=True):
            p.grad = update.view_as(p)
        factor = lr_factor(self.cfg, self.step, self.steps_per_epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        scale = 1.0
        if self.scaler is None:
            self.optimizer.step()
        else:  # unscales p.grad, skips the step on inf/NaN, then adapts the scale
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            record["grad_scale"] = scale
        self.step += 1
        for task, norm in zip(self.tasks, agg.grad_norms, strict=True):
            record[f"grad_norm/{task.width:g}"] = norm / scale
        record.update(conflicts=agg.conflicts, lr=self.cfg.lr * factor)
        if self.offset is not None:
            record["evidence_offset"] = float(self.offset.detach())
        return record

    def _unreadable(self) -> dict[str, int]:
        """At an epoch's end: ``unreadable``, the images (every rank's) that failed to decode and were
        replaced so far, for the log; the console hears of them once (again only if more appear)."""
        if self.world.many and not isinstance(self.bank, ImageBank):  # a bank never fails: no collective
            self.failed = distributed.union(self.failed)
        if not self.failed:
            return {}
        if self.world.main and len(self.failed) > self.reported:
            Console(stderr=True).print(
                f"{self.label}: {len(self.failed)} image(s) failed to decode; each was replaced by "
                f"an image of the same identity",
                markup=False,
                soft_wrap=True,  # one line, whatever the terminal's width
            )
        self.reported = len(self.failed)
        return {"unreadable": len(self.failed)}

    def _diverged(self, task: Task, value: float, epoch: int) -> TrainingDiverged:
        return TrainingDiverged(
            f"{task.name} loss of width {task.width:g} became {value} at epoch "
            f"{epoch + 1}, step {self.step + 1}; kept the last good checkpoint in "
            f"{self.run_dir}; lower --lr or check the data"
        )

    # ------------------------------------------------------------------------------------ loop
    def fit(self) -> Path:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        main = self.world.main  # rank 0 logs, shows progress and writes; one process is rank 0
        set_sync_bn(self.net, self.cfg.sync_bn)  # only while training (a no-op for one process)
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        total = self.cfg.epochs * self.steps_per_epoch
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        board = _summary_writer(self.run_dir / TENSORBOARD) if self.tensorboard and main else None
        with (
            Progress(*columns, disable=not (self.progress and main), transient=False) as bar,
            open(self.run_dir / LOG, "a") if main else contextlib.nullcontext(_NoLog()) as log,
        ):
            job = bar.add_task(
                self.label, total=total, completed=self.start_epoch * self.steps_per_epoch, status=""
            )
            if self.offset is not None and self.step == 0:
                start = self.cfg.offset_init
                with torch.no_grad():
                    self.offset.fill_(-math.log(self.net.config.num_classes) if start is None else start)
            for epoch in range(self.start_epoch, self.cfg.epochs):
                self.net.train()
                agg_gen = _generator(self.cfg.seed, epoch, 2)
                # this rank's shard of every global batch, read and augmented by the loader's workers
                shard = functools.partial(distributed.shard, world=self.world) if self.world.many else None
                data = EpochBatches(
                    self.bank, self.sampler.batches(epoch), self.transform, self.cfg.seed, epoch, shard
                )
                with epoch_loader(data, self.workers, pin_memory=self.device.type == "cuda") as batches:
                    tic = time.perf_counter()
                    for at, (x, y, failed) in enumerate(batches):
                        record = self._train_step(x, y, epoch, agg_gen)
                        # the global batch's images over the step and its wait for them
                        speed = len(data.batches[at]) / (time.perf_counter() - tic)
                        record = {"epoch": epoch, "step": self.step, **record, "images_per_s": speed}
                        self.failed.update(failed.tolist())
                        if at == len(data) - 1:
                            record.update(self._unreadable())
                        log.write(json.dumps(record) + "\n")
                        if board is not None:
                            for name, value in record.items():
                                if name not in ("epoch", "step"):
                                    board.add_scalar(name, value, self.step)
                        main_loss = record[f"loss/{self.tasks[0].width:g}"]
                        bar.update(job, advance=1, status=f"loss {main_loss:.3f}  {speed:.0f} img/s")
                        tic = time.perf_counter()
                log.flush()
                # every rank validates (each extracts its shard of the images; the gather is a
                # collective all must join), rank 0 logs and saves the result
                val = self.validate(self.net) if self.validate else None
                if val is not None and main:
                    log.write(json.dumps({"epoch": epoch, "step": self.step, "val": val}) + "\n")
                    log.flush()
                    if board is not None:
                        for name, value in val.items():
                            board.add_scalar(f"val/{name}", value, self.step)
                if board is not None:
                    board.flush()
                self._save(epoch, val)
        if board is not None:
            board.close()
        set_sync_bn(self.net, False)
        self.net.eval()
        return self.run_dir / CHECKPOINT
