"""Batched feature extraction from uint8 images, normalised per batch so only one batch is ever float."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from sfsc_deploy.errors import SfscError


def _device(model: Callable) -> torch.device:
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return torch.device("cpu")


def _embed(model: Callable, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SfscError(f"the model returned {shape}, not [batch, D] features; pass a model in eval mode")
    return out


def extract_features(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
    progress: bool = False,
    description: str = "features",
    flip: bool = False,
) -> torch.Tensor:
    """float32 [N, D] features of uint8 [N, 3, H, W] images, computed as ``model((x/255 - mean)/std)``.

    An ``nn.Module`` runs in eval mode (its previous mode is restored afterwards, so a training loop can
    call this mid-run). ``flip`` averages each image's features with its mirror's, a common re-id
    test-time augmentation.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise SfscError(
            f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}; "
            "pass raw decoded images, not normalised ones"
        )
    if len(images) == 0:
        raise SfscError("no images to extract features from; check the image folder or split")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise SfscError(
            f"mean {tuple(mean)} and std {tuple(std)} need 3 values each, std > 0; fix the config"
        )
    if batch_size < 1:
        raise SfscError(f"batch_size must be >= 1, got {batch_size}; pass a positive batch size")
    device = _device(model)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    out = []
    try:
        with torch.inference_mode(), Progress(*columns, disable=not progress, transient=True) as bar:
            task = bar.add_task(description, total=len(images))
            for start in range(0, len(images), batch_size):
                x = images[start : start + batch_size].to(device).float().div_(255.0).sub_(m).div_(s)
                f = _embed(model, x)
                if flip:
                    f = (f + _embed(model, x.flip(3))) / 2
                out.append(f.float().cpu())
                bar.advance(task, len(x))
    finally:
        if was_training:
            model.train()
    return torch.cat(out)
