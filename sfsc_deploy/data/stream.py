"""Training images read from disk while training, for a set larger than the preload budget.

:class:`StreamSource` is the training loader's image source (data.loader) when the training images
do not fit ``TrainConfig.bank_budget_gb`` at the input size, or with ``--stream``: it keeps only the
records, and the loader's worker processes read (or render) each batch's images as it is needed,
resized exactly as ``build_bank`` resizes and indexed in ``build_bank``'s order, so a streamed batch
is byte for byte the preloaded one.

Unreadable files. At construction a header scan (PIL opens each file on two threads, as
``build_bank`` reads them, and decodes no pixels) drops the files that cannot be opened or declare
too many pixels; they are counted and reported as ``build_bank`` reports them. A file that opens but
fails to decode shows only when a batch reads it: it is replaced by the next image of the same
identity (in the source's order) that decodes, so a batch stays a pure function of (seed, epoch), and
its index joins :attr:`StreamSource.failed`, which the loader hands back for the training log.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sfsc_deploy.data.bank import by_source, scan
from sfsc_deploy.data.images import can_open, read_image
from sfsc_deploy.data.records import Record
from sfsc_deploy.data.sources import Renderer, renderer_for
from sfsc_deploy.data.transforms import resize
from sfsc_deploy.errors import SfscError


class StreamSource:
    """The records of a training split, whose images are read on demand (:meth:`load`)."""

    def __init__(
        self, records: list[Record], size: tuple[int, int], *, split: str = "train", progress: bool = True
    ) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.split = split
        generated, files = by_source(records)
        # the renderers themselves (module functions, so a worker started by spawn finds them too)
        self.renderers: dict[str, Renderer] = {
            scheme: renderer_for(group[0].path)[1]  # type: ignore[index]
            for scheme, group in generated.items()
        }
        kept = [r for group in generated.values() for r in group]
        schemes: list[str | None] = [scheme for scheme, group in generated.items() for _ in group]
        for record, _ in scan(files, can_open, split=split, label="scanning", progress=progress):
            kept.append(record)
            schemes.append(None)
        if not kept:
            raise SfscError(f"split {split!r} has no images; check the path and --format")
        self.records, self.schemes = kept, schemes
        self.paths = [r.path for r in kept]
        self.pids = torch.tensor([r.pid for r in kept], dtype=torch.int64)
        self.camids = torch.tensor([r.camid for r in kept], dtype=torch.int64)
        self.by_id: dict[int, list[int]] = {}
        for index, r in enumerate(kept):
            self.by_id.setdefault(r.pid, []).append(index)
        self.failed: set[int] = set()  # indices that failed to decode in this process

    def __len__(self) -> int:
        return len(self.records)

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 [n, 3, H, W] of ``indices`` at the input size (rendered ones together, per scheme)."""
        indices = [int(i) for i in indices]
        out = torch.empty(len(indices), 3, *self.size, dtype=torch.uint8)
        rendered: dict[str, list[int]] = {}
        for position, index in enumerate(indices):
            scheme = self.schemes[index]
            if scheme is None:
                out[position] = self._decoded(index)
            else:
                rendered.setdefault(scheme, []).append(position)
        for scheme, positions in rendered.items():
            group = [self.records[indices[p]] for p in positions]
            out[positions] = resize(self.renderers[scheme](group), self.size)
        return out

    def _read(self, index: int) -> torch.Tensor | None:
        """Image ``index`` at the input size (resized as build_bank resizes), None if it fails to decode."""
        scheme = self.schemes[index]
        if scheme is not None:
            return resize(self.renderers[scheme]([self.records[index]]), self.size)[0]
        image = read_image(self.records[index].path)
        return None if image is None else resize(image.unsqueeze(0), self.size)[0]

    def _decoded(self, index: int) -> torch.Tensor:
        """Image ``index``, or, if it fails to decode, the next image of its identity that decodes."""
        if index not in self.failed:
            image = self._read(index)
            if image is not None:
                return image
            self.failed.add(index)
        same = self.by_id[self.records[index].pid]
        start = same.index(index)
        for other in same[start + 1 :] + same[:start]:
            if other in self.failed:
                continue
            image = self._read(other)
            if image is not None:
                return image
            self.failed.add(other)
        raise SfscError(
            f"{self.split}: every image of identity {self.records[index].pid} failed to decode "
            f"(e.g. {self.records[index].path}); remove or repair them"
        )
