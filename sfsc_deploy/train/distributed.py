"""Many training processes (``torchrun`` or ``sfsc-deploy train --nproc N``): the process group and
its collectives, the sharding of the global batch, and torch's elastic launcher.

Data parallelism without DistributedDataParallel: every rank draws the same global P×K batch (the
samplers are pure functions of seed and epoch), keeps its own slice (:func:`shard`: P/W whole
identities each, so no identity is split across ranks), computes its k task gradients on that slice
into its local k×P matrix G, and one ``all_reduce`` averages G over the ranks. Every rank then runs
the same seeded projection on the same averaged G, so the parameters stay identical without any
broadcast. Rank 0 alone writes checkpoints, state and log; the others wait at a barrier.

Which losses this is exact for: the classification losses (softmax with label smoothing, the
evidential loss and its KL term, BCT's and the compatible softmax losses) and the asymmetric
regression/contrastive loss of one image against its own full-model feature are *per-sample means*:
with equal shard sizes the mean of the ranks' mean-loss gradients is the gradient of the global
batch's mean loss. The triplet loss (and any term built from in-batch pairs) only pairs images within
a rank's shard, i.e. within its own P/W identities: the averaged gradient is that of the mean of the
ranks' triplet losses, each over a batch of P/W identities — the usual data-parallel triplet.
BatchNorm normalises with per-rank statistics by default (FastReID's): the running statistics saved
are rank 0's, and a step equals one process that normalises each shard on its own. With ``--sync-bn``
(``TrainConfig.sync_bn``; sfsc_deploy.switchable.sync_bn) every width's BatchNorm normalises with the
whole global batch's statistics, gathered by a differentiable ``all_reduce`` in the forward pass whose
backward all-reduces the gradients through them: for the per-sample mean losses a step then equals
one process on the whole global batch, and every rank keeps the same running statistics.

Backend: NCCL when the run's device is CUDA (each rank on ``cuda:LOCAL_RANK``), gloo on the CPU.

Evaluation and extraction (``sfsc-deploy eval/extract --nproc N``, validation during training) shard
the images instead: each rank extracts a contiguous slice (:func:`shard_range`) and
:func:`gather_rows` puts the slices back together, in order, on every rank.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sfsc_deploy.errors import SfscError

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def many(self) -> bool:
        return self.size > 1


def env_world() -> World:
    """The world torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK); one process
    when WORLD_SIZE is unset."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise SfscError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None
    if size < 1 or not 0 <= rank < size:
        raise SfscError(f"RANK {rank} is not in a WORLD_SIZE of {size}")
    return World(rank, size, local)


def current() -> World:
    """The world of the initialised process group, else one process."""
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return World(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", str(rank))))
    return World()


def device_name(device: str, world: World) -> str:
    """A CUDA run puts each rank of a node on its own GPU (``cuda:LOCAL_RANK``)."""
    if world.many and device in ("cuda", "auto") and torch.cuda.is_available():
        return f"cuda:{world.local_rank}"
    return device


def setup(device: str) -> World:
    """Join the process group torchrun's environment describes (env:// rendezvous: MASTER_ADDR,
    MASTER_PORT); NCCL on CUDA, gloo on the CPU. One process (no WORLD_SIZE, or 1): nothing to join."""
    world = env_world()
    if not world.many or dist.is_initialized():
        return current() if world.many else world
    cuda = device_name(device, world).startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=world.rank, world_size=world.size)
    return world


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def joined(device: str) -> Iterator[World]:
    """The process group torchrun's environment describes, joined for the block (:func:`setup`) and
    left afterwards if this joined it; one process (or a group already joined): nothing to do."""
    world = env_world()
    new = world.many and not current().many
    world = setup(device)
    try:
        yield world
    finally:
        if new:
            teardown()


def check_shardable(batch_ids: int, batch_k: int, sampler: str, size: int) -> None:
    """P identities must split evenly over the ranks (each rank keeps P/W whole identities)."""
    if size > 1 and batch_ids % size:
        raise SfscError(
            f"--batch-ids {batch_ids} does not split over {size} processes: each process takes whole "
            f"identities, so P must be a multiple of the number of processes; use --batch-ids "
            f"{max(size, batch_ids - batch_ids % size)} or {batch_ids + size - batch_ids % size}"
        )


