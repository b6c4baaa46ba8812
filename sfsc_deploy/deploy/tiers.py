"""Platform tiers: which width, format and precision each class of device gets, read from TOML."""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.schema import check_types
from sfsc_deploy.switchable.channels import normalize_width

FORMATS = ("onnx", "openvino", "tensorrt")  # CPU (onnxruntime), Intel CPU/GPU/NPU, NVIDIA GPU
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Tier:
    name: str
    width: float
    format: str = "onnx"
    precision: str = "fp32"
    batch: tuple[int, int, int] = (1, 8, 32)  # min / opt / max batch the artifact is built and checked for
    threads: int = 1
    latency_budget_ms: float | None = None
    normalize: bool = False
    bake_preprocess: bool = False

    def __post_init__(self) -> None:
        where = f"tier {self.name!r}"
        if not self.name or not self.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise SfscError(f"{where}: name must be letters, digits, '.', '-' or '_' (it names the files)")
        object.__setattr__(self, "width", normalize_width(self.width))
        if self.format not in FORMATS:
            raise SfscError(f"{where}: format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise SfscError(f"{where}: precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.format in ("onnx", "openvino") and self.precision == "fp16":
            raise SfscError(
                f"{where}: fp16 is for GPUs; use format tensorrt for fp16, or fp32/int8 for "
                f"{'ONNX' if self.format == 'onnx' else 'OpenVINO'} on CPU"
            )
        batch = tuple(int(b) for b in self.batch)
        if len(batch) != 3 or not 1 <= batch[0] <= batch[1] <= batch[2]:
            raise SfscError(f"{where}: batch must be [min, opt, max] with 1 <= min <= opt <= max")
        object.__setattr__(self, "batch", batch)
        if batch[2] > 65536:
            raise SfscError(f"{where}: batch max must be <= 65536")
        if not 1 <= self.threads <= 1024:
            raise SfscError(f"{where}: threads must be in [1, 1024]")
        if self.latency_budget_ms is not None and not 0 < self.latency_budget_ms < math.inf:
            raise SfscError(f"{where}: latency_budget_ms must be positive and finite")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["batch"] = list(self.batch)
        return data


DEFAULT_TIERS = (
    Tier("cloud", 1.0, batch=(1, 32, 64), threads=8),
    Tier("edge", 0.75, batch=(1, 8, 32), threads=4),
    Tier("mobile", 0.5, batch=(1, 1, 8), threads=2),
    Tier("camera", 0.25, precision="int8", batch=(1, 1, 4), threads=1),
)


def load_tiers(path: str | os.PathLike) -> list[Tier]:
    """``[[tier]]`` tables, each with the fields of :class:`Tier`; names must be unique."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SfscError(f"tier file {path} not found; see examples/tiers.toml") from None
    except IsADirectoryError:
        raise SfscError(f"tier file {path} is a directory; pass the .toml file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SfscError(f"{path} is not valid TOML ({exc}); fix the file, see examples/tiers.toml") from None
    tables = data.get("tier")
    if not isinstance(tables, list) or not tables:
        raise SfscError(f"{path} has no [[tier]] tables; see examples/tiers.toml")
    known = {f.name for f in fields(Tier)}
    tiers = []
    for i, table in enumerate(tables):
        if not isinstance(table, dict):
            raise SfscError(f"{path}: tier {i + 1} is not a table; see examples/tiers.toml")
        unknown = sorted(set(table) - known)
        if unknown:
            raise SfscError(f"{path}: tier {i + 1} has unknown keys {unknown}; allowed: {sorted(known)}")
        if "name" not in table or "width" not in table:
            raise SfscError(f"{path}: tier {i + 1} needs a name and a width")
        check_types(table, Tier, f"{path}: tier {i + 1}")  # "false" is not false, 1 is not true
        try:
            tiers.append(Tier(**table))
        except TypeError as exc:
            raise SfscError(f"{path}: tier {i + 1}: {exc}") from None
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise SfscError(f"{path}: tier names must be unique, got {names}")
    return tiers
