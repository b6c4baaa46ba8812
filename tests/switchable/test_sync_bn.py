"""Synchronised BatchNorm on one process: plain BatchNorm without a group, the same maths with one."""

import pytest
import torch
import torch.distributed as dist
from torch import nn

from sfsc_deploy.models import build
from sfsc_deploy.models.slicing import slice_model
from sfsc_deploy.switchable.layers import BNSpec, SwitchableBatchNorm
from sfsc_deploy.switchable.sync_bn import set_sync_bn, synced_batch_norm
from tests.train.conftest import TINY_OPTIONS


def _pair(spec: BNSpec) -> tuple[SwitchableBatchNorm, SwitchableBatchNorm]:
    torch.manual_seed(0)
    a = SwitchableBatchNorm(spec, [0.5, 1.0], divisor=4)
    for bn in a.bn.values():
        nn.init.normal_(bn.weight)
        nn.init.normal_(bn.bias)
    b = SwitchableBatchNorm(spec, [0.5, 1.0], divisor=4)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("spec", [BNSpec(16), BNSpec(16, dim=1, sliced=False, freeze_bias=True)])
def test_sync_without_a_process_group_is_plain_batchnorm(spec):
    assert not dist.is_initialized()
    plain, synced = _pair(spec)
    assert set_sync_bn(synced, True) == 1 and synced.sync and not plain.sync
    shape = (6, 16, 5, 3) if spec.dim == 2 else (6, 16)
    for width in (0.5, 1.0):
        plain.width = synced.width = width
        x = torch.randn(*shape) * 3 + 1
        x = x[:, : plain._bn(width).num_features]
        assert torch.equal(synced(x), plain(x))
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in synced.state_dict().items())


@pytest.fixture
def one_rank_group():
    """A gloo group of one process: the synchronised path runs, its collectives are identities."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: nn.BatchNorm2d(8), (6, 8, 5, 4)),
        (lambda: nn.BatchNorm1d(8), (6, 8)),
        (lambda: nn.BatchNorm1d(8), (3, 8, 4)),
        (lambda: nn.BatchNorm2d(8, momentum=None), (6, 8, 5, 4)),  # cumulative average (calibration)
        (lambda: nn.BatchNorm2d(8, affine=False), (6, 8, 5, 4)),
        (lambda: nn.BatchNorm2d(8, track_running_stats=False), (6, 8, 5, 4)),
    ],
)
def test_synced_maths_equals_batch_norm_in_values_gradients_and_statistics(one_rank_group, make, shape):
    torch.manual_seed(0)
    ref = make()
    if ref.affine:
        nn.init.normal_(ref.weight)
        nn.init.normal_(ref.bias)
    bn = make()
    bn.load_state_dict(ref.state_dict())
    for _ in range(3):  # a few steps: the running statistics accumulate alike
        x = (torch.randn(*shape) * 4 + 10).requires_grad_()  # a large mean: no E[x²] − E[x]² cancellation
        g = torch.randn(*shape)
        expected = ref(x)
        got = synced_batch_norm(bn, x)
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
        wrt = [x] + ([ref.weight, ref.bias] if ref.affine else [])
        ref_grads = torch.autograd.grad(expected, wrt, g)
        wrt = [x] + ([bn.weight, bn.bias] if bn.affine else [])
        for a, b in zip(torch.autograd.grad(got, wrt, g), ref_grads, strict=True):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    for name, value in ref.state_dict().items():
        assert torch.allclose(bn.state_dict()[name].double(), value.double(), atol=1e-5, rtol=1e-5), name


def test_synced_statistics_are_float32_under_autocast(one_rank_group):
    bn = nn.BatchNorm2d(4)
    x = torch.randn(4, 4, 3, 3).to(torch.bfloat16)
    out = synced_batch_norm(bn, x)
    assert out.dtype == torch.bfloat16
    assert bn.running_mean.dtype == torch.float32
    assert torch.allclose(bn.running_mean, 0.1 * x.float().mean((0, 2, 3)), atol=1e-6)


def test_sliced_models_hold_plain_batchnorm_only():
    torch.manual_seed(0)
    net = build("resnet18", [0.5, 1.0], 16, 5, **vars(TINY_OPTIONS))
    assert set_sync_bn(net, True) > 0
    for width in (0.5, 1.0):
        twin = slice_model(net, width)
        kinds = {type(m) for m in twin.modules() if "BatchNorm" in type(m).__name__}
        assert kinds == {nn.BatchNorm2d, nn.BatchNorm1d}
        assert not any(hasattr(m, "sync") for m in twin.modules())
    assert set_sync_bn(net, False) > 0
    assert not any(m.sync for m in net.modules() if isinstance(m, SwitchableBatchNorm))
