"""Images preloaded into one uint8 tensor at the model input size.

Decoding thousands of JPEGs every epoch on two cores costs more than the network; Market-1501's
training split at 128×64 is ~320 MB as uint8, so it is read once. The bank is the fast path of
the training loader (data.loader); a set larger than ``TrainConfig.bank_budget_gb`` (or ``--stream``)
is read from disk by the loader's workers instead (data.stream), in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import torch
from rich.console import Console
from rich.progress import Progress

from sfsc_deploy.data.images import read_image
from sfsc_deploy.data.records import Record
from sfsc_deploy.data.sources import renderer_for
from sfsc_deploy.data.transforms import resize
from sfsc_deploy.errors import SfscError

T = TypeVar("T")


@dataclass
class ImageBank:
    images: torch.Tensor  # uint8 [N, 3, H, W]
    pids: torch.Tensor  # int64 [N]
    camids: torch.Tensor  # int64 [N]
    paths: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 [n, 3, H, W] of ``indices`` (the image-source interface of data.loader)."""
        return self.images[torch.as_tensor(list(indices), dtype=torch.int64)]

    @property
    def failed(self) -> frozenset[int]:
        """Images that failed to decode while training: none, those were skipped when it was built."""
        return frozenset()


def by_source(records: list[Record]) -> tuple[dict[str, list[Record]], list[Record]]:
    """Rendered records grouped by scheme, and the file records: the order of a bank's images
    (every group in turn, then the files), which a streamed source keeps too."""
    generated: dict[str, list[Record]] = {}
    files: list[Record] = []
    for r in records:
        found = renderer_for(r.path)
        (generated.setdefault(found[0], []) if found else files).append(r)
    return generated, files


def scan(
    files: list[Record], read: Callable[[str], T | None], *, split: str, label: str, progress: bool
) -> list[tuple[Record, T]]:
    """``(record, read(path))`` for every file ``read`` accepts (anything but None or False; on two
    threads, as decoding releases the GIL), in order; the rest are counted and reported in one line.
    Nothing readable at all is an error."""
    kept: list[tuple[Record, T]] = []
    with Progress(transient=True, disable=not progress) as bar, ThreadPoolExecutor(2) as pool:
        job = bar.add_task(f"{label} {split}", total=len(files))
        for record, found in zip(files, pool.map(read, (r.path for r in files)), strict=True):
            bar.advance(job)
            if found is not None and found is not False:
                kept.append((record, found))
    bad = len(files) - len(kept)
    if bad:
        Console(stderr=True).print(f"{split}: skipped {bad} unreadable image(s)", markup=False)
    if files and not kept:
        raise SfscError(
            f"split {split!r} has no readable images ({bad} unreadable); check the path and --format"
        )
    return kept


def build_bank(
    records: list[Record], size: tuple[int, int], *, split: str = "train", progress: bool = True
) -> ImageBank:
    """Read (or render) every record, skip and count unreadable files; an empty split is an error."""
    size = (int(size[0]), int(size[1]))
    generated, files = by_source(records)
    kept: list[Record] = []
    chunks: list[torch.Tensor] = []
    for group in generated.values():
        chunks.append(resize(renderer_for(group[0].path)[1](group), size))  # type: ignore[index]
        kept.extend(group)
    for record, image in scan(files, read_image, split=split, label="reading", progress=progress):
        chunks.append(resize(image.unsqueeze(0), size))
        kept.append(record)
    if not kept:
        raise SfscError(f"split {split!r} has no images; check the path and --format")
    return ImageBank(
        images=torch.cat(chunks),
        pids=torch.tensor([r.pid for r in kept], dtype=torch.int64),
        camids=torch.tensor([r.camid for r in kept], dtype=torch.int64),
        paths=[r.path for r in kept],
    )
