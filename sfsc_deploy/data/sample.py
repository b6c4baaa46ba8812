"""A seeded sample of training images at the model input size, for calibration and parity checks."""

from __future__ import annotations

import random

import torch

from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.data.records import ReidSplits


def sample_images(
    splits: ReidSplits, size: tuple[int, int], count: int, *, seed: int = 0, skip: int = 0
) -> torch.Tensor:
    """uint8 [≤ count, 3, H, W] from the training split. ``skip`` leaves out the first images of the
    same shuffled order, so a calibration set and a parity set drawn with one seed never overlap."""
    records = list(splits.train)
    random.Random(seed).shuffle(records)
    chosen = records[skip : skip + count] or records[:count]
    return build_bank(chosen, size, split="train", progress=False).images
