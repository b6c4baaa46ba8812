"""Identity-balanced P×K batches, a pure function of (seed, epoch) so resuming is exact."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from sfsc_deploy.errors import SfscError


class PKSampler:
    """Each batch holds ``p`` identities × ``k`` images (drawn with replacement if an id has < k)."""

    def __init__(self, pids: Sequence[int] | torch.Tensor, p: int, k: int, seed: int = 0) -> None:
        pids = pids.tolist() if isinstance(pids, torch.Tensor) else list(pids)
        self.by_id: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            self.by_id.setdefault(int(pid), []).append(index)
        if len(self.by_id) < p:
            raise SfscError(
                f"need at least {p} identities per batch, found {len(self.by_id)}; lower --batch-ids"
            )
        self.p, self.k, self.seed, self.size = p, k, seed, len(pids)

    def __len__(self) -> int:
        return max(1, self.size // (self.p * self.k))

    def batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        ids = sorted(self.by_id)
        out: list[list[int]] = []
        while len(out) < len(self):
            rng.shuffle(ids)
            for start in range(0, len(ids) - self.p + 1, self.p):
                batch: list[int] = []
                for pid in ids[start : start + self.p]:
                    pool = self.by_id[pid]
                    picks = rng.sample(pool, self.k) if len(pool) >= self.k else rng.choices(pool, k=self.k)
                    batch.extend(picks)
                out.append(batch)
                if len(out) == len(self):
                    break
        return out


class RandomSampler:
    """Shuffled batches of ``size`` images, no identity balance: the plain classification recipe.

    Same interface as :class:`PKSampler` (a pure function of seed and epoch), so resuming stays exact.
    """

    def __init__(self, count: int, size: int, seed: int = 0) -> None:
        if count < size:
            raise SfscError(f"need at least {size} images per batch, found {count}; lower the batch size")
        self.count, self.batch, self.seed = count, size, seed

    def __len__(self) -> int:
        return self.count // self.batch

    def batches(self, epoch: int) -> list[list[int]]:
        order = list(range(self.count))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return [order[i * self.batch : (i + 1) * self.batch] for i in range(len(self))]
