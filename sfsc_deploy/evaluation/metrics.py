"""Re-id retrieval metrics (mAP, CMC, mINP) under the Market-1501 protocol, vectorised over queries.

Only the ranks of each query's true matches matter, so instead of arg-sorting every gallery row we sort
the *values* of its negatives in place (numpy's SIMD sort, about 7x faster than ``torch.sort``, which
always builds indices) and binary-search each true match into them: the k-th best match sits at rank
``(#negatives scoring higher) + k``. The gallery is grouped by pid once, so a query's same-pid entries
are one contiguous slice and no ``queries x gallery`` label masks are built. Ties between a true match
and a negative are resolved *against* the match (pessimistic and independent of gallery order): a
degenerate model whose features all tie (e.g. all zero) must score at the bottom, never at 100.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.scores import RetrievalMetrics

ArrayLike = torch.Tensor | np.ndarray | Sequence


def _tensor(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x))


def _features(x: ArrayLike, name: str) -> torch.Tensor:
    t = _tensor(x).detach().to("cpu", torch.float32)
    if t.ndim != 2 or t.shape[0] == 0:
        raise SfscError(
            f"{name} must be a non-empty [N, D] matrix, got shape {tuple(t.shape)}; pass 2-d features"
        )
    if not torch.isfinite(t).all():
        raise SfscError(f"{name} contains NaN or inf; check the model output before evaluating")
    return F.normalize(t, dim=1)


def _labels(x: ArrayLike, n: int, name: str) -> torch.Tensor:
    t = _tensor(x).reshape(-1)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise SfscError(f"{name} must hold integers, got {t.dtype}; pass integer ids")
    if t.numel() != n:
        raise SfscError(f"{name} has {t.numel()} entries but the features have {n} rows; pass one id per row")
    return t.to("cpu", torch.int64)


def _check_ranks(ranks: Sequence[int], max_rank: int) -> tuple[int, ...]:
    ranks = tuple(int(r) for r in ranks)
    if not ranks or min(ranks) < 1 or max(ranks) > max_rank:
        raise SfscError(f"ranks {ranks} must be integers in 1..max_rank={max_rank}; adjust ranks or max_rank")
    return ranks


@dataclass
class QueryScores:
    """One row per query with a true match: average precision (0-1), the rank of its first true
    match, and its inverse negative penalty."""

    ap: np.ndarray
    first: np.ndarray
    inp: np.ndarray

    def __len__(self) -> int:
        return len(self.ap)

    def hits(self, rank: int = 1) -> np.ndarray:
        return self.first <= rank

    def metrics(self, ranks: Sequence[int] = (1, 5, 10)) -> RetrievalMetrics:
        cmc = {r: 100.0 * float(self.hits(r).mean()) for r in ranks}
        return RetrievalMetrics(100.0 * float(self.ap.mean()), cmc, 100.0 * float(self.inp.mean()), len(self))


def _sort_rows_inplace(x: torch.Tensor, pool: ThreadPoolExecutor, parts: int) -> None:
    """Sort each row ascending, splitting rows over threads (numpy's sort releases the GIL)."""
    a = x.numpy()
    bounds = np.linspace(0, len(a), parts + 1).astype(int)
    jobs = [
        pool.submit(a[lo:hi].sort, axis=1) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo
    ]
    for job in jobs:
        job.result()


def _same_pid_columns(
    lo: torch.Tensor, span: torch.Tensor, g_cams: torch.Tensor, q_cams: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gallery columns of each query's pid slice, padded by repeating its first one, and which are true
    matches (another camera; the rest is same-camera junk)."""
    step = torch.arange(int(span.max()))
    cols = lo[:, None] + torch.minimum(step, (span - 1).clamp(min=0)[:, None])
    cols = cols.clamp(max=max(len(g_cams) - 1, 0))  # only rows with span 0 reach past the end
    good = (step < span[:, None]) & (g_cams[cols] != q_cams[:, None])
    return cols, good


def _match_ranks(
    sims: torch.Tensor, cols: torch.Tensor, good: torch.Tensor, pool: ThreadPoolExecutor, parts: int
) -> torch.Tensor:
    """1-based ranks (junk removed) of each row's true matches, best first; padding gets huge ranks.

    ``cols`` [B, M] lists every same-pid gallery column of a row (padded by repeating one of them) and
    ``good`` marks those from another camera. ``sims`` is overwritten.
    """
    neg_inf = float("-inf")
    best = sims.gather(1, cols).masked_fill_(~good, neg_inf).sort(dim=1, descending=True).values
    sims.scatter_(1, cols, neg_inf)  # true matches and junk never outrank anything
    _sort_rows_inplace(sims, pool, parts)
    above = sims.shape[1] - torch.searchsorted(sims, best, right=False)  # negatives scoring >= the match
    return above + torch.arange(1, cols.shape[1] + 1)


def query_scores(
    query_features: ArrayLike,
    gallery_features: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    chunk: int = 512,
) -> QueryScores:
    """Per-query scores (the queries with a true match, in query order) behind :func:`evaluate`.

    Which queries count depends on the labels only, so two models' scores on one query set pair
    up row by row: what a paired test of "did the export change retrieval" needs.
    """
    if chunk < 1:
        raise SfscError(f"chunk must be >= 1, got {chunk}; pass a positive chunk size")
    qf = _features(query_features, "query_features")
    gf = _features(gallery_features, "gallery_features")
    if qf.shape[1] != gf.shape[1]:
        raise SfscError(
            f"query features are {qf.shape[1]}-d but gallery features are {gf.shape[1]}-d; "
            "extract both with the same model head"
        )
    q_pids, q_cams = _labels(q_pids, len(qf), "q_pids"), _labels(q_camids, len(qf), "q_camids")
    g_pids, g_cams = _labels(g_pids, len(gf), "g_pids"), _labels(g_camids, len(gf), "g_camids")

    # Drop junk, then group the gallery by pid: a query's same-pid entries become one slice [lo, lo+span).
    keep = torch.nonzero(g_pids != -1).squeeze(1)
    order = keep[torch.argsort(g_pids[keep], stable=True)]
    gf, g_pids, g_cams = gf[order], g_pids[order], g_cams[order]
    lo = torch.searchsorted(g_pids, q_pids)
    span = torch.searchsorted(g_pids, q_pids, right=True) - lo

    first, ap, inp = [], [], []
    gft = gf.T.contiguous()
    parts = max(1, torch.get_num_threads())
    with torch.inference_mode(), ThreadPoolExecutor(parts) as pool:
        for start in range(0, len(qf), chunk):
            rows = slice(start, start + chunk)
            cols, good = _same_pid_columns(lo[rows], span[rows], g_cams, q_cams[rows])
            n = good.sum(1)
            valid = n > 0
            if not valid.any():
                continue
            cols, good, n = cols[valid], good[valid], n[valid]
            r = _match_ranks(qf[rows][valid] @ gft, cols, good, pool, parts).double()
            k = torch.arange(1, r.shape[1] + 1, dtype=torch.float64)
            first.append(r[:, 0])
            ap.append(torch.where(k <= n[:, None], k / r, 0.0).sum(1) / n)
            inp.append(n / r.gather(1, (n - 1)[:, None]).squeeze(1))
    if not first:
        raise SfscError(
            "no query has a true match in the gallery (same pid from another camera); "
            "check that q_pids/g_pids and camids come from the same split"
        )
    return QueryScores(torch.cat(ap).numpy(), torch.cat(first).numpy(), torch.cat(inp).numpy())


def evaluate(
    query_features: ArrayLike,
    gallery_features: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    ranks: Sequence[int] = (1, 5, 10),
    max_rank: int = 50,
    chunk: int = 512,
) -> RetrievalMetrics:
    """Cosine-similarity retrieval metrics under the Market-1501 protocol.

    Per query, gallery entries with the same pid *and* camera are removed; queries left without a true
    match are skipped. Gallery pid -1 (junk) is dropped; pid 0 (distractors) are ordinary negatives.
    ``max_rank`` bounds the CMC ranks that may be requested (torchreid's curve length). Queries are
    processed ``chunk`` rows at a time, bounding memory to about ``chunk x gallery x 4`` bytes.
    """
    ranks = _check_ranks(ranks, max_rank)
    scores = query_scores(query_features, gallery_features, q_pids, g_pids, q_camids, g_camids, chunk)
    return scores.metrics(ranks)
