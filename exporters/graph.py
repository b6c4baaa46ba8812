"""The module that becomes the exported graph: a sliced model plus what deployment needs around it.

Preprocessing baked into the graph makes the artifact state its own input contract (uint8 NHWC,
0–255), so nobody normalises twice or forgets to divide by 255. L2 normalisation in the graph makes
retrieval a plain dot product.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DeployGraph(nn.Module):
    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        normalize: bool = False,
        bake_preprocess: bool = False,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.normalize = normalize
        self.bake_preprocess = bake_preprocess
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        # (x/255 − mean)/std folded into one multiply-add
        self.register_buffer("scale", 1.0 / (255.0 * std_t), persistent=False)
        self.register_buffer("shift", mean_t / std_t, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if self.bake_preprocess:
            # cast first: TensorRT takes a uint8 network input only straight into a Cast
            x = x.to(torch.float32).permute(0, 3, 1, 2) * self.scale - self.shift
        features = self.model(x)
        if self.normalize:
            features = F.normalize(features, dim=1)
        return features

    def example_input(self, input_size: tuple[int, int], batch: int = 2) -> torch.Tensor:
        h, w = input_size
        if self.bake_preprocess:
            return torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8)
        return torch.randn(batch, 3, h, w)


def normalize_images(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [N, 3, H, W] RGB → float32 ``(x/255 − mean)/std``: the model's input, the one routine.

    Training, evaluation, calibration and every runtime feed models through this function; the
    exported graph's baked preprocessing is the same arithmetic folded into one multiply-add.
    """
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.float().div_(255.0) - m) / s


def graph_inputs(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], *, bake_preprocess: bool
) -> torch.Tensor:
    """uint8 [N, 3, H, W] images in the form the exported graph takes: raw uint8 NHWC when the
    preprocessing is baked in, else the normalised float32 NCHW tensor the model was trained on."""
    if bake_preprocess:
        return images.permute(0, 2, 3, 1).contiguous()
    return normalize_images(images, mean, std)
