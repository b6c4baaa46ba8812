"""Layer factories: an architecture is written once against this interface.

``SwitchableFactory`` builds the trainable switchable network; ``PlainFactory`` builds the same
architecture from plain ``torch.nn`` layers at one width, which is how a sliced model is rebuilt
from its JSON description without any switching code.
"""

from __future__ import annotations

from typing import Protocol

from torch import nn

from sfsc_deploy.switchable.layers import (
    BNSpec,
    ConvSpec,
    LinearSpec,
    SwitchableBatchNorm,
    SwitchableConv2d,
    SwitchableLinear,
)


class LayerFactory(Protocol):
    def conv(self, spec: ConvSpec) -> nn.Module: ...
    def linear(self, spec: LinearSpec) -> nn.Module: ...
    def bn(self, spec: BNSpec) -> nn.Module: ...


class SwitchableFactory:
    def __init__(self, widths: list[float], divisor: int) -> None:
        self.widths, self.divisor = list(widths), divisor

    def conv(self, spec: ConvSpec) -> SwitchableConv2d:
        return SwitchableConv2d(spec, self.divisor)

    def linear(self, spec: LinearSpec) -> SwitchableLinear:
        return SwitchableLinear(spec, self.divisor)

    def bn(self, spec: BNSpec) -> SwitchableBatchNorm:
        return SwitchableBatchNorm(spec, self.widths, self.divisor)


class PlainFactory:
    def __init__(self, width: float, divisor: int) -> None:
        self.width, self.divisor = width, divisor

    def conv(self, spec: ConvSpec) -> nn.Conv2d:
        return spec.plain(self.width, self.divisor)

    def linear(self, spec: LinearSpec) -> nn.Linear:
        return spec.plain(self.width, self.divisor)

    def bn(self, spec: BNSpec) -> nn.Module:
        return spec.plain(self.width, self.divisor)
