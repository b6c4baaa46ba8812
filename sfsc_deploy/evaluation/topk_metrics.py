"""mAP, CMC and mINP from top-k lists (Market-1501 protocol), for when the full ranking is not needed.

The benchmark protocol ranks every gallery item (:func:`sfsc_deploy.evaluation.metrics.evaluate`,
``ranking: "full"``). A search that keeps only each query's best ``k`` gallery items
(``retrieval.search``) can be evaluated from those lists alone, ``ranking: "top-k (k=K)"``:

* Each list is read under the Market protocol: gallery items with pid -1 (junk) and items with the
  query's pid *and* camera are dropped from it; the rest keep their order. The list therefore holds
  ``k`` minus the dropped items: ask the search for ``k`` plus the most same-pid-same-camera images
  one identity has (a few dozen on Market-1501) when ``k`` itself must stay usable.
* A query's true matches (same pid, another camera) are counted over the **whole** gallery labels,
  so AP divides by every true match: AP = (1/n) · Σ_j j / r_j over the matches retrieved in the
  list (r_j: the rank of the j-th one, ties with a negative resolved against the match as in
  ``evaluate``). A match beyond the list counts as not retrieved (precision 0), so the top-k AP is a
  **lower bound** of the full AP and equal to it when all of the query's matches are in the list.
* A match whose score equals the list's last score counts as beyond the list when the list was cut
  (it holds fewer items than the gallery): a negative with the same score may sit past the cut and
  the full ranking would put it first. This keeps every figure a lower bound, ties included.
* CMC@r: a hit when the first counted match has rank ≤ r; exact when that match is in the list or
  r is at most the number of negatives in the list, a lower bound otherwise.
* mINP needs the rank of each query's *last* match: it is ``None`` (unavailable) when any query's
  last match lies beyond its list; ``TopKScores.complete`` says which ones.

With ``k`` ≥ the gallery size nothing is cut and the figures equal ``evaluate``'s (to float
rounding of the scores). The lists must be exact (every unlisted item scores at most the last
listed one); for an approximate index's lists the figures are estimates, to be read with its recall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.scores import RetrievalMetrics


def topk_ranking(k: int) -> str:
    """How results say they come from top-k lists."""
    return f"top-k (k={k})"


@dataclass
class TopKScores:
    """One row per query with a true match (in query order), like ``metrics.QueryScores``:
    ``ap`` a lower bound of its AP (0-1), ``first`` the rank of its first match (inf: beyond the
    list), ``inp`` its INP (nan when ``complete`` is false: the last match is beyond the list)."""

    ap: np.ndarray
    first: np.ndarray
    inp: np.ndarray
    complete: np.ndarray  # bool: every true match of the query is in its list
    k: int

    def __len__(self) -> int:
        return len(self.ap)

    def hits(self, rank: int = 1) -> np.ndarray:
        return self.first <= rank

    def metrics(self, ranks: Sequence[int] = (1, 5, 10)) -> RetrievalMetrics:
        cmc = {int(r): 100.0 * float(self.hits(r).mean()) for r in ranks}
        minp = 100.0 * float(self.inp.mean()) if bool(self.complete.all()) else None
        return RetrievalMetrics(100.0 * float(self.ap.mean()), cmc, minp, len(self), topk_ranking(self.k))


def _ints(x, n: int | None, name: str) -> np.ndarray:
    a = np.asarray(x).reshape(-1)
    if a.dtype.kind not in "iu":
        raise SfscError(f"{name} must hold integers, got {a.dtype}; pass integer ids")
    if n is not None and len(a) != n:
        raise SfscError(f"{name} has {len(a)} entries but there are {n} rows; pass one id per row")
    return a.astype(np.int64)


def _true_matches(q_pids, q_cams, g_pids, g_cams) -> np.ndarray:
    """Per query, how many gallery items share its pid from another camera (pid -1 never counts)."""
    keep = g_pids != -1
    pids, cams = g_pids[keep], g_cams[keep]
    if not len(pids):
        return np.zeros(len(q_pids), dtype=np.int64)

    def count(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
        table, counts = np.unique(keys, return_counts=True)
        at = np.clip(np.searchsorted(table, queries), 0, len(table) - 1)
        return np.where(table[at] == queries, counts[at], 0)

    # (pid, camera) as one integer: cameras offset into [0, span)
    low = int(min(cams.min(), q_cams.min()))
    span = int(max(cams.max(), q_cams.max())) - low + 1
    return count(pids, q_pids) - count(pids * span + (cams - low), q_pids * span + (q_cams - low))


def topk_query_scores(
    indices,  # int [Q, k] gallery rows, best first; -1 marks an empty slot (an approximate index's)
    scores,  # float [Q, k] their scores
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    k: int | None = None,  # the k asked of the search (default: the lists' length)
) -> TopKScores:
    """Per-query scores from top-k lists (see the module docstring for what each one bounds)."""
    idx = np.asarray(indices)
    sc = np.asarray(scores, dtype=np.float64)
    if idx.ndim != 2 or sc.shape != idx.shape:
        raise SfscError(f"top-k indices {idx.shape} and scores {sc.shape} must both be [queries, k]")
    if idx.dtype.kind not in "iu":
        raise SfscError(f"top-k indices must be integers, got {idx.dtype}")
    nq, width = idx.shape
    q_pids, q_cams = _ints(q_pids, nq, "q_pids"), _ints(q_camids, nq, "q_camids")
    g_pids = _ints(g_pids, None, "g_pids")
    g_cams = _ints(g_camids, len(g_pids), "g_camids")
    n_gallery = len(g_pids)
    if idx.size and (idx.max() >= n_gallery or idx.min() < -1):
        raise SfscError(f"top-k indices reach outside the gallery of {n_gallery} items")

    n_true = _true_matches(q_pids, q_cams, g_pids, g_cams)
    valid = idx >= 0
    gi = np.where(valid, idx, 0)
    gp, gc = g_pids[gi], g_cams[gi]
    same = gp == q_pids[:, None]
    junk = ~valid | (gp == -1) | (same & (gc == q_cams[:, None]))
    pos = same & ~junk
    neg = ~junk & ~same
    listed = valid.sum(1)
    cut = listed < n_gallery  # the list left items out: ties with its last score may hide negatives
    last = np.where(listed > 0, sc[np.arange(nq), np.maximum(listed - 1, 0)], np.inf)
    counted = pos & ~(cut[:, None] & (sc <= last[:, None]))

    # negatives scoring >= each item: sort the listed negatives' scores ascending and search
    neg_sorted = np.sort(np.where(neg, sc, -np.inf), axis=1)
    above = np.empty(sc.shape, dtype=np.int64)
    for q in range(nq):  # row-wise searchsorted (numpy has no batched one); k is small
        above[q] = width - np.searchsorted(neg_sorted[q], sc[q], side="left")
    j = np.cumsum(counted, axis=1)  # the j-th counted match, in list (= score) order
    rank = above + j

    has = n_true > 0
    if not has.any():
        raise SfscError(
            "no query has a true match in the gallery (same pid from another camera); "
            "check that q_pids/g_pids and camids come from the same split"
        )
    n = n_true.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ap = np.where(counted, j / rank, 0.0).sum(1) / n
        first = np.where(counted, rank, np.iinfo(np.int64).max).min(1).astype(np.float64)
        first[~counted.any(1)] = np.inf
        n_counted = counted.sum(1)
        complete = n_counted == n_true
        last_rank = np.where(counted, rank, 0).max(1)
        inp = np.where(complete, n / np.maximum(last_rank, 1), np.nan)
    return TopKScores(ap[has], first[has], inp[has], complete[has], int(k if k is not None else width))


def topk_evaluate(
    indices,
    scores,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    ranks: Sequence[int] = (1, 5, 10),
    k: int | None = None,
) -> RetrievalMetrics:
    """Retrieval metrics from top-k lists; ``ranking`` says ``top-k (k=K)`` (module docstring)."""
    ranks = tuple(int(r) for r in ranks)
    if not ranks or min(ranks) < 1:
        raise SfscError(f"ranks {ranks} must be positive integers")
    return topk_query_scores(indices, scores, q_pids, g_pids, q_camids, g_camids, k).metrics(ranks)
