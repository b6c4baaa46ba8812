import numpy as np
import pytest

from sfsc_deploy.evaluation.paired import FAIL, NO_VERDICT, PASS, mcnemar, paired_drop


def test_mcnemar_is_the_exact_binomial_test():
    assert mcnemar(0, 0) == 1.0
    assert mcnemar(5, 0) == pytest.approx(2 / 32)  # 5 lost, none gained: 2 · 0.5^5
    assert mcnemar(6, 1) == pytest.approx(2 * 8 / 128)
    assert mcnemar(3, 3) == 1.0


def test_identical_scores_pass_with_a_zero_interval():
    ap = np.random.default_rng(0).random(200)
    d = paired_drop(ap, ap, tolerance=0.1, metric="mAP")
    assert (d.drop, d.low, d.high, d.verdict) == (0.0, 0.0, 0.0, PASS)


def test_a_few_unlucky_rank1_flips_on_200_queries_are_not_a_failure():
    """The demo's case: a correct int8 model loses 6 and gains 1 rank-1 hits of 200 (−2.5 points).
    A fixed 1-point limit called that FAIL; the paired test sees it cannot exclude a 1-point drop."""
    ref = np.zeros(200, bool)
    ref[:120] = True
    art = ref.copy()
    art[:6] = False
    art[150] = True
    d = paired_drop(ref, art, tolerance=1.0, metric="rank-1")
    assert d.drop == pytest.approx(2.5)
    assert d.low < 1.0 < d.high and d.bound <= 1.0
    assert d.verdict == PASS and d.p_value == pytest.approx(0.125)


def test_a_real_drop_fails_and_too_few_queries_give_no_verdict():
    rng = np.random.default_rng(1)
    ref = rng.random(300)
    broken = np.clip(ref - 0.08 + rng.normal(0, 0.02, 300), 0, 1)  # 8 mAP points lost
    d = paired_drop(ref, broken, tolerance=1.0, metric="mAP")
    assert d.verdict == FAIL and d.bound > 1.0 and 7 < d.drop < 9
    assert "more than the allowed 1" in d.describe()
    few = paired_drop(ref[:20], broken[:20], tolerance=1.0, metric="mAP")
    assert few.verdict == NO_VERDICT and "too few queries" in few.describe()


def test_the_interval_is_reproducible_and_covers_the_truth():
    """Seeded; and over many simulated query sets the 95% interval holds the true drop ~95% of the time."""
    rng = np.random.default_rng(2)
    first = paired_drop(rng.random(100), rng.random(100), 5.0, "mAP", seed=3)
    rng = np.random.default_rng(2)
    assert paired_drop(rng.random(100), rng.random(100), 5.0, "mAP", seed=3) == first
    covered = 0
    for trial in range(200):
        ref = rng.random(150)
        art = ref - 0.02 + rng.normal(0, 0.05, 150)  # true drop: 2 points
        d = paired_drop(ref, art, 5.0, "mAP", resamples=400, seed=trial)
        covered += d.low <= 2.0 <= d.high
    assert 0.89 <= covered / 200 <= 0.99
