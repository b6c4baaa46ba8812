"""The per-step tasks: (width, loss) pairs whose gradients are aggregated.

Switchable methods have the full model's L_ori plus one compatible loss per narrow width
(k = 1 + m tasks). The separate-network baselines train one width per network with one task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from sfsc_deploy.losses.compat import asym_s, bct_s, evidential, lce_s
from sfsc_deploy.losses.ori import class_logits, original_loss
from sfsc_deploy.models import NetOutput
from sfsc_deploy.train.config import TrainConfig


@dataclass
class StepContext:
    epoch: int
    classifier_weight: torch.Tensor
    evidence_offset: torch.Tensor | None = None  # the shared classifier's offset (None: not used)
    reference_features: torch.Tensor | None = None  # full model's features of the batch (detached)
    reference_classifier: torch.nn.Module | None = None  # frozen full model's (one-to-one BCT)


@dataclass
class TaskLoss:
    """A task's loss and what the loss itself measured on the way (logged per width)."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. uncertainty, kl


LossFn = Callable[[NetOutput, torch.Tensor, StepContext], TaskLoss]


@dataclass
class Task:
    width: float
    name: str
    loss: LossFn


def _ori(cfg: TrainConfig) -> LossFn:
    def loss(out: NetOutput, y: torch.Tensor, ctx: StepContext) -> TaskLoss:
        value = original_loss(
            cfg.loss,
            out.features,
            out.pre_neck,
            out.logits,
            ctx.classifier_weight,
            y,
            cfg.label_smoothing,
            cfg.triplet_margin,
        )
        return TaskLoss(value)

    return loss


def kl_weight_at(cfg: TrainConfig, epoch: int) -> float:
    """λ at ``epoch``: ramps up linearly over ``kl_anneal_epochs`` (0: constant), for either KL."""
    if cfg.kl_anneal_epochs <= 0:
        return cfg.kl_weight
    return cfg.kl_weight * min(1.0, (epoch + 1) / cfg.kl_anneal_epochs)


def _logits(cfg: TrainConfig, out: NetOutput, ctx: StepContext) -> torch.Tensor:
    """The shared classifier as the compatible losses read it (scaled cosines under circle)."""
    return out.logits if cfg.loss != "circle" else class_logits(cfg.loss, out.features, ctx.classifier_weight)


def _compat(cfg: TrainConfig, kind: str) -> LossFn:
    def loss(out: NetOutput, y: torch.Tensor, ctx: StepContext) -> TaskLoss:
        logits = _logits(cfg, out, ctx)
        if kind == "sfsc":
            if ctx.evidence_offset is not None:
                logits = logits + ctx.evidence_offset
            ev = evidential(logits, y, kl_weight_at(cfg, ctx.epoch), cfg.evidence_clamp, cfg.kl)
            return TaskLoss(
                ev.loss,
                {
                    "uncertainty": float(ev.uncertainty),
                    "evidence_loss": float(ev.evidence_loss),
                    "kl": float(ev.kl),
                },
            )
        if kind == "bct-s":
            return TaskLoss(bct_s(logits, y))
        if kind == "asym-s":
            return TaskLoss(asym_s(out.features, ctx.reference_features, y, cfg.asym_margin, cfg.asym_mode))
        if kind == "lce-s":
            return TaskLoss(lce_s(out.features, ctx.reference_features, logits, ctx.classifier_weight, y))
        raise ValueError(kind)

    return loss


def switchable_tasks(cfg: TrainConfig, widths: list[float]) -> list[Task]:
    """Full model first (its detached features are the reference of the others), then narrow."""
    narrow = sorted((w for w in widths if w < 1.0), reverse=True)
    return [Task(1.0, cfg.loss, _ori(cfg))] + [Task(w, cfg.method, _compat(cfg, cfg.method)) for w in narrow]


def one_to_one_task(cfg: TrainConfig, width: float, kind: str) -> Task:
    """A separate network: L_ori with its own classifier, plus BCT/Asym against a frozen full model."""
    ori = _ori(cfg)

    def loss(out: NetOutput, y: torch.Tensor, ctx: StepContext) -> TaskLoss:
        total = ori(out, y, ctx).loss
        if kind == "bct":
            weight = ctx.reference_classifier.weight  # type: ignore[union-attr]
            total = total + F.cross_entropy(class_logits(cfg.loss, out.features, weight), y)
        elif kind == "asym":
            total = total + asym_s(out.features, ctx.reference_features, y, cfg.asym_margin, cfg.asym_mode)
        return TaskLoss(total)

    return Task(width, f"{cfg.loss}+{kind}" if kind != "unified" else cfg.loss, loss)
