"""The fast vectorised metrics agree with a literal per-query reference, and with hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation import RetrievalMetrics, evaluate
from tests.evaluation.reference import reference_evaluate

RANKS = (1, 2, 5, 10)


def _problem(seed: int, nq: int = 40, ng: int = 300, ids: int = 25, cams: int = 4, dim: int = 16, noise=1.5):
    """Class centres plus noise, so metrics land mid-range rather than near 0 or 100."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids + 1, dim))
    q_pids = rng.integers(1, ids + 1, nq)
    g_pids = rng.integers(0, ids + 1, ng)  # pid 0: distractors
    g_pids[rng.random(ng) < 0.05] = -1  # junk
    qf = centres[q_pids] + noise * rng.normal(size=(nq, dim))
    gf = centres[np.maximum(g_pids, 0)] + noise * rng.normal(size=(ng, dim))
    return qf, gf, q_pids, g_pids, rng.integers(0, cams, nq), rng.integers(0, cams, ng)


def _assert_same(got: RetrievalMetrics, want: dict) -> None:
    assert got.num_queries == want["num_queries"]
    assert got.mAP == pytest.approx(want["mAP"], abs=1e-4)
    assert got.mINP == pytest.approx(want["mINP"], abs=1e-4)
    for r in want["cmc"]:
        assert got.cmc[r] == pytest.approx(want["cmc"][r], abs=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_problems(seed):
    problem = _problem(seed, cams=2 + seed % 4)
    got = evaluate(*problem, ranks=RANKS, chunk=7)  # several chunks, the last one partial
    want = reference_evaluate(*problem, ranks=RANKS)
    _assert_same(got, want)
    assert 0 < got.mAP < 100


def test_matches_reference_with_ties():
    """±1 features of one norm give exact, heavily tied similarities; matches lose ties in both."""
    rng = np.random.default_rng(7)
    qf = rng.choice([-1.0, 1.0], size=(30, 4))
    gf = rng.choice([-1.0, 1.0], size=(200, 4))
    problem = (
        qf,
        gf,
        rng.integers(1, 6, 30),
        rng.integers(0, 6, 200),
        rng.integers(0, 3, 30),
        rng.integers(0, 3, 200),
    )
    _assert_same(evaluate(*problem, ranks=RANKS), reference_evaluate(*problem, ranks=RANKS))


def test_queries_without_valid_match_are_skipped():
    qf, gf, q_pids, g_pids, q_cams, g_cams = _problem(3)
    q_pids[:5] = 999  # absent from the gallery
    g_pids[g_pids == q_pids[5]] = -1  # only junk left
    q_pids[6], q_cams[6] = 1000, 0
    g_pids[:3], g_cams[:3] = 1000, 0  # only same-camera entries
    got = evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, ranks=RANKS)
    want = reference_evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, ranks=RANKS)
    _assert_same(got, want)
    assert got.num_queries <= len(qf) - 7


def test_hand_computed_example():
    """One query; gallery ranked by construction: neg, match, junk (same cam), neg, match."""
    q = torch.tensor([[1.0, 0.0]])
    angles = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    g = torch.stack([angles.cos(), angles.sin()], 1)
    g_pids = [7, 1, 1, 0, 1]
    g_cams = [2, 2, 0, 3, 1]
    m = evaluate(q, g, [1], g_pids, [0], g_cams, ranks=(1, 2, 3))
    # Junk removed -> ranking: neg, MATCH (rank 2), neg, MATCH (rank 4).
    assert m.num_queries == 1
    assert m.mAP == pytest.approx(100 * (1 / 2 + 2 / 4) / 2)
    assert m.cmc == {1: 0.0, 2: 100.0, 3: 100.0}
    assert m.mINP == pytest.approx(100 * 2 / 4)
    assert m.rank1 == 0.0


def test_perfect_features_score_100():
    pids = np.repeat(np.arange(1, 11), 4)
    feats = np.eye(10)[pids - 1]
    cams = np.tile(np.arange(4), 10)
    m = evaluate(feats[::4], feats, pids[::4], pids, cams[::4], cams)
    assert m.mAP == m.mINP == m.rank1 == 100.0
    assert m.num_queries == 10


@pytest.mark.parametrize("scale", [1e-3, 7.0, 1e4])
def test_invariant_to_feature_scale(scale):
    qf, gf, *labels = _problem(11)
    base = evaluate(qf, gf, *labels)
    scaled = evaluate(torch.tensor(qf * scale), gf / scale, *labels)
    assert scaled.mAP == pytest.approx(base.mAP)
    assert scaled.cmc == pytest.approx(base.cmc) and scaled.mINP == pytest.approx(base.mINP)


def test_to_dict_roundtrip():
    m = evaluate(*_problem(1))
    assert RetrievalMetrics.from_dict(m.to_dict()) == m
    assert set(m.to_dict()) == {"mAP", "cmc", "mINP", "num_queries"}


def test_bad_inputs_raise_one_line_errors():
    qf, gf, q_pids, g_pids, q_cams, g_cams = _problem(2)
    cases = [
        lambda: evaluate(qf[:, :8], gf, q_pids, g_pids, q_cams, g_cams),
        lambda: evaluate(qf, gf, q_pids[:3], g_pids, q_cams, g_cams),
        lambda: evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, ranks=(0,)),
        lambda: evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, ranks=(60,)),
        lambda: evaluate(qf * np.nan, gf, q_pids, g_pids, q_cams, g_cams),
        lambda: evaluate(qf, gf, q_pids + 10_000, g_pids, q_cams, g_cams),
        lambda: evaluate(qf, gf, q_pids * 1.0, g_pids, q_cams, g_cams),
    ]
    for case in cases:
        with pytest.raises(SfscError) as err:
            case()
        assert "\n" not in str(err.value)


def test_all_zero_features_rank_at_the_bottom_not_the_top():
    """Every score ties: a degenerate model must not get mAP 100 / rank-1 100 (ties count against it)."""
    rng = np.random.default_rng(3)
    q_pids, g_pids = np.arange(10), np.repeat(np.arange(10), 5)
    got = evaluate(
        np.zeros((10, 8)), np.zeros((50, 8)), q_pids, g_pids, np.zeros(10, int), np.ones(50, int), ranks=RANKS
    )
    assert got.cmc[1] == 0.0 and got.mAP < 15, got
    # the same gallery with real features ranks its matches first
    gf = rng.normal(size=(50, 8))
    qf = gf[::5] + 0.01 * rng.normal(size=(10, 8))
    assert evaluate(qf, gf, q_pids, g_pids, np.zeros(10, int), np.ones(50, int), ranks=RANKS).cmc[1] == 100.0
