"""Did the export change retrieval? A paired test over the same queries, with its interval.

The artifact and its PyTorch reference answer the same queries against the same gallery, so each
query gives a pair of scores (its AP, or whether its first match is at rank 1). The drop is the
mean of the per-query differences (reference − artifact, in points). Its interval comes from a
paired bootstrap over queries (seeded, so a report is reproducible), and the verdict is a one-sided
test of "the drop is within the tolerance":

- **fail** when the drop exceeds the tolerance with 95% confidence (the one-sided lower bound is
  above it): evidence, not noise;
- **no verdict** on fewer than ``MIN_QUERIES`` queries, where the interval cannot be trusted and one
  query moves rank-1 by more than two points;
- **pass** otherwise, with the interval reported so a reader sees how much the data could show.

For rank-1 the exact McNemar test of the discordant queries (hit by one, missed by the other) is
reported beside it. A fixed "rank-1 may drop by 1 point" on 200 queries would fail a correct int8
model on 2 unlucky near-ties; this does not, and a broken model still fails.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
MIN_QUERIES = 50

PASS, FAIL, NO_VERDICT = "pass", "fail", "no verdict"


@dataclass(frozen=True)
class PairedDrop:
    metric: str  # "mAP" | "rank-1"
    drop: float  # mean of reference − artifact over the queries, in points
    low: float  # two-sided 95% paired-bootstrap interval of the drop
    high: float
    bound: float  # one-sided 95% lower bound: the drop is at least this
    tolerance: float
    queries: int
    verdict: str
    p_value: float | None = None  # exact McNemar, two-sided (rank-1 only)

    def describe(self) -> str:
        interval = f"[{self.low:+.2f}, {self.high:+.2f}]"
        text = f"{self.metric} drop {self.drop:+.2f} {interval} on {self.queries} queries"
        if self.p_value is not None:
            text += f", McNemar p {self.p_value:.3g}"
        if self.verdict == FAIL:
            return f"{text}: more than the allowed {self.tolerance:g} with 95% confidence"
        if self.verdict == NO_VERDICT:
            return f"{text}: too few queries to judge (need ≥ {MIN_QUERIES})"
        return f"{text}: within {self.tolerance:g}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar(lost: int, gained: int) -> float:
    """Exact two-sided McNemar p-value: of the discordant queries, is one side more than chance?"""
    n = lost + gained
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(max(lost, gained), n + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def _bootstrap_means(diffs: np.ndarray, resamples: int, seed: int, block: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, resamples, block):
        idx = rng.integers(0, len(diffs), (min(block, resamples - start), len(diffs)))
        means.append(diffs[idx].mean(axis=1))
    return np.concatenate(means)


def paired_drop(
    reference: np.ndarray,
    artifact: np.ndarray,
    tolerance: float,
    metric: str,
    *,
    min_queries: int = MIN_QUERIES,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> PairedDrop:
    """The drop from ``reference`` to ``artifact`` (per-query scores in [0, 1] or booleans, paired
    row by row), its interval and the verdict against ``tolerance`` points."""
    ref = np.asarray(reference, dtype=np.float64) * 100.0
    art = np.asarray(artifact, dtype=np.float64) * 100.0
    if ref.shape != art.shape or ref.ndim != 1:
        raise ValueError(f"paired scores must be two vectors of one length, got {ref.shape} and {art.shape}")
    diffs = ref - art
    n = len(diffs)
    p_value = None
    if np.asarray(reference).dtype == bool:
        lost = int(np.sum(np.asarray(reference) & ~np.asarray(artifact)))
        gained = int(np.sum(~np.asarray(reference) & np.asarray(artifact)))
        p_value = mcnemar(lost, gained)
    if n == 0:
        return PairedDrop(metric, 0.0, 0.0, 0.0, 0.0, tolerance, 0, NO_VERDICT, p_value)
    means = _bootstrap_means(diffs, resamples, seed) if np.any(diffs) else np.zeros(1)
    alpha = 1.0 - CONFIDENCE
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    bound = float(np.quantile(means, alpha))
    if n < min_queries:
        verdict = NO_VERDICT
    else:
        verdict = FAIL if bound > tolerance else PASS
    return PairedDrop(
        metric, float(diffs.mean()), float(low), float(high), bound, tolerance, n, verdict, p_value
    )
