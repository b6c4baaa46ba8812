"""Shared by the multi-process tests: a free port, and a spawned process's torchrun-like environment."""

import os
import socket

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_rank(rank: int, world: int, port: int) -> None:
    """In a process ``torch.multiprocessing.spawn`` started: one torch thread and the environment
    torchrun would give rank ``rank`` of ``world`` (what ``distributed.setup`` reads)."""
    torch.set_num_threads(1)
    env = dict(RANK=rank, WORLD_SIZE=world, LOCAL_RANK=rank, MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    os.environ.update({k: str(v) for k, v in env.items()})
