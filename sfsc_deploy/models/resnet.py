"""Switchable ResNet-18 / ResNet-50 (torchvision layout, re-id last stride)."""

from __future__ import annotations

import torch
from torch import nn

from sfsc_deploy.models.common import conv_bn, scaled
from sfsc_deploy.models.config import ArchOptions
from sfsc_deploy.switchable.channels import Ch
from sfsc_deploy.switchable.factory import LayerFactory
from sfsc_deploy.switchable.layers import BNSpec, ConvSpec


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, make: LayerFactory, cin: Ch, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = make.conv(ConvSpec(cin, planes, 3, stride, 1))
        self.bn1 = make.bn(BNSpec(Ch(planes)))
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = make.conv(ConvSpec(planes, planes, 3, 1, 1))
        self.bn2 = make.bn(BNSpec(Ch(planes)))
        self.downsample = _shortcut(make, cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, make: LayerFactory, cin: Ch, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = make.conv(ConvSpec(cin, planes, 1))
        self.bn1 = make.bn(BNSpec(Ch(planes)))
        self.conv2 = make.conv(ConvSpec(planes, planes, 3, stride, 1))
        self.bn2 = make.bn(BNSpec(Ch(planes)))
        self.conv3 = make.conv(ConvSpec(planes, out, 1))
        self.bn3 = make.bn(BNSpec(Ch(out)))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(make, cin, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _shortcut(make: LayerFactory, cin: Ch, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin.full == cout:
        return None
    return conv_bn(make, cin, cout, 1, stride, act=None)


class ResNet(nn.Module):
    def __init__(
        self,
        make: LayerFactory,
        block: type[BasicBlock] | type[Bottleneck],
        depths: tuple[int, int, int, int],
        opts: ArchOptions,
    ) -> None:
        super().__init__()
        base = scaled(64, opts.width_mult)
        self.stem = conv_bn(make, 3, base, 7, 2, slice_in=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = Ch(base)
        stages = []
        for i, depth in enumerate(depths):
            planes = base * 2**i
            stride = 1 if i == 0 else (opts.last_stride if i == 3 else 2)
            blocks = []
            for j in range(depth):
                blocks.append(block(make, cin, planes, stride if j == 0 else 1))
                cin = Ch(planes * block.expansion)
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet18(make: LayerFactory, opts: ArchOptions) -> ResNet:
    return ResNet(make, BasicBlock, (2, 2, 2, 2), opts)


def resnet50(make: LayerFactory, opts: ArchOptions) -> ResNet:
    return ResNet(make, Bottleneck, (3, 4, 6, 3), opts)
