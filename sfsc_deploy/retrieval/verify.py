"""The check before an engine goes to the cameras: same family, same features, same retrieval.

(1) the artifact and the gallery come from one model family with one feature dimension, else
refuse; (2) the artifact's query features against the PyTorch reference of its width; (3) the
artifact's retrieval against the gallery compared with the reference's (mAP, R1, top-1 agreement).
Tolerances per precision come from the one table, ``exporters.parity.TOLERANCES``.

**Any gallery size.** The gallery is read block by block (``Gallery.blocks``), never whole, except
by the *full ranking* (``ranking="full"``: every gallery item ranked, ``evaluation.metrics``, the
benchmark protocol), which holds the gallery in float32 and is chosen by ``ranking="auto"`` only
while that and one query × gallery float32 score matrix fit ``full_ranking_max_bytes`` (1 GiB).
Otherwise retrieval is judged from each query's top-k lists (``retrieval.search``,
``evaluation.topk_metrics``): AP@k and rank-1 are lower bounds of the full ranking's for artifact and
reference alike (the same k, the same queries), so the paired test compares like with like; with
k ≥ the gallery size they equal the full ranking's. The report says which ranking it used. Top-1
agreement and the no-reference neighbour check always come from blocked search.

**Approximate indices.** ``SearchSettings(index="flat"|"ivf"|"ivfpq")`` builds the top-k lists with
faiss (one index for artifact and reference queries together); its recall@k against exact search is
measured every time (``search.search``) and is a check: at least ``min_recall`` (0.95), since below
it the lists, and the retrieval figures judged from them, are not the model's but the index's.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

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
from sfsc_deploy.evaluation.paired import FAIL, MIN_QUERIES, NO_VERDICT, PASS, PairedDrop, paired_drop
from sfsc_deploy.evaluation.scores import RetrievalMetrics
from sfsc_deploy.evaluation.topk_metrics import TopKScores, topk_query_scores, topk_ranking
from sfsc_deploy.retrieval.gallery import Gallery, check_features
from sfsc_deploy.retrieval.search import (
    ArrayGallery,
    SearchSettings,
    TopK,
    as_blocks,
    exact_topk,
    import_faiss,
    read_rows,
)
from sfsc_deploy.retrieval.search import search as run_search

if TYPE_CHECKING:  # torch: imported when verifying, not by the CLI reading VerifySettings' defaults
    from sfsc_deploy.evaluation.metrics import QueryScores
    from sfsc_deploy.retrieval.extractors import FeatureExtractor

NO_REFERENCE = (
    "no --checkpoint: the model's family and width are only declared by its own metadata, and "
    "feature parity and retrieval drop were not checked; pass --checkpoint to prove them"
)
# how far the queries' nearest-gallery cosine rises from chance (the same features with their
# dimensions shuffled) towards the gallery's own leave-one-out level: measured 0.88-1.01 for a
# model's own widths and 0.00-0.28 for models of the same shape trained with another seed or
# freshly initialised, given the same metadata (docs/robustness.md, row 36)
MIN_NEIGHBOUR_GAIN = 0.5
RANKINGS = ("auto", "full", "topk")
FULL_RANKING = "full"


@dataclass
class VerifySettings:
    """How ``verify`` ranks the gallery (every default once; the CLI passes only what a user set)."""

    # auto: the full ranking while it fits full_ranking_max_bytes and the index is exact, else top-k
    ranking: str = "auto"
    # the full ranking's memory: the gallery in float32 plus a queries × gallery float32 score matrix
    full_ranking_max_bytes: int = 2**30
    # an approximate index's recall@k against exact search below this fails verification
    min_recall: float = 0.95
    search: SearchSettings = field(default_factory=SearchSettings)  # the top-k lists (k, index, blocks)

    def check(self) -> VerifySettings:
        if self.ranking not in RANKINGS:
            raise SfscError(f"--ranking {self.ranking!r} must be one of {', '.join(RANKINGS)}")
        if not 0.0 <= self.min_recall <= 1.0:
            raise SfscError(f"--min-recall {self.min_recall} must lie in [0, 1]")
        if self.full_ranking_max_bytes < 0:
            raise SfscError(f"full_ranking_max_bytes must be >= 0, got {self.full_ranking_max_bytes}")
        self.search.check()
        if self.ranking == "full" and self.search.index != "exact":
            raise SfscError(
                f"--ranking full ranks every gallery item exactly; --index {self.search.index} "
                "applies to top-k lists: drop one of them"
            )
        return self

    def resolve(self, num_queries: int, num_gallery: int, dim: int) -> str:
        """``"full"`` or ``"topk"`` for this many queries and gallery rows."""
        if self.ranking != "auto":
            return self.ranking
        full_bytes = 4 * num_gallery * (num_queries + dim)
        fits = full_bytes <= self.full_ranking_max_bytes
        return "full" if fits and self.search.index == "exact" else "topk"


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
    # "full" (every gallery item ranked: the benchmark protocol) or "top-k (k=K)" (lower bounds)
    ranking: str = FULL_RANKING
    search: dict[str, Any] | None = None  # the top-k search behind the figures (method, params, recall)

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

    def describe_ranking(self) -> str:
        if self.ranking == FULL_RANKING:
            return "ranking: full (every gallery item ranked: the benchmark protocol)"
        text = (
            f"ranking: {self.ranking} (AP and rank-1 from each query's top-k list: lower bounds of the "
            "full ranking's, for artifact and reference alike"
        )
        if self.search and self.search.get("recall") is not None:
            text += (
                f"; {self.search['method']} index, recall@{self.search['k']} "
                f"{self.search['recall']:.4f} against exact search"
            )
        return text + ")"

    def summary(self) -> str:
        return self._summary() + "\n" + self.describe_ranking()

    def _summary(self) -> str:
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


def _nearest(found: TopK, skip: np.ndarray | None = None) -> np.ndarray:
    """Each row's highest cosine, less its ``skip`` row (a top-2 list: the first item not skipped)."""
    if skip is None:
        return found.scores[:, 0].astype(np.float64)
    first = found.indices[:, 0] != skip
    if found.k < 2:
        return np.where(first, found.scores[:, 0], np.nan)
    return np.where(first, found.scores[:, 0], found.scores[:, 1]).astype(np.float64)


