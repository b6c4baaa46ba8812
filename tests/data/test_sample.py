import pytest
import torch

from sfsc_deploy.data.sample import sample_images
from sfsc_deploy.errors import SfscError
from tests.conftest import INPUT


def test_calibration_and_parity_images_never_overlap(synthetic_small):
    n = len(synthetic_small.train)
    calibration = sample_images(synthetic_small, INPUT, n - 10)
    parity = sample_images(synthetic_small, INPUT, 10, skip=n - 10)
    assert len(calibration) == n - 10 and len(parity) == 10
    flat_cal, flat_par = calibration.flatten(1), parity.flatten(1)
    same = (flat_par[:, None, :] == flat_cal[None, :, :]).all(dim=2)  # [parity, calibration]
    assert not same.any()
    assert torch.equal(sample_images(synthetic_small, INPUT, 10, skip=n - 10), parity)  # seeded


def test_too_few_images_for_both_is_one_clear_error(synthetic_small):
    """The old behaviour reused the calibration images for parity, checking int8 on what it was fit to."""
    n = len(synthetic_small.train)
    with pytest.raises(SfscError, match=f"has {n} training images.*need {n + 1} distinct"):
        sample_images(synthetic_small, INPUT, 11, skip=n - 10)