def shard(batch: Sequence[int], world: World) -> list[int]:
    """This rank's part of one global batch: a contiguous slice of equal size.

    A P×K batch lists its identities one after another (K images each), so with P divisible by the
    world size every slice holds P/W whole identities; a random batch is cut by position.
    """
    if not world.many:
        return list(batch)
    part = len(batch) // world.size
    return list(batch[world.rank * part : (world.rank + 1) * part])


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over the ranks, in place (nothing to do for one process)."""
    world = current()
    if world.many:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(world.size)
    return tensor


def union(items: set[int]) -> set[int]:
    """The union of every rank's set of integers (one ``all_gather_object``; one process: ``items``)."""
    world = current()
    if not world.many:
        return set(items)
    gathered: list[set[int] | None] = [None] * world.size
    dist.all_gather_object(gathered, set(items))
    return set().union(*(g or set() for g in gathered))


def barrier() -> None:
    if current().many:
        dist.barrier()


# ------------------------------------------------------------------------- sharded extraction
def shard_range(total: int, world: World) -> slice:
    """This rank's contiguous part of ``total`` items: the first ``total % W`` ranks take one more."""
    part, extra = divmod(total, world.size)
    start = world.rank * part + min(world.rank, extra)
    return slice(start, start + part + (world.rank < extra))


def _collective_device() -> torch.device:
    """Where a collective's tensors must live: this rank's GPU under NCCL, the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(local: torch.Tensor | None) -> torch.Tensor:
    """Every rank's float rows ``[n_r, D]`` (``None``: an empty shard), concatenated in rank order,
    on every rank, on the CPU; one process: ``local`` itself.

    The shards may differ in length (an image count not divisible by the ranks): each is padded to
    the longest for ``all_gather``, and the padding is cut off again.
    """
    world = current()
    if not world.many:
        if local is None:
            raise SfscError("nothing to gather: no rows were extracted")
        return local
    device = _collective_device()
    n, d = (0, 0) if local is None else (local.shape[0], local.shape[1])
    size = torch.tensor([n, d], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(world.size)]
    dist.all_gather(sizes, size)
    shapes = [(int(s[0]), int(s[1])) for s in sizes]
    dims = sorted({d for n, d in shapes if n})
    if len(dims) != 1:  # every rank sees the same shapes, so every rank raises alike
        raise SfscError(
            f"the processes extracted features of dimension {dims or 'none'}; "
            "every process must run the same model on a non-empty set of images"
        )
    rows = max(n for n, _ in shapes)
    padded = torch.zeros(rows, dims[0], dtype=torch.float32, device=device)
    if local is not None and n:
        padded[:n] = local.to(device=device, dtype=torch.float32)
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, (n, _) in zip(parts, shapes, strict=True)]).cpu()


@contextlib.contextmanager
def rank0_buffers(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``module`` with rank 0's buffers (BatchNorm running statistics) on every rank for the block,
    each rank's own again afterwards.

    The ranks train with their own BatchNorm statistics (rank 0's are saved); a validation sharded
    over the ranks must evaluate the one network rank 0 saves, not a different one per shard.
    """
    if not current().many:
        yield module
        return
    buffers = list(module.buffers())
    own = [b.detach().clone() for b in buffers]
    with torch.no_grad():
        for b in buffers:
            dist.broadcast(b.data, src=0)
    try:
        yield module
    finally:
        with torch.no_grad():
            for b, saved in zip(buffers, own, strict=True):
                b.copy_(saved)


# ------------------------------------------------------------------------------------------ launch
_WHAT = {"train": "training", "eval": "evaluation", "extract": "extraction"}


def launch(nproc: int, argv: Sequence[str], command: str = "train") -> None:
    """Run ``sfsc-deploy COMMAND ARGV`` (``python -m sfsc_deploy.cli``) in ``nproc`` processes on this
    machine with torch's own elastic launcher (what ``torchrun --nproc-per-node`` does); each joins
    the process group from the environment the launcher sets. A failed rank is one line."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"sfsc-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "sfsc_deploy.cli", command, *argv)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        what = _WHAT.get(command, command)
        if failure.exitcode < 0:  # killed by a signal (OOM killer, a scheduler, a user): no error line
            number = -failure.exitcode
            name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
            raise SfscError(
                f"{what} process {rank} of {nproc} was killed ({name}); the job stopped, run the same "
                f"command with --resume to continue from the last checkpoint"
                if command == "train"
                else f"{what} process {rank} of {nproc} was killed ({name}); the job stopped, run it again"
            ) from None
        raise SfscError(
            f"{_WHAT.get(command, command)} process {rank} of {nproc} failed (exit code {failure.exitcode}); "
            f"its own error line is printed above"
        ) from None
