"""A seeded sample of training images at the model input size, for calibration and parity checks."""

from __future__ import annotations

import random

import torch

from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.data.records import ReidSplits
from sfsc_deploy.errors import SfscError


def sample_images(
    splits: ReidSplits, size: tuple[int, int], count: int, *, seed: int = 0, skip: int = 0
) -> torch.Tensor:
    """uint8 [count, 3, H, W] from the training split. ``skip`` leaves out the first images of the
    same shuffled order, so a calibration set and a parity set drawn with one seed never overlap;
    a split too small for both is an error, never a silent reuse."""
    records = list(splits.train)
    if len(records) < skip + count:
        raise SfscError(
            f"the data has {len(records)} training images; {skip} for calibration and {count} for the "
            f"parity check need {skip + count} distinct ones — lower --calibration-images / "
            "--parity-images or use more data"
        )
    random.Random(seed).shuffle(records)
    return build_bank(records[skip : skip + count], size, split="train", progress=False).images
