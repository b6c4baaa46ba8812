"""Learning-rate factor per optimiser step: linear warm-up, then cosine or step decay."""

from __future__ import annotations

import math

from sfsc_deploy.train.config import TrainConfig


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return 0.1 + 0.9 * step / warmup
    if cfg.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 0.1 ** sum(step >= m * total for m in cfg.milestones)
