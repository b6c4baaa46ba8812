"""Batched feature extraction from uint8 images: the one loop every extractor runs through.

Images stay uint8 until their batch is normalised, so only one batch is ever float; a rich progress
bar shows long extractions.

In a process group of several ranks (``sfsc-deploy eval/extract --nproc N``, torchrun, validation
during training) every rank extracts its contiguous shard of the images and the shards are gathered
(train.distributed), so every rank returns all the features in the images' order; one progress bar,
rank 0's. One process: the plain loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from exporters.graph import normalize_images
from sfsc_deploy.errors import SfscError
from sfsc_deploy.train import distributed


def batch_slices(total: int, batch_size: int, *, progress: bool, description: str) -> Iterator[slice]:
    """Consecutive slices of ``batch_size`` over ``total`` items, advancing a progress bar."""
    if batch_size < 1:
        raise SfscError(f"batch_size must be >= 1, got {batch_size}; pass a positive batch size")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for start in range(0, total, batch_size):
            stop = min(total, start + batch_size)
            yield slice(start, stop)
            bar.advance(task, stop - start)


def map_shards(
    images: torch.Tensor, extract: Callable[[torch.Tensor, bool], torch.Tensor], progress: bool
) -> torch.Tensor:
    """``extract(images, progress)``: float [N, D] rows of N images, sharded over the ranks.

    In an initialised process group of several ranks each rank calls ``extract`` on its contiguous
    shard (``progress`` on rank 0 only) and gets every rank's rows back in the images' order, on the
    CPU; every rank must call this with the same images (a collective). One process: the call itself.
    """
    world = distributed.current()
    if not world.many or len(images) == 0:
        return extract(images, progress)
    part = distributed.shard_range(len(images), world)
    local = extract(images[part], progress and world.main) if part.stop > part.start else None
    return distributed.gather_rows(local)


def check_images(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise SfscError(
            f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}; "
            "pass raw decoded images, not normalised ones"
        )


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
    test-time augmentation. In a process group of several ranks every rank extracts its shard of the
    images and returns all N features (:func:`map_shards`): every rank must call it.
    """
    check_images(images)
    if len(images) == 0:
        raise SfscError("no images to extract features from; check the image folder or split")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise SfscError(
            f"mean {tuple(mean)} and std {tuple(std)} need 3 values each, std > 0; fix the config"
        )
    device = _device(model)

    def extract(part_images: torch.Tensor, show: bool) -> torch.Tensor:
        out = []
        for part in batch_slices(len(part_images), batch_size, progress=show, description=description):
            x = normalize_images(part_images[part].to(device), mean, std)
            f = _embed(model, x)
            if flip:
                f = (f + _embed(model, x.flip(3))) / 2
            out.append(f.float().cpu())
        return torch.cat(out)

    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.inference_mode():
            return map_shards(images, extract, progress)
    finally:
        if was_training:
            model.train()
