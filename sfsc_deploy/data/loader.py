"""Batches for training: a torch ``DataLoader`` whose item is one whole batch of this rank.

Item ``step`` of an epoch is the global batch ``batches[step]`` (the sampler's, a pure function of
seed and epoch) cut to this rank's shard, read from the image source and augmented. The image at
position p of the global batch is augmented with its own generator, seeded by (seed, epoch, step, p)
(:func:`image_generator`), so a batch is identical for any number of workers, preloaded or streamed,
and a rank's shard is exactly the same rows of the batch one process computes; each rank reads and
augments its own shard only.

Image sources (:class:`ImageSource`): the preloaded ``ImageBank`` (data.bank), the fast path for a
set that fits ``TrainConfig.bank_budget_gb``, and ``StreamSource`` (data.stream), which reads the
files in the workers, for a larger set or with ``--stream``. Both index images in the same order.

Workers (``--workers N``): N processes of torch's own pool (``torch.utils.data``) read and augment
batches ahead of the model, ``prefetch_factor`` batches each, one torch thread each; on CUDA the
batches land in pinned memory, so their copy to the GPU does not wait. :func:`resolve_workers` is
the automatic choice (``TrainConfig.workers`` None). :func:`epoch_loader` shuts the workers down
when the epoch ends or fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence, Set
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from sfsc_deploy.data.transforms import TrainTransform

PREFETCH = 2  # batches each worker prepares ahead
WORKER_START = "forkserver"  # how worker processes start (see epoch_loader)
MAX_AUTO_WORKERS = 8


class ImageSource(Protocol):
    """Where training images come from: ``ImageBank`` (preloaded) or ``StreamSource`` (from disk)."""

    pids: torch.Tensor  # int64 [N]
    camids: torch.Tensor  # int64 [N]

    def __len__(self) -> int: ...

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 [n, 3, H, W] of ``indices`` at the model input size."""
        ...

    @property
    def failed(self) -> Set[int]:
        """Indices found to fail decoding in this process (each replaced by one of its identity)."""
        ...


def image_generator(seed: int, epoch: int, step: int, position: int) -> torch.Generator:
    """The augmentation generator of the image at ``position`` of the global batch ``step``."""
    key = hashlib.blake2b(f"{seed}/{epoch}/{step}/{position}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(key, "little"))


def resolve_workers(requested: int | None, *, preloaded: bool, device_type: str, local_processes: int) -> int:
    """``requested``, or when None: 0 for preloaded images on the CPU (augmenting a preloaded batch
    costs little next to the step, and workers would take the step's cores), else
    min(8, CPUs available to this process ÷ training processes on this node), at least 1."""
    if requested is not None:
        return requested
    if preloaded and device_type == "cpu":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_AUTO_WORKERS, cpus // max(1, local_processes)))


class EpochBatches(Dataset):
    """One epoch's batches for this rank: item ``step`` is (float images, int64 pids, int64 indices
    of the images that have failed to decode so far in the process that made it)."""

    def __init__(
        self,
        source: ImageSource,
        batches: list[list[int]],
        transform: TrainTransform,
        seed: int,
        epoch: int,
        shard: Callable[[Sequence[int]], list[int]] | None = None,
    ) -> None:
        self.source, self.batches, self.transform = source, batches, transform
        self.seed, self.epoch, self.shard = seed, epoch, shard

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = self.batches[step]
        positions = list(range(len(batch))) if self.shard is None else self.shard(range(len(batch)))
        indices = [batch[p] for p in positions]
        images = self.source.load(indices)
        generators = [image_generator(self.seed, self.epoch, step, p) for p in positions]
        x = self.transform(images, generators)
        y = self.source.pids[torch.as_tensor(indices, dtype=torch.int64)]
        failed = torch.tensor(sorted(self.source.failed), dtype=torch.int64)
        return x, y, failed


def _one_thread(worker_id: int) -> None:
    """In each worker process: one torch thread (N workers share the machine with the step)."""
    torch.set_num_threads(1)


@contextlib.contextmanager
def epoch_loader(
    batches: EpochBatches, workers: int = 0, *, pin_memory: bool = False
) -> Iterator[Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """The epoch's batches in order, made by ``workers`` processes (0: in this one); the workers are
    shut down when the block ends, normally or by an exception."""
    loader = DataLoader(
        batches,
        batch_size=None,  # an item is a whole batch already
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=PREFETCH if workers > 0 else None,
        worker_init_fn=_one_thread if workers > 0 else None,
        # workers start from a clean server process, not a fork of this one: a fork copies whatever
        # threads' locks this process holds (OpenMP pools of torch or faiss, OpenVINO's TBB, gloo)
        multiprocessing_context=WORKER_START if workers > 0 else None,
    )
    sigchld = _sigchld_handler()
    iterator = iter(loader)
    try:
        yield iterator
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)  # torch's own clean-up of its pool
        if shutdown is not None:
            shutdown()
        _restore_sigchld(sigchld)


def _sigchld_handler() -> object:
    """This process's SIGCHLD handler (None off the main thread, where none can be set)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGCHLD"):
        return None
    return signal.getsignal(signal.SIGCHLD)


def _restore_sigchld(previous: object) -> None:
    """Put back the SIGCHLD handler a worker pool installed (torch sets a process-wide one that
    checks its workers on every child's exit, and leaves it): the handler outlived the loader and,
    with OpenVINO's threads in the process, crashed it when any later child process died (measured:
    SIGSEGV in the test suite). A later pool installs it again."""
    if previous is None or signal.getsignal(signal.SIGCHLD) is previous:
        return
    signal.signal(signal.SIGCHLD, previous)  # type: ignore[arg-type]
    from torch.utils.data._utils import signal_handling

    if hasattr(signal_handling, "_SIGCHLD_handler_set"):
        signal_handling._SIGCHLD_handler_set = False
