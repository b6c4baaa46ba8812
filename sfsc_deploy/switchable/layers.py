"""Switchable Conv2d / Linear / BatchNorm and their plain, sliced twins.

Every layer is described by a frozen *spec*. The spec alone decides the shape of the plain
``torch.nn`` layer at a width (``spec.plain``); a switchable layer holds the full tensors and
hands back its twin by creating ``spec.plain(width)`` and copying the leading slices in. The
plain rebuild of a sliced model (``models.build_plain``) uses the same ``spec.plain``, so the
two can never disagree about shapes.
Method: docs/method.md §1.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from sfsc_deploy.errors import SfscError
from sfsc_deploy.switchable import sync_bn
from sfsc_deploy.switchable.channels import DEFAULT_DIVISOR, Ch, as_ch, format_widths, width_key


@dataclass(frozen=True)
class ConvSpec:
    """A Conv2d. ``groups`` is a fixed group count or ``"depthwise"`` (groups == channels)."""

    in_ch: Ch
    out_ch: Ch
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int | Literal["depthwise"] = 1
    bias: bool = False
    slice_in: bool = True
    slice_out: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_ch", as_ch(self.in_ch))
        object.__setattr__(self, "out_ch", as_ch(self.out_ch))
        if self.groups == "depthwise" and self.in_ch != self.out_ch:
            raise ValueError("a depthwise conv needs in_ch == out_ch")

    def shape_at(self, width: float, divisor: int) -> tuple[int, int, int]:
        """(in channels, out channels, groups) at ``width``."""
        c_in = self.in_ch.at(width, divisor, self.slice_in)
        c_out = self.out_ch.at(width, divisor, self.slice_out)
        groups = c_in if self.groups == "depthwise" else int(self.groups)
        if c_in % groups or c_out % groups:
            raise SfscError(
                f"grouped conv with {groups} groups cannot run at width {width:g}: {c_in}->{c_out} "
                f"channels are not divisible by {groups}; use a channel divisor that is a multiple "
                f"of {groups}"
            )
        return c_in, c_out, groups

    def plain(self, width: float, divisor: int) -> nn.Conv2d:
        c_in, c_out, groups = self.shape_at(width, divisor)
        return nn.Conv2d(
            c_in, c_out, self.kernel, self.stride, self.padding, self.dilation, groups, self.bias
        )


@dataclass(frozen=True)
class LinearSpec:
    in_ch: Ch
    out_ch: Ch
    bias: bool = True
    slice_in: bool = True
    slice_out: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_ch", as_ch(self.in_ch))
        object.__setattr__(self, "out_ch", as_ch(self.out_ch))

    def shape_at(self, width: float, divisor: int) -> tuple[int, int]:
        return (
            self.in_ch.at(width, divisor, self.slice_in),
            self.out_ch.at(width, divisor, self.slice_out),
        )

    def plain(self, width: float, divisor: int) -> nn.Linear:
        return nn.Linear(*self.shape_at(width, divisor), bias=self.bias)


@dataclass(frozen=True)
class BNSpec:
    """A BatchNorm of one width. ``sliced=False`` keeps the full size (the feature neck)."""

    ch: Ch
    dim: Literal[1, 2] = 2
    sliced: bool = True
    eps: float = 1e-5
    momentum: float = 0.1
    freeze_bias: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch", as_ch(self.ch))

    def plain(self, width: float, divisor: int) -> nn.BatchNorm1d | nn.BatchNorm2d:
        cls = nn.BatchNorm2d if self.dim == 2 else nn.BatchNorm1d
        bn = cls(self.ch.at(width, divisor, self.sliced), eps=self.eps, momentum=self.momentum)
        if self.freeze_bias:
            bn.bias.requires_grad_(False)
        return bn


class Switchable(nn.Module):
    """A layer that runs at the active ``width`` and can hand back its plain twin."""

    width: float
    divisor: int

    def sliced(self, width: float) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError


class SwitchableConv2d(Switchable):
    """Conv2d whose width-γ version uses the leading ``[:c_out, :c_in/groups]`` weights."""

    def __init__(self, spec: ConvSpec, divisor: int = DEFAULT_DIVISOR) -> None:
        super().__init__()
        self.spec, self.divisor, self.width = spec, divisor, 1.0
        c_in, c_out, groups = spec.shape_at(1.0, divisor)
        k = spec.kernel
        self.weight = nn.Parameter(torch.empty(c_out, c_in // groups, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out)) if spec.bias else None
        # He fan-out init. torch's own fan-out ignores groups (a depthwise 3×3 over C channels counts
        # C·9 outputs per input instead of 9), which shrinks every depthwise layer's signal by ~√C
        # and made a fresh MobileNetV2's eval features vanish (~1e-8); identical for groups = 1
        fan_out = (c_out // groups) * k * k
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / fan_out))

    def _tensors(self, width: float) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        c_in, c_out, groups = self.spec.shape_at(width, self.divisor)
        bias = self.bias[:c_out] if self.bias is not None else None
        return self.weight[:c_out, : c_in // groups], bias, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias, groups = self._tensors(self.width)
        s = self.spec
        return F.conv2d(x, weight, bias, s.stride, s.padding, s.dilation, groups)

    @torch.no_grad()
    def sliced(self, width: float) -> nn.Conv2d:
        twin = self.spec.plain(width, self.divisor)
        weight, bias, _ = self._tensors(width)
        twin.weight.copy_(weight)
        if bias is not None:
            twin.bias.copy_(bias)
        return twin

    def extra_repr(self) -> str:
        return f"{self.spec}, width={self.width:g}"


class SwitchableLinear(Switchable):
    def __init__(self, spec: LinearSpec, divisor: int = DEFAULT_DIVISOR) -> None:
        super().__init__()
        self.spec, self.divisor, self.width = spec, divisor, 1.0
        c_in, c_out = spec.shape_at(1.0, divisor)
        self.weight = nn.Parameter(torch.empty(c_out, c_in))
        self.bias = nn.Parameter(torch.zeros(c_out)) if spec.bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def _tensors(self, width: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        c_in, c_out = self.spec.shape_at(width, self.divisor)
        bias = self.bias[:c_out] if self.bias is not None else None
        return self.weight[:c_out, :c_in], bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, *self._tensors(self.width))

    @torch.no_grad()
    def sliced(self, width: float) -> nn.Linear:
        twin = self.spec.plain(width, self.divisor)
        weight, bias = self._tensors(width)
        twin.weight.copy_(weight)
        if bias is not None:
            twin.bias.copy_(bias)
        return twin

    def extra_repr(self) -> str:
        return f"{self.spec}, width={self.width:g}"


class SwitchableBatchNorm(Switchable):
    """One private BatchNorm per width ("switchable BN"): statistics differ too much to share.

    ``sync`` (off; switched by ``sync_bn.set_sync_bn``): in training mode with a process group of
    several ranks, the active width's BatchNorm normalises with the global batch's statistics
    (switchable.sync_bn). The plain BatchNorms, hence ``sliced`` and every export, are the same.
    """

    def __init__(self, spec: BNSpec, widths: list[float], divisor: int = DEFAULT_DIVISOR) -> None:
        super().__init__()
        self.spec, self.divisor, self.width = spec, divisor, 1.0
        self.bn = nn.ModuleDict({width_key(w): spec.plain(w, divisor) for w in widths})
        self.sync = False

    @property
    def widths(self) -> list[float]:
        return sorted(float(k.replace("_", ".")) for k in self.bn.keys())

    def _bn(self, width: float) -> nn.Module:
        key = width_key(width)
        if key not in self.bn:
            raise SfscError(
                f"width {width:g} has no trained BatchNorm; trained widths: "
                f"{format_widths(self.widths)} (re-estimate it with calibrate_bn / --calibrate)"
            )
        return self.bn[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self._bn(self.width)
        if self.sync and bn.training and sync_bn.world_size() > 1:
            return sync_bn.synced_batch_norm(bn, x)
        return bn(x)

    def sliced(self, width: float) -> nn.Module:
        return copy.deepcopy(self._bn(width))

    @torch.no_grad()
    def add_width(self, width: float) -> nn.Module:
        """Create the BN of a new width: affine from the nearest wider width, statistics reset.

        The affine parameters have never been trained at this width; starting from the slice
        of the nearest wider width is the universally-slimmable choice and keeps them in the
        same range. The caller re-estimates the running statistics.
        """
        key = width_key(width)
        if key not in self.bn:
            source = self._bn(min(w for w in self.widths if w >= width))
            bn = self.spec.plain(width, self.divisor).to(source.weight.device)
            n = bn.num_features
            bn.weight.copy_(source.weight[:n])
            bn.bias.copy_(source.bias[:n])
            self.bn[key] = bn
        bn = self.bn[key]
        bn.reset_running_stats()
        return bn
