"""Switchable ShuffleNetV2, with a channel split that nests across widths.

A unit's output is the concatenation of two branches of ``B`` channels, described as
``Ch(B, 2)`` so that at width γ it holds ``2·c(γ, B)`` channels, interleaved by the channel
shuffle: ``[p0, b0, p1, b1, …]`` (p: the pass-through half, b: the branch output).

The original unit then splits its input into the first and second *halves*. That split does not
nest: at width γ the second half starts at channel ``c`` instead of ``B``, so a narrow model would
feed the branch's shared weights other channels than the full model feeds them, and the two would
not really share weights. Here the split takes positions ``≡ 0, 3 (mod 4)`` as the pass-through
half and ``≡ 1, 2 (mod 4)`` as the branch input: ``[p0, b1, p2, b3, …]`` and ``[b0, p1, b2, p3, …]``.
Each half still mixes pass-through and branch channels, as the half-split after a shuffle does,
and what a narrow width reads is the leading part of what the full width reads.
"""

from __future__ import annotations

import torch
from torch import nn

from sfsc_deploy.models.common import conv_bn, scaled
from sfsc_deploy.models.config import ArchOptions
from sfsc_deploy.switchable.channels import Ch
from sfsc_deploy.switchable.factory import LayerFactory

STAGE_CHANNELS = (116, 232, 464)
STAGE_REPEATS = (4, 8, 4)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


def nested_split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pass-through, branch input): channel positions ≡ 0, 3 and ≡ 1, 2 (mod 4), in order.

    Python index lists (the channel count is static), so traced and exported graphs hold them
    as constants.
    """
    n = x.shape[1]
    keep = [i for i in range(n) if i % 4 in (0, 3)]
    branch = [i for i in range(n) if i % 4 in (1, 2)]
    return x[:, keep], x[:, branch]


class ShuffleUnit(nn.Module):
    def __init__(self, make: LayerFactory, cin: Ch, branch: int, stride: int = 1, split: bool = True) -> None:
        """``split=True``: the basic unit; ``False``: the stage's first unit with two branches
        (strided unless ``last_stride=1`` keeps the last stage at stride 1)."""
        super().__init__()
        if split:
            if cin != Ch(branch, 2) or stride != 1:
                raise ValueError("a split shuffle unit needs cin == Ch(branch, 2) and stride 1")
            self.branch1 = None
            b2_in: Ch = Ch(branch)
        else:
            self.branch1 = nn.Sequential(
                conv_bn(make, cin, cin, 3, stride, groups="depthwise", act=None),
                conv_bn(make, cin, branch, 1),
            )
            b2_in = cin
        self.branch2 = nn.Sequential(
            conv_bn(make, b2_in, branch, 1),
            conv_bn(make, branch, branch, 3, stride, groups="depthwise", act=None),
            conv_bn(make, branch, branch, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            x1, x2 = nested_split(x)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out)


class ShuffleNetV2(nn.Module):
    def __init__(self, make: LayerFactory, opts: ArchOptions) -> None:
        super().__init__()
        m = opts.width_mult
        stem = scaled(24, min(1.0, m))
        self.stem = conv_bn(make, 3, stem, 3, 2, slice_in=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = Ch(stem)
        stages = []
        for i, (channels, repeats) in enumerate(zip(STAGE_CHANNELS, STAGE_REPEATS, strict=True)):
            branch = scaled(channels, m) // 2
            stride = opts.last_stride if i == 2 else 2
            units = [ShuffleUnit(make, cin, branch, stride, split=False)]
            cin = Ch(branch, 2)
            units += [ShuffleUnit(make, cin, branch) for _ in range(repeats - 1)]
            stages.append(nn.Sequential(*units))
        self.stage2, self.stage3, self.stage4 = stages
        last = scaled(1024, m)
        self.conv5 = conv_bn(make, cin, last, 1)
        self.out_channels = Ch(last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        return self.conv5(self.stage4(self.stage3(self.stage2(x))))


def shufflenet_v2(make: LayerFactory, opts: ArchOptions) -> ShuffleNetV2:
    return ShuffleNetV2(make, opts)
