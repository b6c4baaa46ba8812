"""Metrics from top-k lists: equal to the full ranking with k ≥ N, lower bounds below it."""

import numpy as np
import pytest

from sfsc_deploy.evaluation.metrics import evaluate, query_scores
from sfsc_deploy.evaluation.scores import RetrievalMetrics
from sfsc_deploy.evaluation.topk_metrics import topk_evaluate, topk_query_scores
from sfsc_deploy.retrieval.search import exact_topk


def labelled(q=60, n=400, d=32, ids=30, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, d)).astype(np.float32)
    g_pids = rng.integers(0, ids, n)
    g_pids[:10] = -1  # junk
    g_cams = rng.integers(0, 6, n)
    q_pids = rng.integers(0, ids, q)
    q_cams = rng.integers(0, 6, q)
    gf = centres[np.maximum(g_pids, 0)] + 1.2 * rng.standard_normal((n, d)).astype(np.float32)
    qf = centres[q_pids] + 1.2 * rng.standard_normal((q, d)).astype(np.float32)
    return qf, gf, q_pids, g_pids, q_cams, g_cams


def test_k_at_least_the_gallery_equals_the_full_ranking():
    qf, gf, qp, gp, qc, gc = labelled()
    full = evaluate(qf, gf, qp, gp, qc, gc)
    per_query = query_scores(qf, gf, qp, gp, qc, gc)
    top = exact_topk(qf, gf, len(gf) + 5)
    got = topk_evaluate(top.indices, top.scores, qp, gp, qc, gc, k=top.k)
    scores = topk_query_scores(top.indices, top.scores, qp, gp, qc, gc)
    assert full.ranking == "full" and got.ranking == f"top-k (k={len(gf)})"
    assert got.num_queries == full.num_queries
    assert scores.complete.all()
    np.testing.assert_allclose(scores.ap, per_query.ap, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(scores.first, per_query.first)
    np.testing.assert_allclose(scores.inp, per_query.inp, rtol=0, atol=1e-12)
    assert got.mAP == pytest.approx(full.mAP, abs=1e-9)
    assert got.mINP == pytest.approx(full.mINP, abs=1e-9)
    assert got.cmc == pytest.approx(full.cmc, abs=1e-9)


@pytest.mark.parametrize("k", [1, 5, 20, 100])
def test_small_k_gives_lower_bounds(k):
    qf, gf, qp, gp, qc, gc = labelled()
    full = evaluate(qf, gf, qp, gp, qc, gc)
    per_query = query_scores(qf, gf, qp, gp, qc, gc)
    top = exact_topk(qf, gf, k)
    scores = topk_query_scores(top.indices, top.scores, qp, gp, qc, gc, k=k)
    got = scores.metrics()
    assert got.ranking == f"top-k (k={k})"
    assert np.all(scores.ap <= per_query.ap + 1e-12)
    np.testing.assert_allclose(scores.ap[scores.complete], per_query.ap[scores.complete], atol=1e-12)
    assert got.mAP <= full.mAP + 1e-9
    for r, v in got.cmc.items():
        assert v <= full.cmc[r] + 1e-9
        if r <= k - 10:  # within the list (less what was dropped), CMC is exact
            assert v == pytest.approx(full.cmc[r])
    if scores.complete.all():
        assert got.mINP == pytest.approx(full.mINP)
    else:
        assert got.mINP is None and got.to_dict()["mINP"] is None


def test_a_match_tied_with_the_cut_counts_as_beyond_it():
    # gallery: 0 negative, 1 match, 2 negative with the match's score (ranked after it by row)
    g_pids, g_cams = np.array([9, 1, 9]), np.array([0, 1, 2])
    q_pids, q_cams = np.array([1]), np.array([0])
    cut = topk_query_scores(np.array([[0, 1]]), np.array([[0.9, 0.5]]), q_pids, g_pids, q_cams, g_cams)
    assert cut.ap[0] == 0 and np.isinf(cut.first[0]) and not cut.complete[0]
    whole = topk_query_scores(
        np.array([[0, 1, 2]]), np.array([[0.9, 0.5, 0.5]]), q_pids, g_pids, q_cams, g_cams
    )
    assert whole.first[0] == 3 and whole.ap[0] == pytest.approx(1 / 3)  # the tie goes against the match


def test_ranking_survives_to_dict_and_back():
    m = RetrievalMetrics(50.0, {1: 60.0}, None, 10, "top-k (k=100)")
    assert m.to_dict()["ranking"] == "top-k (k=100)"
    assert RetrievalMetrics.from_dict(m.to_dict()) == m
    full = RetrievalMetrics(50.0, {1: 60.0}, 20.0, 10)
    assert "ranking" not in full.to_dict() and RetrievalMetrics.from_dict(full.to_dict()) == full
