"""Shared fixtures: tiny switchable networks whose per-width BatchNorms hold different statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sfsc_deploy.models import ARCHS, build
from sfsc_deploy.models.slicing import distinct_bn_statistics

# one thread: on a 2-core machine torch's default threads make small models several times slower,
# and results then do not depend on how many cores the test machine has
torch.set_num_threads(1)

ARCH_NAMES = sorted(ARCHS)
WIDTHS = [0.25, 0.5, 0.75, 1.0]
INPUT = (64, 32)
MARKET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "market1501"


# every width's BN holds its own statistics, so picking the wrong one shows
randomize_bn = distinct_bn_statistics


def tiny(arch: str = "resnet18", widths=WIDTHS, seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    options = {"width_mult": 0.25, "input_size": INPUT, "divisor": 4, **options}
    net = build(arch, widths, feature_dim=32, num_classes=10, **options)
    randomize_bn(net, seed)
    return net.eval()


def folder_dataset(root: Path, train: tuple[int, int], query: tuple[int, int], gallery_per_id: int) -> Path:
    """A tiny dataset in the folder layout: ``train`` = (ids, images per id) and ``query`` the same
    for the held-out ids, whose gallery holds ``gallery_per_id`` images each, on other cameras."""
    import numpy as np
    from PIL import Image

    (n_train, per_train), (n_query, per_query) = train, query
    held_out = range(n_train, n_train + n_query)
    rng = np.random.default_rng(0)
    for split, ids, per_id in (
        ("train", range(n_train), per_train),
        ("query", held_out, per_query),
        ("gallery", held_out, gallery_per_id),
    ):
        for pid in ids:
            for k in range(per_id):
                path = root / split / f"id{pid}" / f"img_c{k % 2 + (split == 'query') + 1}_{k}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 255, (*INPUT, 3), dtype=np.uint8) // 4 + pid * 20
                Image.fromarray(pixels.astype(np.uint8)).save(path)
    return root


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, *INPUT, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def synthetic_small():
    from sfsc_deploy.data import load_dataset
    from sfsc_deploy.data.synthetic import SyntheticConfig

    return load_dataset("synthetic", synthetic=SyntheticConfig(num_train_ids=32, num_test_ids=16))


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, synthetic_small) -> Path:
    """A tiny SFSC model (widths 0.25, 0.5, 1.0) trained briefly, so retrieval figures mean something."""
    from sfsc_deploy.models import ArchOptions
    from sfsc_deploy.train import TrainConfig, train

    run = tmp_path_factory.mktemp("trained") / "run"
    cfg = TrainConfig(epochs=8, lr=3e-3, batch_ids=8, batch_k=4, warmup_epochs=0.5)
    options = ArchOptions(width_mult=0.25, input_size=INPUT, divisor=4)
    train(synthetic_small, "resnet18", "0.25,0.5", cfg, run, feature_dim=32, options=options, progress=False)
    return run / "checkpoint.safetensors"


@pytest.fixture(scope="session")
def readme_run(tmp_path_factory):
    """The README's commands, run once for every test that needs a whole pipeline's outputs."""
    from tests.readme_pipeline import run_readme

    return run_readme(tmp_path_factory.mktemp("readme"))


# fixtures that train or run the whole pipeline: their tests are slow, and under pytest-xdist each
# group stays on one worker so that the fixture is built once, not once per worker
_SHARED = {"readme_run": "readme", "trained_checkpoint": "trained"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, group in _SHARED.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.slow)
                item.add_marker(pytest.mark.xdist_group(group))
                break
