import math

import pytest

from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.seeds import paired_difference, spread, t_critical


def test_spread_is_the_sample_mean_and_standard_deviation():
    s = spread([1.0, 2.0, 4.0])
    assert s.mean == pytest.approx(7 / 3)
    assert s.std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert s.text() == "2.3 ± 1.5"
    assert spread([5.0]).std == 0 and spread([5.0]).text() == "5.0"


def test_a_consistent_paired_gain_exceeds_the_spread_and_a_noisy_one_does_not():
    # method A is 1 point better in every seed, while seeds move both by 5 points
    base = [40.0, 45.0, 50.0]
    consistent = paired_difference([b + 1.0 + e for b, e in zip(base, (0.1, -0.1, 0.0), strict=True)], base)
    assert consistent.exceeds_spread and consistent.low > 0
    assert consistent.mean == pytest.approx(1.0)
    noisy = paired_difference([b + d for b, d in zip(base, (2.0, -1.5, 0.5), strict=True)], base)
    assert not noisy.exceeds_spread
    # the interval is mean ± t(0.975, n-1) · sd / sqrt(n)
    d = spread([2.0, -1.5, 0.5])
    assert noisy.high - noisy.mean == pytest.approx(t_critical(2) * d.std / math.sqrt(3))


def test_one_seed_never_claims_a_difference():
    one = paired_difference([50.0], [40.0])
    assert not one.exceeds_spread
    assert "one seed" in one.text()


def test_unpaired_inputs_are_refused():
    with pytest.raises(SfscError, match="same seeds"):
        paired_difference([1.0, 2.0], [1.0])
    assert t_critical(2) == pytest.approx(4.303)
    assert t_critical(100) == 1.96