def nearest_cosine(a, b, skip: np.ndarray | None = None, settings: SearchSettings | None = None) -> float:
    """Mean over rows of ``a`` of their highest cosine to a row of ``b``; row i never matches
    ``b[skip[i]]`` (itself, when ``a`` is a sample of ``b``). ``b``: an array or block source,
    searched block by block (``search.exact_topk``)."""
    if not len(a):
        return float("nan")
    found = exact_topk(a, b, 1 if skip is None else 2, settings)
    return float(_nearest(found, None if skip is None else np.asarray(skip)).mean())


def neighbour_check(
    query: np.ndarray, gallery, sample: int = 2000, shuffles: int = 5, settings: SearchSettings | None = None
) -> Check:
    """Do the artifact's features live in the gallery's space? What can be checked without a reference.

    Queries of the gallery's own model find near neighbours about as close as gallery images find
    each other (leave-one-out, on a fixed sample); features of another model, even one with the
    same dimension and copied metadata, find them no closer than chance: the same features with
    their dimensions shuffled. ``gallery``: an array or block source, read block by block (one exact
    top-2 search of the queries, their shuffles and the sample together).
    """
    name, limit = "query→gallery neighbours above chance", f"≥ {MIN_NEIGHBOUR_GAIN}"
    gallery = as_blocks(gallery)
    if len(gallery) < 2 or not len(query):
        return Check(name, "too few images", limit, False)
    settings = settings or SearchSettings()
    rng = np.random.default_rng(0)
    rows = np.sort(rng.permutation(len(gallery))[:sample])
    shuffled = [query[:, rng.permutation(query.shape[1])] for _ in range(shuffles)]
    own_rows = read_rows(gallery, rows, settings.gallery_block)
    every = np.concatenate([query, *shuffled, own_rows]).astype(np.float32, copy=False)
    found = exact_topk(every, gallery, 2, settings)
    q = len(query)
    best = _nearest(TopK(found.scores[: q * (shuffles + 1)], found.indices[: q * (shuffles + 1)], "exact"))
    own_found = TopK(found.scores[q * (shuffles + 1) :], found.indices[q * (shuffles + 1) :], "exact")
    own = float(_nearest(own_found, rows).mean())
    real = float(best[:q].mean())
    chance = float(np.mean([best[q * (i + 1) : q * (i + 2)].mean() for i in range(shuffles)]))
    gain = (real - chance) / (own - chance) if own > chance else float("nan")
    return Check(name, f"{gain:.3f}", limit, bool(gain >= MIN_NEIGHBOUR_GAIN))


def _top1(query: np.ndarray, gallery, settings: SearchSettings | None = None) -> np.ndarray:
    """Each query's nearest gallery row (exact, ties to the lower row), searched block by block."""
    return exact_topk(query, gallery, 1, settings).indices[:, 0]


def check_family(artifact: FeatureExtractor, gallery: Gallery) -> None:
    a, g = artifact.info, gallery.meta
    if a.family_id != g.get("family_id"):
        raise SfscError(
            f"{a.source} is from model family {a.family_id[:12]}, the gallery from "
            f"{str(g.get('family_id'))[:12]}; their features are not comparable — re-extract the gallery "
            "with this family's model"
        )
    if a.feature_dim != gallery.dim:
        raise SfscError(
            f"{a.source} makes {a.feature_dim}-d features, the gallery holds "
            f"{gallery.dim}-d ones; re-extract the gallery"
        )


