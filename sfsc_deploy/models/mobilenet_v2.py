"""Switchable MobileNetV2. Depthwise convs keep ``groups == channels`` at every width.

Unlike torchvision, the last 1×1 conv (1280) scales with ``width_mult`` too, so the tiny models
used in tests and CPU benchmarks stay tiny.
"""

from __future__ import annotations

import torch
from torch import nn

from sfsc_deploy.models.common import conv_bn, scaled
from sfsc_deploy.models.config import ArchOptions
from sfsc_deploy.switchable.channels import Ch
from sfsc_deploy.switchable.factory import LayerFactory
from sfsc_deploy.switchable.layers import BNSpec, ConvSpec

# (expansion t, output channels c, repeats n, stride s) from the MobileNetV2 paper.
SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    def __init__(self, make: LayerFactory, cin: Ch, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(cin.full * expand))
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(make, cin, hidden, 1, act=nn.ReLU6))
        else:
            hidden = cin.full
        layers.append(conv_bn(make, hidden, hidden, 3, stride, groups="depthwise", act=nn.ReLU6))
        layers.append(make.conv(ConvSpec(hidden, cout, 1)))
        layers.append(make.bn(BNSpec(Ch(cout))))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin.full == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    def __init__(self, make: LayerFactory, opts: ArchOptions) -> None:
        super().__init__()
        m = opts.width_mult
        stem = scaled(32, m)
        layers: list[nn.Module] = [conv_bn(make, 3, stem, 3, 2, act=nn.ReLU6, slice_in=False)]
        cin = Ch(stem)
        for t, c, n, s in SETTINGS:
            cout = scaled(c, m)
            if c == 160 and opts.last_stride == 1:
                s = 1
            for i in range(n):
                layers.append(InvertedResidual(make, cin, cout, s if i == 0 else 1, t))
                cin = Ch(cout)
        last = scaled(1280, m)
        layers.append(conv_bn(make, cin, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.out_channels = Ch(last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def mobilenet_v2(make: LayerFactory, opts: ArchOptions) -> MobileNetV2:
    return MobileNetV2(make, opts)
