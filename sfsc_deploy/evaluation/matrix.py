"""The cross-width compatibility matrix (SFSC Table 2) and the CMP-NAS compatibility rule.

A sub-model of width q queries a gallery embedded by width g. The rule asks, for q < g, whether
M(φ_q, φ_g) > M(φ_q, φ_q): upgrading only the gallery model must beat the small model's own self-test,
which is what makes features of different widths interchangeable in deployment.
Method: docs/method.md §5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.scores import RetrievalMetrics

if TYPE_CHECKING:
    from sfsc_deploy.evaluation.metrics import ArrayLike


def pair_key(q: float, g: float) -> str:
    """JSON key of a (query width, gallery width) pair, e.g. ``"0.25|1.0"``."""
    return f"{float(q)!r}|{float(g)!r}"


@dataclass
class CompatibilityMatrix:
    widths: list[float]
    metrics: dict[tuple[float, float], RetrievalMetrics] = field(default_factory=dict)  # (q, g)

    def width(self, w: float) -> float:
        """The stored width equal to ``w`` (tolerant to float noise such as 0.7500001)."""
        for stored in self.widths:
            if math.isclose(stored, float(w), abs_tol=1e-6):
                return stored
        raise SfscError(f"width {w} is not in the matrix {self.widths}; pick one of those widths")

    def value(self, q: float, g: float, metric: str = "mAP") -> float:
        """``metric`` is mAP, mINP or rank<r> (any CMC rank that was evaluated), in percent."""
        m = self.metrics[(self.width(q), self.width(g))]
        if metric in ("mAP", "mINP"):
            return getattr(m, metric)
        if metric.startswith("rank") and metric[4:].isdigit() and int(metric[4:]) in m.cmc:
            return m.cmc[int(metric[4:])]
        raise SfscError(f"unknown metric {metric!r}; use mAP, mINP or rank<r> with r in {sorted(m.cmc)}")

    def rule(self, q: float, g: float, metric: str = "mAP") -> bool:
        """CMP-NAS rule for q < g: cross-model retrieval beats the query model's own self-test."""
        q, g = self.width(q), self.width(g)
        if not q < g:
            raise SfscError(
                f"the rule compares a smaller query with a larger gallery model; got q={q}, g={g}"
            )
        return self.value(q, g, metric) > self.value(q, q, metric)

    def rule_table(self, metric: str = "mAP") -> list[dict]:
        """Every pair q < g with its cross and self values and whether the rule holds."""
        rows = []
        for i, q in enumerate(self.widths):
            for g in self.widths[i + 1 :]:
                rows.append(
                    {
                        "query": q,
                        "gallery": g,
                        "metric": metric,
                        "cross": self.value(q, g, metric),
                        "self": self.value(q, q, metric),
                        "pass": self.rule(q, g, metric),
                    }
                )
        return rows

    def all_pass(self, metric: str = "mAP") -> bool:
        return all(row["pass"] for row in self.rule_table(metric))

    def to_dict(self) -> dict:
        return {
            "widths": [float(w) for w in self.widths],
            "metrics": {pair_key(q, g): m.to_dict() for (q, g), m in self.metrics.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> CompatibilityMatrix:
        try:
            widths = [float(w) for w in data["widths"]]
            metrics = {}
            for key, value in data["metrics"].items():
                q, g = (float(part) for part in key.split("|"))
                metrics[(q, g)] = RetrievalMetrics.from_dict(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise SfscError(
                f"not a compatibility matrix ({exc}); pass the 'matrix' entry of compat_matrix.json"
            ) from None
        return cls(widths, metrics)


def compatibility_matrix(
    query_features: Mapping[float, ArrayLike],
    gallery_features: Mapping[float, ArrayLike],
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    ranks: Sequence[int] = (1, 5, 10),
    chunk: int = 512,
) -> CompatibilityMatrix:
    """Evaluate every (query width, gallery width) pair; both dicts must hold the same widths."""
    from sfsc_deploy.evaluation.metrics import evaluate

    widths = sorted(float(w) for w in query_features)
    if widths != sorted(float(w) for w in gallery_features):
        raise SfscError(
            f"query widths {sorted(query_features)} differ from gallery widths {sorted(gallery_features)}; "
            "extract features for the same widths on both sides"
        )
    if not widths:
        raise SfscError("no widths to evaluate; pass features for at least one width")
    qf = {float(w): f for w, f in query_features.items()}
    gf = {float(w): f for w, f in gallery_features.items()}
    metrics = {
        (q, g): evaluate(
            qf[q],
            gf[g],
            q_pids,
            g_pids,
            q_camids,
            g_camids,
            ranks=ranks,
            max_rank=max(ranks, default=1),
            chunk=chunk,
        )
        for q in widths
        for g in widths
    }
    return CompatibilityMatrix(widths, metrics)
