"""One interface for features from any runtime: a PyTorch checkpoint, an ONNX model, a TensorRT engine.

Every extractor takes uint8 [N, 3, H, W] images at the model's input size and knows what it is
(family, width, feature dim, input contract), so galleries and verification can refuse mismatches.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sfsc_deploy.errors import SfscError

TOOL = "sfsc-deploy"


@dataclass(frozen=True)
class ModelInfo:
    runtime: str  # pytorch | onnx | tensorrt
    family_id: str
    width: float
    feature_dim: int
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    normalized: bool
    bake_preprocess: bool
    precision: str
    source: str

    def to_dict(self) -> dict:
        return asdict(self)

    def metadata(self) -> dict[str, str]:
        """The flat string form stored in ONNX ``metadata_props`` and engine sidecars."""
        return {
            "producer": TOOL,
            "family_id": self.family_id,
            "width": f"{self.width:g}",
            "feature_dim": str(self.feature_dim),
            "input_size": "x".join(map(str, self.input_size)),
            "mean": ",".join(repr(float(v)) for v in self.mean),
            "std": ",".join(repr(float(v)) for v in self.std),
            "normalized": str(self.normalized).lower(),
            "bake_preprocess": str(self.bake_preprocess).lower(),
            "input_format": (
                "uint8 [N, H, W, 3] RGB 0-255 (normalisation is in the graph)"
                if self.bake_preprocess
                else "float32 [N, 3, H, W] RGB, (x / 255 - mean) / std"
            ),
            "precision": self.precision,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str], runtime: str, source: str) -> ModelInfo:
        if meta.get("producer") != TOOL:
            raise SfscError(f"{source} was not exported by sfsc-deploy (no metadata); export it again")
        try:
            return cls(
                runtime=runtime,
                family_id=meta["family_id"],
                width=float(meta["width"]),
                feature_dim=int(meta["feature_dim"]),
                input_size=tuple(int(v) for v in meta["input_size"].split("x")),  # type: ignore[arg-type]
                mean=tuple(float(v) for v in meta["mean"].split(",")),  # type: ignore[arg-type]
                std=tuple(float(v) for v in meta["std"].split(",")),  # type: ignore[arg-type]
                normalized=meta["normalized"] == "true",
                bake_preprocess=meta["bake_preprocess"] == "true",
                precision=meta.get("precision", "fp32"),
                source=source,
            )
        except (KeyError, ValueError) as exc:
            raise SfscError(
                f"{source} has incomplete sfsc-deploy metadata ({exc}); export it again"
            ) from None


class FeatureExtractor:
    info: ModelInfo
    max_batch: int = 256

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
        step = max(1, min(batch_size, self.max_batch))
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        out = []
        with Progress(*columns, disable=not progress, transient=True) as bar:
            task = bar.add_task(description or f"{self.info.runtime} {self.info.width:g}", total=len(images))
            for start in range(0, len(images), step):
                out.append(np.asarray(self.run(images[start : start + step]), dtype=np.float32))
                bar.advance(task, min(step, len(images) - start))
        return np.concatenate(out) if out else np.zeros((0, self.info.feature_dim), np.float32)


class TorchExtractor(FeatureExtractor):
    """The sliced PyTorch model of one width: the reference every artifact is checked against."""

    def __init__(self, net, width: float, *, normalize: bool = False, source: str = "") -> None:
        from exporters.graph import DeployGraph
        from sfsc_deploy.models.checkpoint import family_id
        from sfsc_deploy.models.slicing import slice_model

        w = net.check_width(width)
        opts = net.config.options
        self.graph = DeployGraph(slice_model(net, w), opts.mean, opts.std, normalize=normalize).eval()
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
    def from_checkpoint(cls, path: str | os.PathLike, width: float, *, normalize: bool = False):
        from sfsc_deploy.models import checkpoint

        return cls(checkpoint.load(path), width, normalize=normalize, source=str(path))

    @torch.inference_mode()
    def run(self, images: torch.Tensor) -> np.ndarray:
        from exporters.graph import graph_inputs

        x = graph_inputs(images, self.info.mean, self.info.std, bake_preprocess=False)
        return self.graph(x).float().numpy()


class OnnxExtractor(FeatureExtractor):
    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        from exporters.ort_runtime import OrtModel

        self.model = OrtModel(path, threads=threads)
        self.info = ModelInfo.from_metadata(self.model.metadata, "onnx", str(path))

    def run(self, images: torch.Tensor) -> np.ndarray:
        from exporters.graph import graph_inputs

        x = graph_inputs(images, self.info.mean, self.info.std, bake_preprocess=self.info.bake_preprocess)
        return self.model(x.numpy())


class TensorRTExtractor(FeatureExtractor):
    def __init__(self, path: str | os.PathLike) -> None:
        from exporters.tensorrt_engine import TrtModel

        self.model = TrtModel(path)
        self.info = ModelInfo.from_metadata(self.model.metadata, "tensorrt", str(path))
        self.max_batch = int(self.model.metadata["batch_profile"][2])

    def run(self, images: torch.Tensor) -> np.ndarray:
        from exporters.graph import graph_inputs

        x = graph_inputs(images, self.info.mean, self.info.std, bake_preprocess=self.info.bake_preprocess)
        return self.model(x.numpy())


ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def open_extractor(
    model: str | os.PathLike | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    width: float | None = None,
    threads: int | None = None,
) -> FeatureExtractor:
    """An artifact (``.onnx``, ``.engine``) or a checkpoint at ``width`` (default 1.0)."""
    if (model is None) == (checkpoint is None):
        raise SfscError("pass exactly one of --model (an exported artifact) and --checkpoint")
    if checkpoint is not None:
        return TorchExtractor.from_checkpoint(checkpoint, 1.0 if width is None else width)
    path = Path(model)  # type: ignore[arg-type]
    if not path.is_file():
        raise SfscError(f"model {path} not found; pass an .onnx or .engine file written by export")
    if path.suffix == ".onnx":
        extractor: FeatureExtractor = OnnxExtractor(path, threads=threads)
    elif path.suffix in ENGINE_SUFFIXES:
        extractor = TensorRTExtractor(path)
    elif path.suffix == ".safetensors":
        raise SfscError(f"{path} is a checkpoint; pass it with --checkpoint (and --width)")
    else:
        raise SfscError(f"{path}: unknown model type {path.suffix!r}; pass an .onnx or .engine file")
    if width is not None and abs(extractor.info.width - width) > 1e-6:
        raise SfscError(f"{path} is the width-{extractor.info.width:g} model, not {width:g}; drop --width")
    return extractor
