"""Retrieval figures as results: torch-free, so reports can be read back anywhere (``plan --eval``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RetrievalMetrics:
    """Percentages (0-100), as reported in the re-id literature."""

    mAP: float
    cmc: dict[int, float] = field(default_factory=dict)  # rank -> accuracy
    mINP: float | None = 0.0  # None: unavailable (a top-k list that ends before a query's last match)
    num_queries: int = 0  # queries with at least one true match (the others are skipped)
    # which ranking the figures come from: "full" (every gallery item ranked: the benchmark protocol)
    # or "top-k (k=100)" (evaluation.topk_metrics: lower bounds, equal when no true match lies beyond k)
    ranking: str = "full"

    @property
    def rank1(self) -> float:
        return self.cmc[1]

    def to_dict(self) -> dict:
        data = {
            "mAP": self.mAP,
            "cmc": {str(r): v for r, v in sorted(self.cmc.items())},
            "mINP": self.mINP,
            "num_queries": self.num_queries,
        }
        if self.ranking != "full":  # files of the full ranking stay as they were
            data["ranking"] = self.ranking
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RetrievalMetrics:
        cmc = {int(r): float(v) for r, v in data["cmc"].items()}
        minp = None if data["mINP"] is None else float(data["mINP"])
        ranking = str(data.get("ranking", "full"))
        return cls(float(data["mAP"]), cmc, minp, int(data["num_queries"]), ranking)
