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


def test_init_is_checked_and_saved_only_when_set():
    assert "init" not in TrainConfig().to_dict()  # runs saved before --init existed compare equal
    saved = TrainConfig(init="imagenet:weights/resnet18.pth").to_dict()
    assert saved["init"] == "imagenet:weights/resnet18.pth"
    assert TrainConfig.from_dict(saved) == TrainConfig(init="imagenet:weights/resnet18.pth")
    assert TrainConfig.from_dict(TrainConfig().to_dict()).init is None
    for bad in ("resnet18.pth", "imagenet:", "imagenet-keras:x.pth"):
        with pytest.raises(SfscError, match="--init .* is not a weights source; use imagenet:PATH"):
            TrainConfig(init=bad)
    with pytest.raises(SfscError, match="init must be a string or null"):
        TrainConfig.from_dict({"init": 3})
