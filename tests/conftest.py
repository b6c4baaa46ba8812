"""Shared fixtures: tiny switchable networks whose per-width BatchNorms hold different statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sfsc_deploy.layers import SwitchableBatchNorm
from sfsc_deploy.models import ARCHS, build

ARCH_NAMES = sorted(ARCHS)
WIDTHS = [0.25, 0.5, 0.75, 1.0]
INPUT = (64, 32)
MARKET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "market1501"


@torch.no_grad()
def randomize_bn(net: torch.nn.Module, seed: int = 0) -> None:
    """Give every width's BN its own non-trivial statistics, so picking the wrong one shows."""
    g = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, SwitchableBatchNorm):
            for bn in module.bn.values():
                n = bn.num_features
                bn.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                bn.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(n, generator=g) * 0.2)


def tiny(arch: str = "resnet18", widths=WIDTHS, seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    options = {"width_mult": 0.25, "input_size": INPUT, "divisor": 4, **options}
    net = build(arch, widths, feature_dim=32, num_classes=10, **options)
    randomize_bn(net, seed)
    return net.eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, *INPUT, generator=torch.Generator().manual_seed(1))
