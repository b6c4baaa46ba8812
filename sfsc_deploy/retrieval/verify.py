"""The check before an engine goes to the cameras: same family, same features, same retrieval.

(1) the artifact and the gallery come from one model family with one feature dimension, else
refuse; (2) the artifact's query features against the PyTorch reference of its width; (3) the
artifact's retrieval against the gallery compared with the reference's (mAP, R1, top-1 agreement).
Tolerances per precision come from the one table, ``exporters.parity.TOLERANCES``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from exporters.metadata import ModelInfo
from exporters.parity import Parity, Tolerance, compare, tolerance_for
from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.metrics import evaluate
from sfsc_deploy.evaluation.scores import RetrievalMetrics
from sfsc_deploy.retrieval.extractors import FeatureExtractor
from sfsc_deploy.retrieval.gallery import Gallery

NO_REFERENCE = "no --checkpoint: feature parity and retrieval drop were not checked"


@dataclass
class Check:
    name: str
    value: str
    limit: str
    passed: bool


@dataclass
class VerifyReport:
    artifact: ModelInfo
    gallery: dict[str, Any]  # the gallery file's own description
    num_queries: int
    checks: list[Check] = field(default_factory=list)
    artifact_metrics: RetrievalMetrics | None = None
    reference_metrics: RetrievalMetrics | None = None  # None without a reference checkpoint
    parity: Parity | None = None
    top1_agreement: float | None = None
    tolerance: Tolerance | None = None
    note: str = ""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        got = self.artifact_metrics
        line = f"artifact: mAP {got.mAP:.2f}  R1 {got.rank1:.2f}" if got else "artifact: not evaluated"
        if self.reference_metrics is not None:
            ref = self.reference_metrics
            line += f"   reference: mAP {ref.mAP:.2f}  R1 {ref.rank1:.2f}"
        elif self.note:
            line += f"   ({self.note})"
        return line


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
    tolerance: Tolerance | None = None,
    progress: bool = False,
) -> VerifyReport:
    check_family(artifact, gallery)
    if reference is not None and reference.info.family_id != artifact.info.family_id:
        raise SfscError(
            "--checkpoint is from another model family than --model; pass the checkpoint it was exported from"
        )
    report = VerifyReport(artifact.info, dict(gallery.meta), len(queries))
    report.checks += [
        Check("family id", artifact.info.family_id[:12], "= gallery", True),
        Check("feature dim", str(artifact.info.feature_dim), "= gallery", True),
    ]
    gf = gallery.features.astype(np.float32)
    qf = artifact.features(queries.images, progress=progress, description="artifact queries")

    def metrics(features: np.ndarray) -> RetrievalMetrics:
        return evaluate(features, gf, queries.pids, gallery.pids, queries.camids, gallery.camids)

    got = metrics(qf)
    report.artifact_metrics = got
    if reference is None:
        report.note = NO_REFERENCE
        return report
    rf = reference.features(queries.images, progress=progress, description="reference queries")
    tol = tolerance or tolerance_for(artifact.info.precision)
    parity = compare(rf, qf, artifact.info.precision)
    want = metrics(rf)
    agreement = float((_top1(qf, gf) == _top1(rf, gf)).mean())
    report.reference_metrics, report.parity, report.top1_agreement, report.tolerance = (
        want,
        parity,
        agreement,
        tol,
    )
    map_drop = want.mAP - got.mAP
    r1_drop = want.rank1 - got.rank1
    report.checks += [
        Check(
            "query feature cosine (mean)",
            f"{parity.mean_cosine:.6f}",
            f"≥ {tol.min_mean_cosine}",
            parity.mean_cosine >= tol.min_mean_cosine,
        ),
        Check(
            "query feature cosine (min)",
            f"{parity.min_cosine:.6f}",
            f"≥ {tol.min_cosine}",
            parity.min_cosine >= tol.min_cosine,
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


def verify_artifact(
    model: str | os.PathLike,
    gallery_path: str | os.PathLike,
    splits,  # ReidSplits: its query split is verified
    *,
    checkpoint: str | os.PathLike | None = None,
    tolerance: dict[str, float | None] | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> VerifyReport:
    """Open the artifact, its gallery and (with ``checkpoint``) its PyTorch reference, and verify."""
    from sfsc_deploy.data.bank import build_bank
    from sfsc_deploy.retrieval.extractors import TorchExtractor, open_extractor
    from sfsc_deploy.retrieval.gallery import load_gallery

    gallery = load_gallery(gallery_path)
    artifact = open_extractor(model, threads=threads)
    reference = None
    if checkpoint is not None:
        reference = TorchExtractor.from_checkpoint(
            checkpoint, artifact.info.width, normalize=artifact.info.normalized
        )
    queries = build_bank(splits.query, artifact.info.input_size, split="query", progress=progress)
    tol = tolerance_for(artifact.info.precision, **(tolerance or {}))
    return verify(artifact, gallery, queries, reference, tol, progress=progress)
