import numpy as np
import pytest

from exporters.parity import TOLERANCES, compare
from sfsc_deploy.errors import SfscError


def features(n=20, d=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_identical_features_pass_every_precision():
    f = features()
    for precision in TOLERANCES:
        p = compare(f, f.copy(), precision)
        assert p.passed and p.max_abs == 0 and p.min_cosine == pytest.approx(1.0)


def test_small_noise_passes_int8_but_not_fp32():
    f = features()
    noisy = f + np.random.default_rng(1).normal(scale=0.02, size=f.shape)
    assert compare(f, noisy, "int8").passed
    assert not compare(f, noisy, "fp32").passed


def test_one_bad_row_fails():
    f = features()
    bad = f.copy()
    bad[3] = -bad[3]
    p = compare(f, bad, "int8")
    assert not p.passed and p.min_cosine < -0.99


def test_non_finite_output_fails():
    f = features()
    bad = f.copy()
    bad[0, 0] = np.nan
    assert not compare(f, bad).passed


def test_bad_inputs_are_errors():
    with pytest.raises(SfscError, match="shape"):
        compare(features(), features(n=5))
    with pytest.raises(SfscError, match="precision"):
        compare(features(), features(), "int4")
