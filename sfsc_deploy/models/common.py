"""Building blocks shared by the backbones (plain containers around factory layers)."""

from __future__ import annotations

from torch import nn

from sfsc_deploy.switchable.channels import Ch
from sfsc_deploy.switchable.factory import LayerFactory
from sfsc_deploy.switchable.layers import BNSpec, ConvSpec


def scaled(channels: int, mult: float, minimum: int = 8) -> int:
    """Base channel count under a width multiplier, rounded to a multiple of 4."""
    return max(minimum, int(round(channels * mult / 4)) * 4)


def conv_bn(
    make: LayerFactory,
    cin: Ch | int,
    cout: Ch | int,
    kernel: int,
    stride: int = 1,
    groups: int | str = 1,
    act: type[nn.Module] | None = nn.ReLU,
    slice_in: bool = True,
) -> nn.Sequential:
    """Conv → BN (→ activation), padding 'same' for odd kernels."""
    conv = make.conv(ConvSpec(cin, cout, kernel, stride, kernel // 2, groups=groups, slice_in=slice_in))
    layers: list[nn.Module] = [conv, make.bn(BNSpec(cout))]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)
