import pytest
import torch

from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import NetOutput, build
from tests.conftest import ARCH_NAMES, INPUT, WIDTHS, tiny


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_every_width_emits_the_same_feature_dim(arch, images):
    net = tiny(arch)
    assert net.widths == WIDTHS
    feats = {}
    for w in net.widths:
        with net.at_width(w):
            feats[w] = net(images)
        assert feats[w].shape == (3, 32)
        assert torch.isfinite(feats[w]).all()
    # widths really compute different things (their own channels and BN)
    assert not torch.allclose(feats[0.25], feats[1.0])


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_train_mode_returns_what_losses_need(arch, images):
    net = tiny(arch).train()
    with net.at_width(0.5):
        out = net(images)
    assert isinstance(out, NetOutput)
    assert out.features.shape == out.pre_neck.shape == (3, 32)
    assert out.logits.shape == (3, 10)
    out.logits.sum().backward()
    assert net.classifier.weight.grad is not None


def test_at_width_restores_previous_width():
    net = tiny()
    net.set_width(0.5)
    with net.at_width(0.25):
        assert net.width == 0.25
    assert net.width == 0.5


def test_untrained_width_is_refused_with_the_trained_list():
    net = tiny(widths=[0.5])
    assert net.widths == [0.5, 1.0]
    with pytest.raises(SfscError, match=r"0\.3 is not trained; trained widths: 0.5, 1.*--calibrate"):
        net.set_width(0.3)


def test_unknown_arch_and_option_are_clear_errors():
    with pytest.raises(SfscError, match="unknown arch 'vgg'"):
        build("vgg")
    with pytest.raises(SfscError, match="unknown option"):
        build("resnet18", base=32)


def test_width_mult_and_input_size_are_honoured():
    small = build("resnet18", [0.5], width_mult=0.5, input_size=INPUT)
    assert small.backbone.stem[0].weight.shape[0] == 32  # ResNet base width 32
    assert small.config.options.input_size == INPUT


def test_shufflenet_concatenations_split_between_branches():
    net = tiny("shufflenet_v2", divisor=8)
    x = torch.randn(2, 3, *INPUT)
    for w in net.widths:
        with net.at_width(w):
            assert net(x).shape == (2, 32)
