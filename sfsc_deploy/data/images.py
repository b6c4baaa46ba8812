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
# a re-id crop is a few hundred pixels a side; anything declaring more than this is skipped as
# unreadable before it is decoded (a 27 KB PNG can declare 15000×15000)
MAX_IMAGE_PIXELS = 40_000_000


def inside(root: Path, path: Path) -> bool:
    """Whether ``path``, with every symlink resolved, lies within ``root`` (resolved)."""
    return path.resolve().is_relative_to(root.resolve())


def list_images(root: str | Path, *, within: str | Path | None = None) -> list[Path]:
    """Image files under ``root``; none whose real location is outside ``within`` (default ``root``):
    a symlinked file or folder pointing out of the data root is never read."""
    root = Path(root)
    if not root.exists():
        raise SfscError(f"image folder {root} not found; check the path")
    if root.is_file():
        return [root]
    fence = Path(within) if within is not None else root
    return sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and inside(fence, p)
    )


def read_image(path: str | Path) -> torch.Tensor | None:
    """uint8 [3, H, W], or None when the file is not a readable image (or declares too many pixels)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                return None
            array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def can_open(path: str | Path) -> bool:
    """Whether ``path`` opens as an image of an acceptable size, from its header alone (no pixels
    decoded): the cheap check of a streamed training set (data.stream). A file that passes may
    still fail to decode; :func:`read_image` then returns None."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
    return width * height <= MAX_IMAGE_PIXELS


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
