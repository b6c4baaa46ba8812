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
from exporters.parity import (
    FIT_KEY,
    INT8_FIT_MARGIN,
    Parity,
    Tolerance,
    calibration_gap,
    compare,
    tolerance_for,
)
from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.metrics import QueryScores, query_scores
from sfsc_deploy.evaluation.paired import FAIL, MIN_QUERIES, NO_VERDICT, PASS, PairedDrop, paired_drop
from sfsc_deploy.evaluation.scores import RetrievalMetrics
from sfsc_deploy.retrieval.extractors import FeatureExtractor
from sfsc_deploy.retrieval.gallery import Gallery, check_features

NO_REFERENCE = (
    "no --checkpoint: the model's family and width are only declared by its own metadata, and "
    "feature parity and retrieval drop were not checked; pass --checkpoint to prove them"
)
# how far the queries' nearest-gallery cosine rises from chance (the same features with their
# dimensions shuffled) towards the gallery's own leave-one-out level: measured 0.88-1.01 for a
# model's own widths and 0.00-0.28 for models of the same shape trained with another seed or
# freshly initialised, given the same metadata (docs/robustness.md, row 36)
MIN_NEIGHBOUR_GAIN = 0.5


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
    paired: list[PairedDrop] = field(default_factory=list)  # mAP and rank-1 drop, with intervals
    note: str = ""

    @property
    def verdict(self) -> str:
        """fail on any failed check; no verdict when the queries are too few to judge retrieval."""
        if not all(c.passed for c in self.checks):
            return FAIL
        return NO_VERDICT if any(p.verdict == NO_VERDICT for p in self.paired) else PASS

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict, "passed": self.passed}

    def summary(self) -> str:
        if self.paired:
            return "\n".join(p.describe() for p in self.paired)
        got = self.artifact_metrics
        line = f"artifact: mAP {got.mAP:.2f}  R1 {got.rank1:.2f}" if got else "artifact: not evaluated"
        if self.reference_metrics is not None:
            ref = self.reference_metrics
            line += f"   reference: mAP {ref.mAP:.2f}  R1 {ref.rank1:.2f}"
        elif self.note:
            line += f"   ({self.note})"
        return line


def nearest_cosine(a: np.ndarray, b: np.ndarray, skip: np.ndarray | None = None, chunk: int = 1024) -> float:
    """Mean over rows of ``a`` of their highest cosine to a row of ``b``; row i never matches
    ``b[skip[i]]`` (itself, when ``a`` is a sample of ``b``)."""
    bn = torch.nn.functional.normalize(torch.from_numpy(b).float(), dim=1)
    best = []
    for start in range(0, len(a), chunk):
        an = torch.nn.functional.normalize(torch.from_numpy(a[start : start + chunk]).float(), dim=1)
        sim = an @ bn.T
        if skip is not None:
            sim[torch.arange(len(an)), torch.from_numpy(skip[start : start + chunk])] = -2.0
        best.append(sim.max(dim=1).values)
    return float(torch.cat(best).mean()) if best else float("nan")


def neighbour_check(query: np.ndarray, gallery: np.ndarray, sample: int = 2000, shuffles: int = 5) -> Check:
    """Do the artifact's features live in the gallery's space? What can be checked without a reference.

    Queries of the gallery's own model find near neighbours about as close as gallery images find
    each other (leave-one-out, on a fixed sample); features of another model, even one with the
    same dimension and copied metadata, find them no closer than chance: the same features with
    their dimensions shuffled.
    """
    name, limit = "query→gallery neighbours above chance", f"≥ {MIN_NEIGHBOUR_GAIN}"
    if len(gallery) < 2 or not len(query):
        return Check(name, "too few images", limit, False)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.permutation(len(gallery))[:sample])
    own = nearest_cosine(gallery[rows], gallery, skip=rows)
    real = nearest_cosine(query, gallery)
    chance = float(
        np.mean([nearest_cosine(query[:, rng.permutation(query.shape[1])], gallery) for _ in range(shuffles)])
    )
    gain = (real - chance) / (own - chance) if own > chance else float("nan")
    return Check(name, f"{gain:.3f}", limit, bool(gain >= MIN_NEIGHBOUR_GAIN))


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
    min_queries: int = MIN_QUERIES,
) -> VerifyReport:
    """Verify ``artifact`` against ``gallery`` on ``queries``; with ``reference``, decide whether it
    changed retrieval by a paired test over the queries (``evaluation.paired``)."""
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
    if qf.shape[1] != gf.shape[1]:
        raise SfscError(
            f"{artifact.info.source} declares {artifact.info.feature_dim}-d features but its graph "
            f"gives {qf.shape[1]}-d ones; its metadata does not describe it — re-export it"
        )
    check_features(qf, f"{artifact.info.runtime} model {artifact.info.source}", fix="re-export it")

    def scores(features: np.ndarray) -> QueryScores:
        return query_scores(features, gf, queries.pids, gallery.pids, queries.camids, gallery.camids)

    got_scores = scores(qf)
    got = got_scores.metrics()
    report.artifact_metrics = got
    if reference is None:  # identity is only declared: check that the features fit the gallery's space
        report.checks.append(neighbour_check(qf, gf))
        report.note = NO_REFERENCE
        return report
    rf = reference.features(queries.images, progress=progress, description="reference queries")
    tol = tolerance or tolerance_for(artifact.info.precision)
    parity = compare(rf, qf, artifact.info.precision)
    want_scores = scores(rf)
    want = want_scores.metrics()
    agreement = float((_top1(qf, gf) == _top1(rf, gf)).mean())
    report.reference_metrics, report.parity, report.top1_agreement, report.tolerance = (
        want,
        parity,
        agreement,
        tol,
    )
    map_drop, r1_drop = (
        paired_drop(want_scores.ap, got_scores.ap, tol.max_map_drop, "mAP", min_queries=min_queries),
        paired_drop(
            want_scores.hits(1), got_scores.hits(1), tol.max_rank1_drop, "rank-1", min_queries=min_queries
        ),
    )
    report.paired = [map_drop, r1_drop]

    def drop_check(name: str, d: PairedDrop) -> Check:
        value = f"{d.drop:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"
        if d.verdict == NO_VERDICT:
            value += f" ({d.queries} queries: too few)"
        return Check(name, value, f"≤ {d.tolerance:g} (95%, one-sided)", d.verdict != FAIL)

    runner = getattr(artifact, "runner", None)
    if artifact.info.precision == "int8" and runner is not None:
        gap = calibration_gap(parity.mean_cosine, runner.metadata)
        fit = runner.metadata.get(FIT_KEY)
        if fit is not None:
            report.checks.append(
                Check(
                    "query cosine vs calibration fit",
                    f"{parity.mean_cosine:.6f}",
                    f"≥ {fit} − {INT8_FIT_MARGIN}",
                    gap is None,
                )
            )
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
        drop_check("mAP drop vs reference (points)", map_drop),
        drop_check("rank-1 drop vs reference (points)", r1_drop),
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
