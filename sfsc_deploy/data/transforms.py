"""Training augmentation on torch ops, with all randomness from explicit generators.

:class:`TrainTransform` takes one generator for the whole batch, or one per image: the training
loader (data.loader) gives every image its own, seeded by its place in the global batch, so an
image is augmented alike whichever worker, rank or shard of the batch computes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from exporters.graph import normalize_images


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [N, 3, H, W] → uint8 at ``size`` (bilinear with antialiasing)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    x = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8)


@dataclass
class TrainTransform:
    """Random flip, pad-and-crop, normalise, random erasing (Zhong et al.)."""

    mean: Sequence[float]
    std: Sequence[float]
    flip: float = 0.5
    pad: int = 10
    erasing: float = 0.5

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator]
    ) -> torch.Tensor:
        """uint8 [N, 3, H, W] → augmented float. ``generator``: one for the batch, or N (image i's
        draws come from its own generator alone, so its output does not depend on the others)."""
        n, _, h, w = images.shape
        single = isinstance(generator, torch.Generator)
        gens: list[torch.Generator] = [generator] * n if single else list(generator)  # type: ignore[list-item]
        if len(gens) != n:
            raise ValueError(f"{len(gens)} generators for {n} images")

        def draw(sample) -> torch.Tensor:  # ``sample(count, gen)``: one call for the batch or one per image
            return sample(n, gens[0]) if single else torch.cat([sample(1, g) for g in gens])

        x = images
        if self.flip > 0:
            flip = draw(lambda k, g: torch.rand(k, generator=g)) < self.flip
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
        if self.pad > 0:
            padded = F.pad(x, (self.pad,) * 4)
            dy = draw(lambda k, g: torch.randint(0, 2 * self.pad + 1, (k,), generator=g))
            dx = draw(lambda k, g: torch.randint(0, 2 * self.pad + 1, (k,), generator=g))
            rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, 3, h, w + 2 * self.pad)
            padded = padded.gather(2, rows)
            cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, 3, h, w)
            x = padded.gather(3, cols)
        out = normalize_images(x, self.mean, self.std)
        if self.erasing > 0:
            chance = draw(lambda k, g: torch.rand(k, generator=g))
            self._erase(out, chance, gens)
        return out

    def _erase(self, x: torch.Tensor, chance: torch.Tensor, gens: list[torch.Generator]) -> None:
        n, c, h, w = x.shape
        for i in range(n):
            if chance[i] >= self.erasing:
                continue
            generator = gens[i]
            for _ in range(10):  # a few tries to fit the rectangle, as in the original recipe
                area = h * w * (0.02 + 0.38 * torch.rand(1, generator=generator).item())
                ratio = math.exp(
                    math.log(0.3)
                    + (math.log(3.3) - math.log(0.3)) * torch.rand(1, generator=generator).item()
                )
                eh, ew = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
                if 0 < eh < h and 0 < ew < w:
                    y0 = int(torch.randint(0, h - eh + 1, (1,), generator=generator))
                    x0 = int(torch.randint(0, w - ew + 1, (1,), generator=generator))
                    x[i, :, y0 : y0 + eh, x0 : x0 + ew] = torch.randn(c, eh, ew, generator=generator)
                    break
