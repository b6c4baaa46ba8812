"""Feature extraction: batching, normalisation and flip averaging, checked against manual calls."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation import extract_features

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _model() -> nn.Module:
    torch.manual_seed(0)
    # BatchNorm + Dropout make train and eval mode differ, so running in eval mode is checked too.
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d((2, 1)),
        nn.Flatten(),
        nn.Linear(16, 6),
    )


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randint(
        0, 256, (10, 3, 16, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )


def _manual(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    x = (images.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.eval()(x)


def test_batched_equals_unbatched_and_manual(images):
    model = _model().train()
    small = extract_features(model, images, MEAN, STD, batch_size=3)
    assert model.training  # mode restored
    whole = extract_features(model, images, MEAN, STD, batch_size=256, progress=True)
    assert small.dtype == torch.float32 and small.shape == (10, 6)
    torch.testing.assert_close(small, whole)
    torch.testing.assert_close(whole, _manual(model, images))


def test_flip_averages_image_and_mirror(images):
    model = _model()
    got = extract_features(model, images, MEAN, STD, batch_size=4, flip=True)
    want = (_manual(model, images) + _manual(model, images.flip(3))) / 2
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, _manual(model, images))


def test_plain_callable(images):
    got = extract_features(lambda x: x.mean((2, 3)), images, MEAN, STD, batch_size=4)
    torch.testing.assert_close(got, _manual(nn.Identity(), images).mean((2, 3)))


def test_bad_inputs(images):
    model = _model()
    for bad in (
        lambda: extract_features(model, images.float(), MEAN, STD),
        lambda: extract_features(model, images[:0], MEAN, STD),
        lambda: extract_features(model, images, MEAN[:2], STD),
        lambda: extract_features(lambda x: x, images, MEAN, STD),
    ):
        with pytest.raises(SfscError):
            bad()
