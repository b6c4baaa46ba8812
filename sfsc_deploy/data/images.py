"""Reading image files into normalised tensors with PIL + torch ops (no torchvision)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from exporters.graph import normalize_images
from sfsc_deploy.data.transforms import resize
from sfsc_deploy.errors import SfscError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def list_images(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.exists():
        raise SfscError(f"image folder {root} not found; check the path")
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image(path: str | Path) -> torch.Tensor | None:
    """uint8 [3, H, W], or None when the file is not a readable image."""
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError):
        return None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def preprocess(
    image: torch.Tensor, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """uint8 [3, H, W] (or [N, 3, H, W]) → float [N, 3, h, w]: resized as the image bank resizes,
    then normalised by the one preprocessing routine."""
    x = image.unsqueeze(0) if image.dim() == 3 else image
    return normalize_images(resize(x, size), mean, std)


def load_folder(
    root: str | Path,
    size: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    limit: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, int]:
    """Up to ``limit`` images (a seeded random subset) as one tensor, and how many were unreadable."""
    paths = list_images(root)
    if limit is not None and len(paths) > limit:
        paths = sorted(random.Random(seed).sample(paths, limit))
    batch, bad = [], 0
    for p in paths:
        img = read_image(p)
        if img is None:
            bad += 1
            continue
        batch.append(preprocess(img, size, mean, std))
    if not batch:
        raise SfscError(
            f"no readable images in {root} ({bad} unreadable); point it at a folder of .jpg/.png images"
        )
    return torch.cat(batch), bad
