import copy

import pytest
import torch

from exporters.files import OWNED
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import FeatureNet, build_plain
from sfsc_deploy.models.slicing import load_sliced, save_sliced, slice_error, slice_model
from sfsc_deploy.switchable.layers import Switchable, SwitchableBatchNorm
from tests.conftest import ARCH_NAMES, INPUT, WIDTHS, tiny

CASES = [(a, w) for a in ARCH_NAMES for w in WIDTHS]


@pytest.fixture(scope="module")
def nets():
    return {arch: tiny(arch) for arch in ARCH_NAMES}


def test_fixture_bn_statistics_differ_between_widths(nets):
    """Guard for the equality test: identical BNs would hide a wrong-BN bug."""
    bn = next(m for m in nets["resnet18"].modules() if isinstance(m, SwitchableBatchNorm))
    small, full = bn.bn["0_5"].running_mean, bn.bn["1"].running_mean
    assert not torch.allclose(small, full[: small.numel()])


@pytest.mark.parametrize(("arch", "width"), CASES)
def test_sliced_equals_switchable(nets, arch, width, images):
    net = nets[arch]
    twin = slice_model(net, width)
    assert slice_error(net, twin, width, images) <= 1e-5


@pytest.mark.parametrize(("arch", "width"), CASES)
def test_sliced_is_plain_minimal_and_classifier_free(nets, arch, width):
    net = nets[arch]
    twin = slice_model(net, width)
    assert type(twin) is FeatureNet
    assert not any(isinstance(m, Switchable) for m in twin.modules())
    assert not any("classifier" in k for k in twin.state_dict())
    n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in twin.modules())
    assert n_bn == sum(isinstance(m, SwitchableBatchNorm) for m in net.modules())
    # identical layout to the natively built plain model of that width, no oversized tensor
    native = build_plain(net.config, width).state_dict()
    sliced = twin.state_dict()
    assert sliced.keys() == native.keys()
    for key, tensor in sliced.items():
        assert tensor.shape == native[key].shape, key
        assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size(), key


@pytest.mark.filterwarnings("ignore:.*jit.trace.*is deprecated")
@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_sliced_survives_trace_and_export(nets, arch, images):
    twin = slice_model(nets[arch], 0.5)
    with torch.no_grad():
        ref = twin(images)
        traced = torch.jit.trace(twin, images)
        assert torch.allclose(traced(images), ref, atol=1e-6)
    exported = torch.export.export(twin, (images,))
    with torch.no_grad():
        assert torch.allclose(exported.module()(images), ref, atol=1e-6)


def test_wrong_batchnorm_would_be_detected(nets, images):
    """Swap in the full width's BN (sliced to size): the equality check must fail."""
    net = nets["resnet18"]
    twin = slice_model(net, 0.5)
    wrong = copy.deepcopy(twin)
    full_bn = net.backbone.stem[1].bn["1"]
    n = wrong.backbone.stem[1].num_features
    with torch.no_grad():
        wrong.backbone.stem[1].running_mean.copy_(full_bn.running_mean[:n])
        wrong.backbone.stem[1].running_var.copy_(full_bn.running_var[:n])
    assert slice_error(net, wrong, 0.5, images) > 1e-3


def test_parameter_count_scales_like_width_squared():
    net = tiny("resnet18", width_mult=0.5, divisor=8)
    full = sum(p.numel() for p in slice_model(net, 1.0).backbone.parameters())
    for w in (0.25, 0.5, 0.75):
        part = sum(p.numel() for p in slice_model(net, w).backbone.parameters())
        assert part / full == pytest.approx(w * w, rel=0.12)


def test_untrained_width_cannot_be_sliced(nets):
    with pytest.raises(SfscError, match="trained widths: 0.25, 0.5, 0.75, 1"):
        slice_model(nets["resnet18"], 0.3)


def test_sliced_model_roundtrips_without_switchable_code(nets, tmp_path, images):
    net = nets["mobilenet_v2"]
    twin = slice_model(net, 0.25)
    out = save_sliced(twin, net.config, 0.25, tmp_path / "m", family_id="abc")
    assert sorted(p.name for p in out.iterdir()) == [OWNED, "model.json", "model.safetensors"]
    loaded, desc = load_sliced(out)
    assert desc["family_id"] == "abc" and desc["width"] == 0.25
    assert not any(isinstance(m, Switchable) for m in loaded.modules())
    with torch.no_grad():
        assert torch.equal(loaded(images), twin(images))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_save_sliced_refuses_to_overwrite_without_force(nets, tmp_path):
    net = nets["resnet18"]
    twin = slice_model(net, 0.5)
    save_sliced(twin, net.config, 0.5, tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    with pytest.raises(SfscError, match="--force"):
        save_sliced(slice_model(net, 0.25), net.config, 0.25, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    save_sliced(slice_model(net, 0.25), net.config, 0.25, tmp_path / "m", force=True)
    assert load_sliced(tmp_path / "m")[1]["width"] == 0.25


def test_load_sliced_rejects_a_non_model_folder(tmp_path):
    with pytest.raises(SfscError, match="not a sliced model"):
        load_sliced(tmp_path)


def test_slicing_is_not_affected_by_input_size_mismatch(nets):
    """A sliced model is fully convolutional + global pool: other input sizes still match."""
    net = nets["resnet50"]
    x = torch.randn(2, 3, INPUT[0] * 2, INPUT[1])
    assert slice_error(net, slice_model(net, 0.75), 0.75, x) <= 1e-5
