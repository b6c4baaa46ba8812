"""The check before an engine goes to the cameras: same family, same features, same retrieval.

(1) the artifact and the gallery come from one model family with one feature dimension, else
refuse; (2) the artifact's query features against the PyTorch reference of its width; (3) the
artifact's retrieval against the gallery compared with the reference's (mAP, R1, top-1 agreement).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.metrics import evaluate
from sfsc_deploy.retrieval.extractors import FeatureExtractor
from sfsc_deploy.retrieval.gallery import Gallery


@dataclass(frozen=True)
class VerifyTolerance:
    max_map_drop: float = 1.0  # mAP points the artifact may lose against its reference
    max_rank1_drop: float = 1.0
    min_top1_agreement: float = 0.95  # queries whose nearest gallery image is the reference's

    @classmethod
    def for_precision(cls, precision: str, **overrides: float | None) -> VerifyTolerance:
        """Defaults per precision; int8 reorders near-ties among the neighbours without costing
        accuracy, so it is held to the retrieval figures more than to identical rankings."""
        base = {
            "fp32": cls(0.1, 0.1, 0.99),
            "fp16": cls(0.5, 0.5, 0.97),
            "int8": cls(1.0, 1.0, 0.85),
        }.get(precision, cls())
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**base.__dict__, **given})


@dataclass
class Check:
    name: str
    value: str
    limit: str
    passed: bool


@dataclass
class VerifyReport:
    artifact: dict[str, Any]
    gallery: dict[str, Any]
    num_queries: int
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def _top1(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    q = torch.nn.functional.normalize(torch.from_numpy(query).float(), dim=1)
    g = torch.nn.functional.normalize(torch.from_numpy(gallery).float(), dim=1)
    return (q @ g.T).argmax(dim=1).numpy()


def check_family(artifact: FeatureExtractor, gallery: Gallery) -> None:
    a, g = artifact.info, gallery.meta
    if a.family_id != g.get("family_id"):
        raise SfscError(
            f"{a.source} is from model family {a.family_id[:12]}, the gallery from "
            f"{str(g.get('family_id'))[:12]}; their features are not comparable — re-extract the gallery "
            "with this family's model"
        )
    if a.feature_dim != gallery.features.shape[1]:
        raise SfscError(
            f"{a.source} makes {a.feature_dim}-d features, the gallery holds "
            f"{gallery.features.shape[1]}-d ones; re-extract the gallery"
        )


def verify(
    artifact: FeatureExtractor,
    gallery: Gallery,
    queries,  # ImageBank
    reference: FeatureExtractor | None = None,
    tolerance: VerifyTolerance | None = None,
    progress: bool = False,
) -> VerifyReport:
    from exporters.parity import compare

    check_family(artifact, gallery)
    if reference is not None and reference.info.family_id != artifact.info.family_id:
        raise SfscError(
            "--checkpoint is from another model family than --model; pass the checkpoint it was exported from"
        )
    report = VerifyReport(artifact.info.to_dict(), {k: v for k, v in gallery.meta.items()}, len(queries))
    report.checks += [
        Check("family id", artifact.info.family_id[:12], "= gallery", True),
        Check("feature dim", str(artifact.info.feature_dim), "= gallery", True),
    ]
    gf = gallery.features.astype(np.float32)
    qf = artifact.features(queries.images, progress=progress, description="artifact queries")

    def metrics(features: np.ndarray):
        return evaluate(features, gf, queries.pids, gallery.pids, queries.camids, gallery.camids)

    got = metrics(qf)
    report.metrics["artifact"] = got.to_dict()
    if reference is None:
        report.metrics["note"] = "no --checkpoint: feature parity and retrieval drop were not checked"
        return report
    rf = reference.features(queries.images, progress=progress, description="reference queries")
    parity = compare(rf, qf, artifact.info.precision)
    want = metrics(rf)
    agreement = float((_top1(qf, gf) == _top1(rf, gf)).mean())
    report.metrics.update(reference=want.to_dict(), parity=parity.to_dict(), top1_agreement=agreement)
    tol = tolerance or VerifyTolerance.for_precision(artifact.info.precision)
    report.metrics["tolerance"] = tol.__dict__
    map_drop = want.mAP - got.mAP
    r1_drop = want.rank1 - got.rank1
    report.checks += [
        Check(
            "query feature cosine (mean)",
            f"{parity.mean_cosine:.6f}",
            f"≥ {parity.tolerance.min_mean_cosine}",
            parity.mean_cosine >= parity.tolerance.min_mean_cosine,
        ),
        Check(
            "query feature cosine (min)",
            f"{parity.min_cosine:.6f}",
            f"≥ {parity.tolerance.min_cosine}",
            parity.min_cosine >= parity.tolerance.min_cosine,
        ),
        Check(
            "mAP drop vs reference (points)",
            f"{map_drop:+.2f}",
            f"≤ {tol.max_map_drop}",
            map_drop <= tol.max_map_drop,
        ),
        Check(
            "rank-1 drop vs reference (points)",
            f"{r1_drop:+.2f}",
            f"≤ {tol.max_rank1_drop}",
            r1_drop <= tol.max_rank1_drop,
        ),
        Check(
            "top-1 agreement",
            f"{agreement:.4f}",
            f"≥ {tol.min_top1_agreement}",
            agreement >= tol.min_top1_agreement,
        ),
    ]
    return report
