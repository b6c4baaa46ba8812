import pytest
import torch
import torch.nn.functional as F

from sfsc_deploy.errors import SfscError
from sfsc_deploy.switchable.layers import (
    BNSpec,
    ConvSpec,
    LinearSpec,
    SwitchableBatchNorm,
    SwitchableConv2d,
    SwitchableLinear,
)


def exact_storage(t: torch.Tensor) -> bool:
    return t.untyped_storage().nbytes() == t.numel() * t.element_size()


def test_conv_uses_leading_channels_and_twin_matches():
    conv = SwitchableConv2d(ConvSpec(16, 32, 3, padding=1, bias=True), divisor=8)
    torch.nn.init.normal_(conv.bias)
    conv.width = 0.5
    x = torch.randn(2, 8, 6, 6)
    ref = F.conv2d(x, conv.weight[:16, :8], conv.bias[:16], padding=1)
    assert torch.equal(conv(x), ref)
    twin = conv.sliced(0.5)
    assert type(twin) is torch.nn.Conv2d
    assert twin.weight.shape == (16, 8, 3, 3) and twin.bias.shape == (16,)
    assert exact_storage(twin.weight) and exact_storage(twin.bias)
    assert torch.equal(twin(x), ref)


def test_first_conv_keeps_rgb_input():
    conv = SwitchableConv2d(ConvSpec(3, 32, 3, slice_in=False), divisor=8)
    assert conv.sliced(0.25).weight.shape == (8, 3, 3, 3)


def test_depthwise_groups_follow_channels():
    conv = SwitchableConv2d(ConvSpec(32, 32, 3, padding=1, groups="depthwise"), divisor=8)
    for w, c in ((0.25, 8), (0.5, 16), (1.0, 32)):
        twin = conv.sliced(w)
        assert twin.groups == c == twin.in_channels == twin.out_channels
        conv.width = w
        x = torch.randn(1, c, 5, 5)
        assert torch.equal(conv(x), twin(x))


def test_grouped_conv_keeps_group_count():
    conv = SwitchableConv2d(ConvSpec(32, 64, 1, groups=2), divisor=8)
    twin = conv.sliced(0.25)
    assert twin.groups == 2 and twin.weight.shape == (16, 4, 1, 1)
    conv.width = 0.25
    x = torch.randn(1, 8, 3, 3)
    assert torch.equal(conv(x), twin(x))


def test_grouped_conv_with_indivisible_channels_is_refused():
    conv = SwitchableConv2d(ConvSpec(24, 24, 1, groups=3), divisor=8)
    with pytest.raises(SfscError, match="divisible by 3"):
        conv.sliced(0.5)


def test_linear_feature_layer_is_not_sliced_on_output():
    lin = SwitchableLinear(LinearSpec(64, 32, slice_out=False), divisor=8)
    lin.width = 0.25
    x = torch.randn(4, 16)
    twin = lin.sliced(0.25)
    assert twin.weight.shape == (32, 16)
    assert torch.equal(lin(x), twin(x))


def test_batchnorm_is_private_per_width():
    bn = SwitchableBatchNorm(BNSpec(32), [0.25, 0.5, 1.0], divisor=8)
    assert [b.num_features for b in bn.bn.values()] == [8, 16, 32]
    bn.bn["0_5"].running_mean.fill_(3.0)
    assert torch.equal(bn.sliced(0.5).running_mean, torch.full((16,), 3.0))
    assert torch.equal(bn.sliced(1.0).running_mean, torch.zeros(32))
    with pytest.raises(SfscError, match="trained widths: 0.25, 0.5, 1"):
        bn.sliced(0.75)


def test_add_width_starts_from_nearest_wider_affine():
    bn = SwitchableBatchNorm(BNSpec(32), [0.25, 0.5, 1.0], divisor=8)
    with torch.no_grad():
        bn.bn["0_5"].weight.copy_(torch.arange(16.0))
        bn.bn["0_5"].running_mean.fill_(5.0)
    new = bn.add_width(0.375)
    assert new.num_features == 16  # c(0.375·32) = 12 → rounds to 16 with d = 8
    assert torch.equal(new.weight, torch.arange(16.0))
    assert torch.equal(new.running_mean, torch.zeros(16))  # statistics start over
    assert bn.widths == [0.25, 0.375, 0.5, 1.0]
