"""Retrieval figures as results: torch-free, so reports can be read back anywhere (``plan --eval``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RetrievalMetrics:
    """Percentages (0-100), as reported in the re-id literature."""

    mAP: float
    cmc: dict[int, float] = field(default_factory=dict)  # rank -> accuracy
    mINP: float = 0.0
    num_queries: int = 0  # queries with at least one true match (the others are skipped)

    @property
    def rank1(self) -> float:
        return self.cmc[1]

    def to_dict(self) -> dict:
        return {
            "mAP": self.mAP,
            "cmc": {str(r): v for r, v in sorted(self.cmc.items())},
            "mINP": self.mINP,
            "num_queries": self.num_queries,
        }

    @classmethod
    def from_dict(cls, data: dict) -> RetrievalMetrics:
        cmc = {int(r): float(v) for r, v in data["cmc"].items()}
        return cls(float(data["mAP"]), cmc, float(data["mINP"]), int(data["num_queries"]))
