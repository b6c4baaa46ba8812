"""How far an exported runtime's features are from the PyTorch reference, judged per precision.

Cosine similarity is what retrieval sees; max abs error is reported relative to the reference's
largest magnitude so one threshold serves features of any scale. Tolerances follow Polygraphy's
advice: tight for fp32, looser for fp16, looser again for int8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import UserError


@dataclass(frozen=True)
class Tolerance:
    min_cosine: float  # worst image
    min_mean_cosine: float  # on average
    max_abs_rel: float  # max |a − b| / max |reference|


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(min_cosine=0.99999, min_mean_cosine=0.99999, max_abs_rel=1e-4),
    "fp16": Tolerance(min_cosine=0.999, min_mean_cosine=0.9999, max_abs_rel=1e-2),
    "int8": Tolerance(min_cosine=0.95, min_mean_cosine=0.99, max_abs_rel=0.25),
}


@dataclass(frozen=True)
class Parity:
    precision: str
    images: int
    max_abs: float
    max_rel: float  # elementwise |a − b| / (|b| + 1e-6), the figure Polygraphy prints
    max_abs_rel: float
    min_cosine: float
    mean_cosine: float
    tolerance: Tolerance
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        return (
            f"{self.precision} parity on {self.images} images: min cos {self.min_cosine:.6f} "
            f"(≥ {self.tolerance.min_cosine}), mean cos {self.mean_cosine:.6f} "
            f"(≥ {self.tolerance.min_mean_cosine}), max abs {self.max_abs:.2e} "
            f"({self.max_abs_rel:.1e} of scale, ≤ {self.tolerance.max_abs_rel:g}) → {verdict}"
        )


def compare(reference: np.ndarray, candidate: np.ndarray, precision: str = "fp32") -> Parity:
    if precision not in TOLERANCES:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(TOLERANCES)}")
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(candidate, dtype=np.float64)
    if ref.shape != out.shape or ref.ndim != 2 or len(ref) == 0:
        raise UserError(f"features of shape {out.shape} cannot be compared with {ref.shape}")
    if not np.isfinite(out).all():
        tol = TOLERANCES[precision]
        nan = float("nan")
        return Parity(precision, len(ref), nan, nan, nan, nan, nan, tol, False)
    diff = np.abs(out - ref)
    scale = max(float(np.abs(ref).max()), 1e-12)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = (ref * out).sum(axis=1) / np.maximum(norms, 1e-12)
    tol = TOLERANCES[precision]
    max_abs_rel = float(diff.max()) / scale
    return Parity(
        precision=precision,
        images=len(ref),
        max_abs=float(diff.max()),
        max_rel=float((diff / (np.abs(ref) + 1e-6)).max()),
        max_abs_rel=max_abs_rel,
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        tolerance=tol,
        passed=bool(
            cos.min() >= tol.min_cosine
            and cos.mean() >= tol.min_mean_cosine
            and max_abs_rel <= tol.max_abs_rel
        ),
    )
