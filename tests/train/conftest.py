import pytest

from sfsc_deploy.data import load_dataset
from sfsc_deploy.data.synthetic import SyntheticConfig
from sfsc_deploy.models import ArchOptions

TINY_OPTIONS = ArchOptions(width_mult=0.25, input_size=(64, 32), divisor=4)


@pytest.fixture(scope="session")
def small_data():
    return load_dataset(
        "synthetic", synthetic=SyntheticConfig(num_train_ids=12, num_test_ids=6, images_per_id_per_camera=2)
    )
