"""The per-step tasks: (width, loss) pairs whose gradients are aggregated.

Switchable methods have the full model's L_ori plus one compatible loss per narrow width
(k = 1 + m tasks). The separate-network baselines train one width per network with one task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..losses.compat import asym_s, bct_s, evidential, lce_s
from ..losses.ori import original_loss
from ..models import NetOutput
from .config import TrainConfig


@dataclass
class StepContext:
    epoch: int
    classifier_weight: torch.Tensor
    reference_features: torch.Tensor | None = None  # full model's features of the batch (detached)
    reference_classifier: torch.nn.Module | None = None  # frozen full model's (one-to-one BCT)


LossFn = Callable[[NetOutput, torch.Tensor, StepContext], torch.Tensor]


@dataclass
class Task:
    width: float
    name: str
    loss: LossFn


def _ori(cfg: TrainConfig) -> LossFn:
    def loss(out: NetOutput, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        return original_loss(
            cfg.loss,
            out.features,
            out.pre_neck,
            out.logits,
            ctx.classifier_weight,
            y,
            cfg.label_smoothing,
            cfg.triplet_margin,
        )

    return loss


def _compat(cfg: TrainConfig, kind: str) -> LossFn:
    def loss(out: NetOutput, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        if kind == "sfsc":
            weight = cfg.kl_weight
            if cfg.kl == "sensoy" and cfg.kl_anneal_epochs > 0:
                weight *= min(1.0, (ctx.epoch + 1) / cfg.kl_anneal_epochs)
            return evidential(out.logits, y, weight, cfg.evidence_clamp, cfg.kl).loss
        if kind == "bct-s":
            return bct_s(out.logits, y)
        if kind == "asym-s":
            return asym_s(out.features, ctx.reference_features, y, cfg.asym_margin, cfg.asym_mode)
        if kind == "lce-s":
            return lce_s(out.features, ctx.reference_features, out.logits, ctx.classifier_weight, y)
        raise ValueError(kind)

    return loss


def switchable_tasks(cfg: TrainConfig, widths: list[float]) -> list[Task]:
    """Full model first (its detached features are the reference of the others), then narrow."""
    narrow = sorted((w for w in widths if w < 1.0), reverse=True)
    return [Task(1.0, cfg.loss, _ori(cfg))] + [Task(w, cfg.method, _compat(cfg, cfg.method)) for w in narrow]


def one_to_one_task(cfg: TrainConfig, width: float, kind: str) -> Task:
    """A separate network: L_ori with its own classifier, plus BCT/Asym against a frozen full model."""
    ori = _ori(cfg)

    def loss(out: NetOutput, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        total = ori(out, y, ctx)
        if kind == "bct":
            total = total + F.cross_entropy(ctx.reference_classifier(out.features), y)
        elif kind == "asym":
            total = total + asym_s(out.features, ctx.reference_features, y, cfg.asym_margin, cfg.asym_mode)
        return total

    return Task(width, f"{cfg.loss}+{kind}" if kind != "unified" else cfg.loss, loss)
