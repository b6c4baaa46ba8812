"""The artifact's description of itself: what every exported model carries, and how it is read back.

An ONNX model stores it in ``metadata_props``, an OpenVINO IR in its ``rt_info`` (section
``sfsc_deploy``), a TensorRT engine in its JSON sidecar; all are flat string maps. ``ModelInfo`` is
the typed form, so runtimes, galleries and verification can refuse a model of another family,
width, feature dimension or input contract before using it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from .errors import UserError
from .parity import TOLERANCES

PRODUCER = "sfsc-deploy"
RUNTIMES = ("pytorch", "onnx", "openvino", "tensorrt")
# bounds on sizes a file may declare, checked before anything is allocated: far above any real
# re-id model, far below what would exhaust a machine (models.config uses the same two)
MAX_INPUT_SIDE = 4096
MAX_FEATURE_DIM = 65536
_BOOLS = {"true": True, "false": False}


@dataclass(frozen=True)
class ModelInfo:
    runtime: str  # pytorch | onnx | openvino | tensorrt
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

    def __post_init__(self) -> None:
        """Every value in range, so a forged or damaged description fails here, not mid-run."""
        problems = []
        if self.runtime not in RUNTIMES:
            problems.append(f"runtime {self.runtime!r}")
        if not isinstance(self.family_id, str) or not 1 <= len(self.family_id) <= 128:
            problems.append("family_id")
        if not (math.isfinite(self.width) and 0 < self.width <= 1):
            problems.append(f"width {self.width} (wants (0, 1])")
        if not 1 <= self.feature_dim <= MAX_FEATURE_DIM:
            problems.append(f"feature_dim {self.feature_dim} (wants [1, {MAX_FEATURE_DIM}])")
        if len(self.input_size) != 2 or not all(16 <= v <= MAX_INPUT_SIDE for v in self.input_size):
            problems.append(f"input_size {self.input_size} (wants H x W, each in [16, {MAX_INPUT_SIDE}])")
        if len(self.mean) != 3 or not all(math.isfinite(v) and abs(v) <= 10 for v in self.mean):
            problems.append(f"mean {self.mean}")
        if len(self.std) != 3 or not all(math.isfinite(v) and 1e-3 <= v <= 10 for v in self.std):
            problems.append(f"std {self.std}")
        if self.precision not in TOLERANCES:
            problems.append(f"precision {self.precision!r}")
        if problems:
            raise UserError(
                f"{self.source or 'the model'} describes an impossible model ({'; '.join(problems)}); "
                "export it again"
            )

    def to_dict(self) -> dict:
        """JSON-shaped (lists, not tuples), so a written description reads back equal."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def metadata(self) -> dict[str, str]:
        """The flat string form stored in ONNX ``metadata_props``, IR rt_info and engine sidecars."""
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
            fields = {
                "family_id": meta["family_id"],
                "width": float(meta["width"]),
                "feature_dim": int(meta["feature_dim"]),
                "input_size": tuple(int(v) for v in meta["input_size"].split("x", 2)[:3]),
                "mean": tuple(float(v) for v in meta["mean"].split(",", 3)[:4]),
                "std": tuple(float(v) for v in meta["std"].split(",", 3)[:4]),
                "normalized": _BOOLS[meta["normalized"]],
                "bake_preprocess": _BOOLS[meta["bake_preprocess"]],
                "precision": meta.get("precision", "fp32"),
            }
        except (KeyError, ValueError, AttributeError) as exc:
            raise UserError(
                f"{source} has incomplete or malformed sfsc-deploy metadata ({type(exc).__name__}: "
                f"{str(exc)[:60]}); export it again"
            ) from None
        return cls(runtime=runtime, source=source, **fields)  # type: ignore[arg-type]
