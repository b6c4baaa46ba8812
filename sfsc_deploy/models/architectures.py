"""Building networks: an architecture by name, as a switchable network or plain at one width.

``build("resnet18", widths=[0.25, 0.5, 1.0], num_classes=751)`` returns a :class:`SwitchableNet`;
``build_plain(config, width)`` builds the same architecture from plain layers at one width.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from sfsc_deploy.errors import SfscError
from sfsc_deploy.models.config import ArchOptions, NetConfig
from sfsc_deploy.models.head import EmbeddingHead
from sfsc_deploy.models.mobilenet_v2 import mobilenet_v2
from sfsc_deploy.models.net import FeatureNet, SwitchableNet
from sfsc_deploy.models.resnet import resnet18, resnet50
from sfsc_deploy.models.shufflenet_v2 import shufflenet_v2
from sfsc_deploy.switchable.channels import normalize_width
from sfsc_deploy.switchable.factory import LayerFactory, PlainFactory, SwitchableFactory

ARCHS: dict[str, Callable[[LayerFactory, ArchOptions], nn.Module]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "shufflenet_v2": shufflenet_v2,
}


def _parts(config: NetConfig, make: LayerFactory) -> tuple[nn.Module, nn.Module]:
    if config.arch not in ARCHS:
        raise SfscError(f"unknown arch {config.arch!r}; choose one of: {', '.join(ARCHS)}")
    backbone = ARCHS[config.arch](make, config.options)
    head = EmbeddingHead(make, backbone.out_channels, config.feature_dim, config.options.neck_bias)
    return backbone, head


def build_from_config(config: NetConfig) -> SwitchableNet:
    make = SwitchableFactory(config.all_widths, config.options.divisor)
    return SwitchableNet(config, *_parts(config, make))


def build(
    arch: str,
    widths: list[float] | str = (0.25, 0.5, 0.75, 1.0),  # type: ignore[assignment]
    feature_dim: int = NetConfig.feature_dim,
    num_classes: int = NetConfig.num_classes,
    **options: Any,
) -> SwitchableNet:
    """Build a freshly initialised switchable network; ``options`` go to :class:`ArchOptions`."""
    unknown = set(options) - set(ArchOptions.__dataclass_fields__)
    if unknown:
        raise SfscError(
            f"unknown option(s) {sorted(unknown)}; valid: {sorted(ArchOptions.__dataclass_fields__)}"
        )
    config = NetConfig(
        arch,
        list(widths) if not isinstance(widths, str) else widths,  # type: ignore[arg-type]
        feature_dim,
        num_classes,
        ArchOptions(**options),
    )
    return build_from_config(config)


def build_plain(config: NetConfig, width: float) -> FeatureNet:
    """The width-γ architecture from plain torch.nn layers, with no switching code at all."""
    make = PlainFactory(normalize_width(width), config.options.divisor)
    return FeatureNet(*_parts(config, make)).eval()
