"""The switchable network and the plain feature network it slices into."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

from sfsc_deploy.errors import SfscError
from sfsc_deploy.models.config import NetConfig
from sfsc_deploy.switchable.channels import format_widths, normalize_width
from sfsc_deploy.switchable.layers import Switchable


class NetOutput(NamedTuple):
    """What the losses need in train mode."""

    features: torch.Tensor  # neck output [N, D]: retrieval feature, classifier input
    pre_neck: torch.Tensor  # [N, D] before the neck: for triplet-style losses
    logits: torch.Tensor  # [N, num_classes] from the shared classifier


class SharedClassifier(nn.Linear):
    """The classifier every width shares (training only), plus the evidential loss's logit offset.

    With a BatchNorm neck in train mode every feature dimension has zero batch mean, so every
    class's logit has zero batch mean too; the evidence ``exp(z)`` then has a batch mean of at
    least 1 for every class (Jensen), and the uncertainty ``u = C/S`` cannot fall below about 0.5
    however well a width classifies. The offset ``b`` (one scalar, so the full model's softmax is
    unchanged) lets the evidential loss see ``z + b``: non-target evidence can go to zero and u
    can carry the signal SFSC relies on. The trainer starts it at ``TrainConfig.offset_init`` and
    the narrow widths' evidential losses learn it.
    """

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__(feature_dim, num_classes, bias=False)
        nn.init.normal_(self.weight, std=0.001)
        self.evidence_offset = nn.Parameter(torch.zeros(()))


class FeatureNet(nn.Module):
    """Backbone + embedding head: image in, retrieval feature out. What gets deployed."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class SwitchableNet(FeatureNet):
    """One set of weights, many widths; narrow widths use the leading channels of the wide one.

    In eval mode ``net(x)`` is the retrieval feature ``[N, D]`` at the active width; in train
    mode it is a :class:`NetOutput`. The classifier is shared by all widths and never exported.
    """

    def __init__(self, config: NetConfig, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__(backbone, head)
        self.config = config
        self.classifier = SharedClassifier(config.feature_dim, config.num_classes)
        self._width = 1.0
        self.set_width(1.0)

    @property
    def widths(self) -> list[float]:
        """Widths this net can run at: the trained ones plus any re-estimated by calibration."""
        return self.config.all_widths

    @property
    def calibrated_widths(self) -> list[float]:
        return list(self.config.calibrated_widths)

    @property
    def width(self) -> float:
        return self._width

    def check_width(self, width: float) -> float:
        w = normalize_width(width)
        if w not in self.widths:
            raise SfscError(
                f"width {w:g} is not trained; trained widths: {format_widths(self.widths)}. "
                f"Pick one of them, or re-estimate its BatchNorm with --calibrate IMAGES "
                f"(calibrate_bn in Python)"
            )
        return w

    def set_width(self, width: float) -> None:
        w = self.check_width(width)
        for module in self.modules():
            if isinstance(module, Switchable):
                module.width = w
        self._width = w

    @contextlib.contextmanager
    def at_width(self, width: float) -> Iterator[SwitchableNet]:
        previous = self._width
        self.set_width(width)
        try:
            yield self
        finally:
            self.set_width(previous)

    def forward(self, x: torch.Tensor) -> torch.Tensor | NetOutput:  # type: ignore[override]
        fmap = self.backbone(x)
        if not self.training:
            return self.head(fmap)
        pre, features = self.head.forward_train(fmap)
        return NetOutput(features, pre, self.classifier(features))
