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


def test_degenerate_outputs_are_named_not_compared():
    zero = compare(np.zeros((4, 8)), np.zeros((4, 8)), "fp32")
    assert not zero.passed and "(near) zero" in zero.degenerate
    nan = np.ones((4, 8))
    nan[1, 2] = np.nan
    assert "exported features contain NaN" in compare(np.ones((4, 8)), nan, "fp32").degenerate
    assert compare(np.eye(4, 8), np.eye(4, 8), "fp32").degenerate is None


def test_every_parity_hint_is_true_for_its_case():
    from sfsc_deploy.deploy.export import _parity_hint

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(6, 8))
    bad = {p: compare(ref, rng.normal(size=(6, 8)), p) for p in ("fp32", "fp16", "int8")}
    assert "calibration" not in _parity_hint(bad["fp32"]) and "bug" in _parity_hint(bad["fp32"])
    assert "use fp32" in _parity_hint(bad["fp16"]) and "calibration" not in _parity_hint(bad["fp16"])
    assert "--calibration-images" in _parity_hint(bad["int8"])
    assert "train the model" in _parity_hint(compare(np.zeros((6, 8)), ref, "int8"))
