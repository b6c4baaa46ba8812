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
        m.add_width(w).momentum = None  # None = cumulative average over all batches
    net.config.calibrated_widths = sorted({*previous_calibrated, w})
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
    if seen == 0:
        if was_new:  # leave the net as it was rather than with an un-estimated width
            for m in bns:
                del m.bn[width_key(w)]
            net.config.calibrated_widths = previous_calibrated
        raise SfscError("calibration needs batches of at least 2 images; give it more images")
    return seen
