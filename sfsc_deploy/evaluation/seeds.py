"""Figures over several training seeds: mean ± spread, and paired differences between methods.

Training results move by a point or more between seeds, so one seed cannot say whether method A
beats method B. With runs paired by seed (same seed: same batches, augmentation and — for the
switchable methods — the same initialisation) the difference per seed cancels much of that
noise; its Student-t interval says whether a difference exceeds the seed spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sfsc_deploy.errors import SfscError

# two-sided 95% Student-t critical values, degrees of freedom 1..30 (beyond: normal 1.96)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_critical(df: int) -> float:
    """Two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise SfscError("a confidence interval needs at least two values")
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (n − 1) of one figure over seeds."""

    mean: float
    std: float  # 0 for a single seed
    n: int
    values: tuple[float, ...]

    def text(self, digits: int = 1) -> str:
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}" if self.n > 1 else f"{self.mean:.{digits}f}"


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise SfscError("no values to summarise")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return Spread(mean, std, n, tuple(float(v) for v in values))


@dataclass(frozen=True)
class PairedDifference:
    """``a − b`` over seeds paired by index, with its 95% t-interval."""

    mean: float
    std: float
    n: int
    low: float
    high: float

    @property
    def exceeds_spread(self) -> bool:
        """The interval excludes 0: the difference is larger than the seeds' own spread explains."""
        return self.low > 0 or self.high < 0

    def text(self, digits: int = 1) -> str:
        if self.n < 2:
            return f"{self.mean:+.{digits}f} (one seed)"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired_difference(a: Sequence[float], b: Sequence[float]) -> PairedDifference:
    if len(a) != len(b) or not a:
        raise SfscError(f"paired values need the same seeds on both sides; got {len(a)} and {len(b)}")
    d = spread([x - y for x, y in zip(a, b, strict=True)])
    if d.n < 2:
        return PairedDifference(d.mean, 0.0, 1, -math.inf, math.inf)
    half = t_critical(d.n - 1) * d.std / math.sqrt(d.n)
    return PairedDifference(d.mean, d.std, d.n, d.mean - half, d.mean + half)
