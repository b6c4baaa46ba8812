import pytest

from sfsc_deploy.errors import SfscError
from sfsc_deploy.train import TrainConfig


def test_a_run_saved_before_an_option_existed_reads_with_its_default():
    saved = TrainConfig(lr=1e-3).to_dict()
    del saved["sampler"]  # what a run trained by an earlier version stored
    assert TrainConfig.from_dict(saved) == TrainConfig(lr=1e-3)


def test_options_of_a_newer_version_are_one_clear_error():
    saved = {**TrainConfig().to_dict(), "hyperdrive": True}
    with pytest.raises(SfscError, match="hyperdrive are unknown.*upgrade"):
        TrainConfig.from_dict(saved)