def verify(
    artifact: FeatureExtractor,
    gallery: Gallery,
    queries,  # ImageBank
    reference: FeatureExtractor | None = None,
    tolerance: Tolerance | None = None,
    progress: bool = False,
    min_queries: int = MIN_QUERIES,
    settings: VerifySettings | None = None,
) -> VerifyReport:
    """Verify ``artifact`` against ``gallery`` on ``queries``; with ``reference``, decide whether it
    changed retrieval by a paired test over the queries (``evaluation.paired``). ``settings``: the
    full ranking or top-k lists, and the index and blocks that search (module docstring)."""
    settings = (settings or VerifySettings()).check()
    check_family(artifact, gallery)
    if reference is not None and reference.info.family_id != artifact.info.family_id:
        raise SfscError(
            "--checkpoint is from another model family than --model; pass the checkpoint it was exported from"
        )
    if settings.search.index != "exact":
        import_faiss()  # a missing faiss is one line before any model runs
    report = VerifyReport(artifact.info, dict(gallery.meta), len(queries))
    report.checks += [
        Check("family id", artifact.info.family_id[:12], "= gallery", True),
        Check("feature dim", str(artifact.info.feature_dim), "= gallery", True),
    ]
    ranking = settings.resolve(len(queries), len(gallery), gallery.dim)
    search = settings.search
    qf = artifact.features(queries.images, progress=progress, description="artifact queries")
    if qf.shape[1] != gallery.dim:
        raise SfscError(
            f"{artifact.info.source} declares {artifact.info.feature_dim}-d features but its graph "
            f"gives {qf.shape[1]}-d ones; its metadata does not describe it — re-export it"
        )
    check_features(qf, f"{artifact.info.runtime} model {artifact.info.source}", fix="re-export it")
    rf = None
    if reference is not None:
        rf = reference.features(queries.images, progress=progress, description="reference queries")

    # per-query retrieval scores of the artifact's queries and (with a reference) the reference's
    lists: TopK | None = None
    if ranking == FULL_RANKING:  # every gallery item ranked: the gallery in memory (it fits)
        from sfsc_deploy.evaluation.metrics import query_scores

        gf = gallery.features.astype(np.float32)

        def scores(side: int) -> QueryScores | TopKScores:  # 0: the artifact's queries, 1: the reference's
            features = (qf, rf)[side]
            return query_scores(features, gf, queries.pids, gallery.pids, queries.camids, gallery.camids)

        report.ranking = FULL_RANKING
    else:  # top-k lists, one search (one index) for artifact and reference queries together
        both = qf if rf is None else np.concatenate([qf, rf.astype(qf.dtype, copy=False)])
        lists = run_search(ArrayGallery(both), gallery, search, progress=progress)
        report.ranking = topk_ranking(lists.k)
        report.search = lists.summary()
        if lists.recall is not None:  # an approximate index: its recall is what the figures rest on
            report.checks.append(
                Check(
                    f"{lists.method} recall@{lists.k} vs exact search",
                    f"{lists.recall:.4f} ({lists.recall_queries} queries)",
                    f"≥ {settings.min_recall:g}",
                    lists.recall >= settings.min_recall,
                )
            )

        def scores(side: int) -> QueryScores | TopKScores:  # list rows side·Q .. side·Q + Q
            rows = slice(side * len(qf), (side + 1) * len(qf))
            return topk_query_scores(
                lists.indices[rows],
                lists.scores[rows],
                queries.pids,
                gallery.pids,
                queries.camids,
                gallery.camids,
                k=lists.k,
            )

    got_scores = scores(0)
    got = got_scores.metrics()
    report.artifact_metrics = got
    if reference is None:  # identity is only declared: check that the features fit the gallery's space
        report.checks.append(neighbour_check(qf, gallery, settings=search))
        report.note = NO_REFERENCE
        return report
    tol = tolerance or tolerance_for(artifact.info.precision)
    parity = compare(rf, qf, artifact.info.precision)
    want_scores = scores(1)
    want = want_scores.metrics()
    if lists is None:  # exact nearest neighbours, one blocked pass for both query sets
        top1 = _top1(np.concatenate([qf, rf.astype(qf.dtype, copy=False)]), gallery, search)
    else:  # the nearest neighbours the chosen index found
        top1 = lists.indices[:, 0]
    agreement = float((top1[: len(qf)] == top1[len(qf) :]).mean())
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
    settings: VerifySettings | None = None,
) -> VerifyReport:
    """Open the artifact, its gallery and (with ``checkpoint``) its PyTorch reference, and verify
    (``settings``: ranking, index and blocks; see :func:`verify`)."""
    settings = (settings or VerifySettings()).check()  # impossible settings: one line, nothing read
    from sfsc_deploy.data.bank import build_bank
    from sfsc_deploy.retrieval.extractors import TorchExtractor, open_extractor
    from sfsc_deploy.retrieval.shards import open_gallery

    gallery = open_gallery(gallery_path)  # a .npz file or a folder of shards
    artifact = open_extractor(model, threads=threads)
    reference = None
    if checkpoint is not None:
        reference = TorchExtractor.from_checkpoint(
            checkpoint, artifact.info.width, normalize=artifact.info.normalized
        )
    queries = build_bank(splits.query, artifact.info.input_size, split="query", progress=progress)
    tol = tolerance_for(artifact.info.precision, **(tolerance or {}))
    return verify(artifact, gallery, queries, reference, tol, progress=progress, settings=settings)
