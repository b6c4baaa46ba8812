import pytest
import torch

from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import checkpoint
from sfsc_deploy.models.calibration import calibrate_bn
from sfsc_deploy.models.slicing import slice_error, slice_model
from tests.conftest import INPUT, tiny


@pytest.fixture
def calib() -> torch.Tensor:
    return torch.randn(16, 3, *INPUT, generator=torch.Generator().manual_seed(3))


def test_new_width_becomes_sliceable_and_stays_in_the_family(calib, images):
    net = tiny("resnet18")
    fid = checkpoint.family_id(net)
    with pytest.raises(SfscError):
        slice_model(net, 0.375)
    assert calibrate_bn(net, 0.375, calib, batch_size=8) == 16
    assert 0.375 in net.widths and net.calibrated_widths == [0.375]
    twin = slice_model(net, 0.375)
    assert slice_error(net, twin, 0.375, images) <= 1e-5
    assert checkpoint.family_id(net) == fid
    assert not net.training


def test_running_statistics_are_the_calibration_batch_statistics(calib):
    net = tiny("resnet18")
    calibrate_bn(net, 0.375, calib, batch_size=16)
    stem_conv = net.backbone.stem[0].sliced(0.375)
    with torch.no_grad():
        act = stem_conv(calib)
    bn = net.backbone.stem[1].bn["0_375"]
    assert torch.allclose(bn.running_mean, act.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, act.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4)
    assert bn.momentum == 0.1  # restored for any later training


def test_calibrated_width_survives_a_checkpoint(calib, tmp_path, images):
    net = tiny("shufflenet_v2", divisor=8)
    calibrate_bn(net, 0.6, calib)
    loaded = checkpoint.load(checkpoint.save(net, tmp_path / "ck.safetensors"))
    assert loaded.calibrated_widths == [0.6]
    with net.at_width(0.6), loaded.at_width(0.6), torch.no_grad():
        assert torch.equal(net(images), loaded(images))


def test_too_few_images_leave_the_net_unchanged():
    net = tiny("resnet18")
    with pytest.raises(SfscError, match="at least 2 images"):
        calibrate_bn(net, 0.375, torch.randn(1, 3, *INPUT))
    with pytest.raises(SfscError, match="at least 2 images"):
        calibrate_bn(net, 0.375, [torch.randn(1, 3, *INPUT)])
    assert 0.375 not in net.widths
