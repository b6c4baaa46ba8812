"""Dataclasses that fully describe a network, so a checkpoint or a sliced model can rebuild it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from exporters.metadata import MAX_FEATURE_DIM, MAX_INPUT_SIDE
from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.schema import check_types
from sfsc_deploy.switchable.channels import DEFAULT_DIVISOR, normalize_width, parse_widths

# the architectures models.architectures.ARCHS builds, named without importing torch
ARCH_NAMES = ("resnet18", "resnet50", "mobilenet_v2", "shufflenet_v2")
DEFAULT_WIDTHS = (0.25, 0.5, 0.75)  # the narrow widths; 1.0 is always added
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# bounds on sizes a file may declare, checked before anything is allocated: far above any real
# re-id model, far below what would exhaust a machine
MAX_WIDTH_MULT = 8.0
MAX_CLASSES = 10_000_000


@dataclass
class ArchOptions:
    """Architecture options shared by every backbone.

    ``width_mult`` scales the *base* widths before any switching (ResNet "base width 32" is
    ``width_mult=0.5``); ``last_stride=1`` keeps the last stage at stride 1, the re-id default
    that doubles the final feature map. ``input_size`` is (height, width). ``neck_bias`` trains
    the BatchNorm neck's bias (BNNeck keeps it at zero); it was measured as a way to free the
    evidential loss's logits from their zero batch mean and lost to the logit offset
    (``docs/evidential_head.md``), so it stays off.
    """

    width_mult: float = 1.0
    last_stride: int = 1
    divisor: int = DEFAULT_DIVISOR
    input_size: tuple[int, int] = (256, 128)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    neck_bias: bool = False

    def __post_init__(self) -> None:
        self.input_size = tuple(int(v) for v in self.input_size)  # type: ignore[assignment]
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        if not 0 < self.width_mult <= MAX_WIDTH_MULT:
            raise SfscError(f"width_mult must be in (0, {MAX_WIDTH_MULT}], got {self.width_mult}")
        if self.last_stride not in (1, 2):
            raise SfscError(f"last_stride must be 1 or 2, got {self.last_stride}")
        if not 1 <= self.divisor <= 1024:
            raise SfscError(f"divisor must be in [1, 1024], got {self.divisor}")
        if len(self.input_size) != 2 or not all(16 <= v <= MAX_INPUT_SIDE for v in self.input_size):
            raise SfscError(
                f"input_size must be (height, width), each in [16, {MAX_INPUT_SIDE}], got {self.input_size}"
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise SfscError("mean and std need three values each")
        if not all(math.isfinite(v) and -10 <= v <= 10 for v in self.mean) or not all(
            math.isfinite(v) and 1e-3 <= v <= 10 for v in self.std
        ):
            raise SfscError(
                f"mean must be finite in [-10, 10] and std in [1e-3, 10], got {self.mean}, {self.std}"
            )


@dataclass
class NetConfig:
    arch: str
    widths: list[float]
    feature_dim: int = 512
    num_classes: int = 1000
    options: ArchOptions = field(default_factory=ArchOptions)
    calibrated_widths: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.widths = parse_widths(self.widths)
        self.calibrated_widths = sorted({normalize_width(w) for w in self.calibrated_widths})
        if not (1 <= self.feature_dim <= MAX_FEATURE_DIM and 1 <= self.num_classes <= MAX_CLASSES):
            raise SfscError(
                f"feature_dim must be in [1, {MAX_FEATURE_DIM}] and num_classes in [1, {MAX_CLASSES}], "
                f"got {self.feature_dim} and {self.num_classes}"
            )

    @property
    def all_widths(self) -> list[float]:
        """Widths with a BatchNorm: trained ones plus those re-estimated by calibration."""
        return sorted(set(self.widths) | set(self.calibrated_widths))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetConfig:
        """From a file: every field's type is checked exactly (true is not 1, "8" is not 8)."""
        if not isinstance(data, dict):
            raise SfscError(f"the network config must be a table, got {type(data).__name__}")
        data = dict(data)
        options = data.pop("options", {})
        if not isinstance(options, dict):
            raise SfscError(f"options must be a table, got {type(options).__name__}")
        check_types(data, cls, "network config", skip=("options",))
        check_types(options, ArchOptions, "options")
        return cls(options=ArchOptions(**options), **data)
