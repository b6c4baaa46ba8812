"""BatchNorm re-calibration for a width that was not trained (universally-slimmable recipe)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import SwitchableNet
from sfsc_deploy.switchable.channels import normalize_width, width_key
from sfsc_deploy.switchable.layers import SwitchableBatchNorm


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        yield from images.split(batch_size)
    else:
        yield from images


@torch.no_grad()
def _estimate(
    net: SwitchableNet,
    w: float,
    bns: list[SwitchableBatchNorm],
    images: torch.Tensor | Iterable[torch.Tensor],
    batch_size: int,
) -> int:
    """Reset width ``w``'s running statistics and average them exactly over ``images``."""
    for m in bns:
        m.bn[width_key(w)].reset_running_stats()
        m.bn[width_key(w)].momentum = None  # None = cumulative average over all batches
    was_training = net.training
    seen = 0
    net.train()
    try:
        with net.at_width(w):
            for batch in _batches(images, batch_size):
                if batch.shape[0] < 2:  # BatchNorm cannot estimate a variance from one image
                    continue
                batch = batch.to(next(net.parameters()).device)
                net.head(net.backbone(batch))
                seen += batch.shape[0]
    finally:
        for m in bns:
            m.bn[width_key(w)].momentum = m.spec.momentum
        net.train(was_training)
    return seen


@torch.no_grad()
def fresh_statistics(net: SwitchableNet, images: int = 32, seed: int = 0) -> None:
    """Give a freshly initialised network BatchNorm statistics of its own signal, at every width.

    A new BN's running statistics (mean 0, variance 1) make eval mode an identity, so the fresh
    network's features vanish or explode with depth and width (1e-12 … 1e3 measured). Estimating
    them from random images normalises every layer, so an untrained network exports and checks
    like a trained one. Training never sees this: it replaces running statistics within steps.
    """
    opts = net.config.options
    noise = torch.randn(images, 3, *opts.input_size, generator=torch.Generator().manual_seed(seed))
    bns = [m for m in net.modules() if isinstance(m, SwitchableBatchNorm)]
    for w in net.config.all_widths:
        _estimate(net, w, bns, noise, batch_size=16)


@torch.no_grad()
def calibrate_bn(
    net: SwitchableNet,
    width: float,
    images: torch.Tensor | Iterable[torch.Tensor],
    batch_size: int = 64,
) -> int:
    """Give ``width`` its own BatchNorm statistics; returns the number of images used.

    Running statistics are reset and re-estimated as an exact (cumulative) average over the
    calibration batches, forwarded at that width in train mode with no gradient. Shared
    weights are untouched, so the family id does not change. A trained width may be
    re-calibrated too (e.g. for a new camera domain).
    """
    w = normalize_width(width)
    if isinstance(images, torch.Tensor) and images.shape[0] < 2:
        raise SfscError("calibration needs at least 2 images; give it a few thousand")
    bns = [m for m in net.modules() if isinstance(m, SwitchableBatchNorm)]
    was_new = w not in net.widths
    previous_calibrated = list(net.config.calibrated_widths)
    for m in bns:
        m.add_width(w)
    net.config.calibrated_widths = sorted({*previous_calibrated, w})
    seen = _estimate(net, w, bns, images, batch_size)
    if seen == 0:
        if was_new:  # leave the net as it was rather than with an un-estimated width
            for m in bns:
                del m.bn[width_key(w)]
            net.config.calibrated_widths = previous_calibrated
        raise SfscError("calibration needs batches of at least 2 images; give it more images")
    return seen
