"""Channel arithmetic shared by the switchable layers and the plain (sliced) rebuild.

Keeping this in one place is what guarantees that a sliced model and a natively built plain
model of the same width have identical shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sfsc_deploy.errors import SfscError

DEFAULT_DIVISOR = 8


def channels_at(width: float, full: int, divisor: int = DEFAULT_DIVISOR) -> int:
    """``c(γ) = max(d, round(γ·C/d)·d)`` (docs/method.md §1), never more than ``C``.

    Rounding is half-up (not Python's banker's rounding) so that the result does not depend
    on whether ``γ·C/d`` lands on an even or odd integer. ``γ = 1`` always gives ``C`` exactly,
    even when ``C`` is not a multiple of ``d``.
    """
    if width >= 1.0:
        return full
    rounded = math.floor(width * full / divisor + 0.5) * divisor
    return min(full, max(divisor, rounded))


@dataclass(frozen=True)
class Ch:
    """A channel count that is ``mult`` copies of a sliceable ``base``.

    ShuffleNet-style concatenations of two branches need ``2·c(γ, B)`` channels at width γ,
    which is not always ``c(γ, 2B)``; describing them as ``Ch(B, 2)`` keeps both sides equal.
    """

    base: int
    mult: int = 1

    @property
    def full(self) -> int:
        return self.base * self.mult

    def at(self, width: float, divisor: int, sliced: bool = True) -> int:
        if not sliced:
            return self.full
        return self.mult * channels_at(width, self.base, divisor)


def as_ch(value: int | Ch) -> Ch:
    return value if isinstance(value, Ch) else Ch(int(value))


def width_key(width: float) -> str:
    """A module-name-safe key for a width: 0.25 -> '0_25'."""
    return f"{width:g}".replace(".", "_")


def normalize_width(width: float) -> float:
    """Check a width and round away float noise such as 0.30000000000000004."""
    try:
        w = round(float(width), 4)
    except (TypeError, ValueError):
        raise SfscError(f"width {width!r} is not a number; use a value in (0, 1] such as 0.25") from None
    if not (0.0 < w <= 1.0) or math.isnan(w):
        raise SfscError(f"width {width} is outside (0, 1]; use a value such as 0.25, 0.5 or 1.0")
    return w


def parse_widths(text: str | list[float] | tuple[float, ...]) -> list[float]:
    """Parse '0.25,0.5' (or a list) into sorted unique widths, always including 1.0."""
    items = text.split(",") if isinstance(text, str) else list(text)
    widths = {normalize_width(x.strip() if isinstance(x, str) else x) for x in items if str(x).strip()}
    widths.add(1.0)
    return sorted(widths)


def format_widths(widths: list[float]) -> str:
    return ", ".join(f"{w:g}" for w in widths)
