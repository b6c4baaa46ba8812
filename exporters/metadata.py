"""The artifact's description of itself: what every exported model carries, and how it is read back.

An ONNX model stores it in ``metadata_props``, a TensorRT engine in its JSON sidecar; both are flat
string maps. ``ModelInfo`` is the typed form, so runtimes, galleries and verification can refuse a
model of another family, width, feature dimension or input contract before using it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from .errors import UserError

PRODUCER = "sfsc-deploy"
RUNTIMES = ("pytorch", "onnx", "tensorrt")


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
        """JSON-shaped (lists, not tuples), so a written description reads back equal."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def metadata(self) -> dict[str, str]:
        """The flat string form stored in ONNX ``metadata_props`` and engine sidecars."""
        return {
            "producer": PRODUCER,
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
    def from_metadata(cls, meta: Mapping[str, str], runtime: str, source: str) -> ModelInfo:
        if meta.get("producer") != PRODUCER:
            raise UserError(f"{source} was not exported by sfsc-deploy (no metadata); export it again")
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
            raise UserError(
                f"{source} has incomplete sfsc-deploy metadata ({exc}); export it again"
            ) from None
