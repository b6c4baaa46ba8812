"""Embedding head: pool → Linear(c_last(γ) → D) → BatchNorm1d neck (one per width).

The Linear is sliced on its input only, so every width emits a D-dimensional feature in the
same space. The neck keeps its bias at zero (BNNeck convention) unless ``neck_bias``: the
retrieval feature is compared by cosine, and a free shift would only blur that.
"""

from __future__ import annotations

import torch
from torch import nn

from sfsc_deploy.switchable.channels import Ch
from sfsc_deploy.switchable.factory import LayerFactory
from sfsc_deploy.switchable.layers import BNSpec, LinearSpec


class EmbeddingHead(nn.Module):
    def __init__(self, make: LayerFactory, in_ch: Ch, feature_dim: int, neck_bias: bool = False) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embed = make.linear(LinearSpec(in_ch, feature_dim, bias=False, slice_out=False))
        self.neck = make.bn(BNSpec(Ch(feature_dim), dim=1, sliced=False, freeze_bias=not neck_bias))

    def forward_train(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pre-neck feature for metric losses, neck feature for retrieval and the classifier)."""
        pre = self.embed(self.pool(fmap).flatten(1))
        return pre, self.neck(pre)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.forward_train(fmap)[1]
