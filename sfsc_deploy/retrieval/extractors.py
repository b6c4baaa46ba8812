"""One interface for features from any runtime: a PyTorch checkpoint or an exported artifact.

Every extractor takes uint8 [N, 3, H, W] images at the model's input size and knows what it is
(family, width, feature dim, input contract: ``exporters.metadata.ModelInfo``), so galleries and
verification can refuse mismatches. Artifacts run through ``exporters.runtime`` (onnxruntime,
OpenVINO, TensorRT); the PyTorch sliced model of a width is the reference they are checked against.
In a process group of several ranks every extractor shards the images like ``extract_features``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from exporters.graph import DeployGraph, graph_inputs
from exporters.metadata import ModelInfo
from exporters.runtime import Runner, check_layout, open_runner
from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.features import batch_slices, map_shards
from sfsc_deploy.io.device import DEFAULT_DEVICE, resolve_device

__all__ = ["ArtifactExtractor", "FeatureExtractor", "ModelInfo", "TorchExtractor", "open_extractor"]


class FeatureExtractor:
    info: ModelInfo
    max_batch: int | None = None

    def run(self, images: torch.Tensor) -> np.ndarray:
        """float32 [n, D] features of one uint8 [n, 3, H, W] batch."""
        raise NotImplementedError

    def features(
        self, images: torch.Tensor, *, batch_size: int = 64, progress: bool = False, description: str = ""
    ) -> np.ndarray:
        size = tuple(self.info.input_size)
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[2:]) != size:
            raise SfscError(
                f"images are {images.dtype} {tuple(images.shape)}, the model takes uint8 "
                f"[N, 3, {size[0]}, {size[1]}]; load them at the model's input size"
            )
        step = min(batch_size, self.max_batch or batch_size)
        label = description or f"{self.info.runtime} {self.info.width:g}"

        def extract(part_images: torch.Tensor, show: bool) -> torch.Tensor:
            out = [
                np.asarray(self.run(part_images[part]), dtype=np.float32)
                for part in batch_slices(len(part_images), step, progress=show, description=label)
            ]
            return torch.from_numpy(
                np.concatenate(out) if out else np.zeros((0, self.info.feature_dim), np.float32)
            )

        # several ranks in a process group: each runs its shard of the images, all get every feature
        return map_shards(images, extract, progress).numpy()


class TorchExtractor(FeatureExtractor):
    """The sliced PyTorch model of one width: the reference every artifact is checked against.

    It runs on ``device`` (the CPU unless asked: the reference of export and verify); features come
    back as float32 numpy on the CPU from any device.
    """

    def __init__(
        self, net, width: float, *, normalize: bool = False, source: str = "", device: str = "cpu"
    ) -> None:
        from sfsc_deploy.models.checkpoint import family_id
        from sfsc_deploy.models.slicing import slice_model

        w = net.check_width(width)
        opts = net.config.options
        self.device = resolve_device(device)
        graph = DeployGraph(slice_model(net, w), opts.mean, opts.std, normalize=normalize)
        self.graph = graph.eval().to(self.device)
        self.info = ModelInfo(
            runtime="pytorch",
            family_id=family_id(net),
            width=w,
            feature_dim=net.config.feature_dim,
            input_size=tuple(opts.input_size),  # type: ignore[arg-type]
            mean=tuple(opts.mean),  # type: ignore[arg-type]
            std=tuple(opts.std),  # type: ignore[arg-type]
            normalized=normalize,
            bake_preprocess=False,
            precision="fp32",
            source=source,
        )

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, width: float, *, normalize: bool = False, device: str = "cpu"
    ):
        from sfsc_deploy.models import checkpoint

        return cls(checkpoint.load(path), width, normalize=normalize, source=str(path), device=device)

    @torch.inference_mode()
    def run(self, images: torch.Tensor) -> np.ndarray:
        x = graph_inputs(images, self.info.mean, self.info.std, bake_preprocess=False)
        return self.graph(x.to(self.device)).float().cpu().numpy()


class ArtifactExtractor(FeatureExtractor):
    """An exported artifact behind its runtime's runner (onnxruntime, OpenVINO or TensorRT)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.info = ModelInfo.from_metadata(runner.metadata, runner.runtime, str(runner.path))
        check_layout(runner, self.info.input_size, self.info.feature_dim, self.info.bake_preprocess)
        self.max_batch = runner.max_batch

    def run(self, images: torch.Tensor) -> np.ndarray:
        x = graph_inputs(images, self.info.mean, self.info.std, bake_preprocess=self.info.bake_preprocess)
        return self.runner(x.numpy())


def open_extractor(
    model: str | os.PathLike | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    width: float | None = None,
    threads: int | None = None,
    provider: str = "CPUExecutionProvider",
    device: str | None = None,
) -> FeatureExtractor:
    """An artifact (``.onnx``, ``.xml`` OpenVINO IR, ``.engine``) or a checkpoint at ``width``
    (default 1.0) on ``device`` (default ``auto``; an artifact runs where its runtime runs it)."""
    if (model is None) == (checkpoint is None):
        raise SfscError("pass exactly one of --model (an exported artifact) and --checkpoint")
    if checkpoint is not None:
        where = DEFAULT_DEVICE if device is None else device
        return TorchExtractor.from_checkpoint(checkpoint, 1.0 if width is None else width, device=where)
    if device is not None:
        raise SfscError(
            f"--device {device} is for a --checkpoint; an exported artifact runs where its runtime "
            f"runs it (onnxruntime provider, OpenVINO device, TensorRT GPU): drop --device"
        )
    path = Path(model)  # type: ignore[arg-type]
    if path.suffix == ".safetensors":
        raise SfscError(f"{path} is a checkpoint; pass it with --checkpoint (and --width)")
    extractor = ArtifactExtractor(open_runner(path, threads=threads, provider=provider))
    if width is not None and abs(extractor.info.width - width) > 1e-6:
        raise SfscError(f"{path} is the width-{extractor.info.width:g} model, not {width:g}; drop --width")
    return extractor
