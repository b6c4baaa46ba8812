"""Top-k search with bounded memory: exact (query blocks × gallery blocks, running top-k merge) or
approximate (faiss: flat, IVF, IVF-PQ), with the approximate index's recall@k against exact search.

Scores are cosine similarities, as everywhere else here: queries and every gallery block are
L2-normalised in float32 with ``F.normalize`` exactly as ``evaluation.metrics`` does, then scored.

**Exactness.** A float32 matrix product gives bitwise different results for the same (query, gallery)
pair depending on the shapes multiplied (MKL picks kernels and summation orders by shape), so
blocked search would not reproduce a dense Q×N product. :func:`cosine_scores` therefore defines each
score as *the float32 nearest to the exact dot product* of the two normalised float32 rows (round to
nearest, ties to even), a number that no block shape, thread count or BLAS can change: the product
is computed in float64 (every product of two float32 is exact there; the sum's error is at most
γ_D·Σ|q_k g_k| with γ_D = D·2⁻⁵³/(1 − D·2⁻⁵³) in any order), rounded to float32, and every score
whose float64 error interval (twice that bound) touches a float32 rounding boundary (about 3 in 10⁴
for random 512-d features, 2 in 10³ for 2048-d) is recomputed exactly (``math.fsum`` of the exact
products, checked against the midpoint so it never double-rounds). The merge keeps, per query, the ``k``
best of [current best | new block] by a stable sort, so equal scores rank the lower gallery index
first: the result is the dense matrix's stable top-k, exactly, for any block sizes.

**Memory.** One query block and one gallery block at a time: about
``query_block × (gallery_block + k) × 64`` bytes of scores (the float64 product, its rounding
bounds and the merge's candidates) plus one gallery block in float32 and float64, never the
gallery size. The float64 product costs about 2-5× a float32 one on CPUs.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sfsc_deploy.errors import SfscError

INDEX_KINDS = ("exact", "flat", "ivf", "ivfpq")
FAISS_HINT = 'pip install "sfsc-deploy[faiss]"'
RESULT_SUFFIXES = (".json", ".csv")


# ------------------------------------------------------------------------------ what is searched
@runtime_checkable
class FeatureBlocks(Protocol):
    """What search reads: a row count, a dimension, and float32 blocks in row order.

    ``blocks(rows)`` yields ``(start row, float32 [n, D])`` with ``n ≤ rows``, consecutive and in
    order from row 0. ``retrieval.gallery.Gallery`` and the sharded gallery folders of
    ``retrieval.shards`` are such sources; :class:`ArrayGallery` wraps a numpy array or torch tensor.
    """

    def __len__(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]: ...


class LabelledGallery(FeatureBlocks, Protocol):
    """A gallery with its labels (``open_gallery``'s result): what evaluation and outputs read.
    ``pids`` / ``camids`` / ``paths`` may be ``None`` for bare features (an ``.npy`` file)."""

    pids: np.ndarray | None
    camids: np.ndarray | None
    paths: np.ndarray | None
    meta: dict[str, Any]


class ArrayGallery:
    """A numpy array or torch tensor [N, D] (with optional labels) as a :class:`FeatureBlocks`."""

    def __init__(self, features, pids=None, camids=None, paths=None, meta: dict[str, Any] | None = None):
        if hasattr(features, "detach"):  # a torch tensor (torch is imported only when searching)
            features = features.detach().cpu().numpy()
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
            raise SfscError(f"features must be a non-empty [N, D] matrix, got shape {features.shape}")
        if features.dtype.kind != "f":
            raise SfscError(f"features must be floating point, got {features.dtype}")
        self.features = features
        self.pids, self.camids, self.paths = pids, camids, paths
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.features)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        rows = _positive(rows, "block rows")
        for start in range(0, len(self), rows):
            yield start, np.array(self.features[start : start + rows], dtype=np.float32)

    @classmethod
    def from_gallery(cls, gallery) -> ArrayGallery:
        """A ``retrieval.gallery.Gallery`` (features in memory) with its labels and meta."""
        return cls(gallery.features, gallery.pids, gallery.camids, gallery.paths, gallery.meta)


def as_blocks(x) -> FeatureBlocks:
    """``x`` itself if it yields blocks, else an :class:`ArrayGallery` of it (array, tensor)."""
    if hasattr(x, "blocks") and hasattr(x, "dim"):
        return x
    if hasattr(x, "features") and hasattr(x, "meta"):  # a Gallery without blocks
        return ArrayGallery.from_gallery(x)
    return ArrayGallery(x)


def open_features(path: str | os.PathLike) -> LabelledGallery:
    """A gallery-format feature source: a ``.npz`` gallery or a gallery folder (``open_gallery``),
    or a bare ``.npy`` [N, D] float array (no labels, no model identity)."""
    path = Path(path)
    if path.suffix == ".npy":
        if not path.is_file():
            raise SfscError(f"feature file {path} not found")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
            raise SfscError(f"{path} is not a readable .npy feature file ({reason})") from None
        if array.ndim != 2 or array.dtype.kind != "f" or not array.shape[0] or not array.shape[1]:
            raise SfscError(f"{path} holds {array.dtype} {array.shape}, want float features [N, D]")
        from sfsc_deploy.retrieval.gallery import check_features

        check_features(array, f"feature file {path}", fix="re-extract it")
        return ArrayGallery(array)
    try:
        from sfsc_deploy.retrieval.gallery import open_gallery
    except ImportError:  # before sharded galleries: .npz files only
        from sfsc_deploy.retrieval.gallery import load_gallery as open_gallery
    return as_blocks(open_gallery(path))


def check_comparable(
    queries: LabelledGallery, gallery: LabelledGallery, names=("queries", "gallery")
) -> None:
    """Refuse features of different dimensions or model families (one line each)."""
    if queries.dim != gallery.dim:
        raise SfscError(
            f"the {names[0]} are {queries.dim}-d but the {names[1]} is {gallery.dim}-d; "
            "extract both with the same model"
        )
    qf, gf = getattr(queries, "meta", {}).get("family_id"), getattr(gallery, "meta", {}).get("family_id")
    if qf and gf and qf != gf:
        raise SfscError(
            f"the {names[0]} are from model family {str(qf)[:12]}, the {names[1]} from {str(gf)[:12]}; "
            "their features are not comparable — extract both with one family's model"
        )


# ---------------------------------------------------------------------------------- settings
def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise SfscError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass
class SearchSettings:
    """Every search default, once (the CLI passes only the options a user set)."""

    k: int = 100  # gallery items per query (fewer when the gallery is smaller)
    index: str = "exact"  # exact | flat | ivf | ivfpq (the last three: faiss)
    query_block: int = 256  # queries scored at once
    gallery_block: int = 8192  # gallery rows read, normalised and scored at once
    nlist: int | None = None  # IVF cells; None: 4·√N, at most N
    nprobe: int = 16  # IVF cells visited per query (at most nlist)
    pq_m: int = 16  # IVF-PQ sub-quantizers (must divide D)
    pq_bits: int = 8  # bits per sub-quantizer code
    train_size: int = 100_000  # gallery rows (a seeded sample) that train the IVF / PQ quantizers
    seed: int = 0  # the training sample and k-means, and which queries measure recall
    recall_queries: int = 1000  # queries (a seeded sample) searched exactly to measure recall@k

    def check(self) -> SearchSettings:
        for name in ("k", "query_block", "gallery_block", "nprobe", "pq_m", "pq_bits", "train_size"):
            _positive(getattr(self, name), f"--{name.replace('_', '-')}")
        _positive(self.recall_queries, "--recall-queries")
        if self.nlist is not None:
            _positive(self.nlist, "--nlist")
        if self.index not in INDEX_KINDS:
            raise SfscError(f"--index {self.index!r} must be one of {', '.join(INDEX_KINDS)}")
        if self.pq_bits > 16:
            raise SfscError(f"--pq-bits {self.pq_bits} must be at most 16")
        return self


@dataclass
class TopK:
    """Each query's best ``k`` gallery items, best first."""

    scores: np.ndarray  # float32 [Q, k] cosine (approximate indices: their estimate); -inf in empty slots
    indices: np.ndarray  # int64 [Q, k] gallery rows; -1: an empty slot (an IVF index found fewer)
    method: str  # "exact", "faiss-flat", "faiss-ivf", "faiss-ivfpq"
    params: dict[str, Any] = field(default_factory=dict)  # what built and searched the index
    recall: float | None = None  # recall@k against exact search (approximate methods)
    recall_queries: int = 0  # how many queries that recall was measured on

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def exact(self) -> bool:
        return self.method == "exact"

    def describe(self) -> str:
        text = f"{self.method} top-{self.k}"
        if self.params:
            text += " (" + ", ".join(f"{k} {v}" for k, v in self.params.items()) + ")"
        if self.recall is not None:
            text += (
                f", recall@{self.k} {self.recall:.4f} against exact search on {self.recall_queries} queries"
            )
        return text

    def summary(self) -> dict[str, Any]:
        """Everything but the lists (for reports)."""
        return {k: v for k, v in asdict(self).items() if k not in ("scores", "indices")} | {"k": self.k}


# ------------------------------------------------------------------------------------- exact
_U = 2.0**-53


def normalise(block, name: str = "features"):
    """float32 torch rows of unit L2 norm, as ``evaluation.metrics`` normalises (``F.normalize``)."""
    import torch
    import torch.nn.functional as F

    t = block if isinstance(block, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(block))
    t = t.detach().to("cpu", torch.float32)
    if not torch.isfinite(t).all():
        raise SfscError(f"{name} contain NaN or inf; check the model output before searching")
    return F.normalize(t, dim=1).contiguous()


def cosine_scores(q, g):
    """float32 [a, b]: each the float32 nearest the exact dot product of a row of ``q`` and one of
    ``g`` (both float32 torch tensors), independent of the shapes multiplied (module docstring)."""
    import torch

    q64, g64 = q.double(), g.double()
    s64 = q64 @ g64.T  # every product exact; only the sum rounds
    r = s64.float()
    d = q.shape[1]
    gamma = d * _U / (1 - d * _U)
    # |s64 - exact| <= gamma * sum|q_k g_k| in any summation order; that sum bounded from above by a
    # float32 product of the absolute values (its own error: the factor, and underflow: the term)
    spread = (q.abs() @ g.abs().T).double() * (1 + (d + 2) * 2.0**-23) + d * 2.0**-148
    bound = 2.0 * gamma * spread  # twice the proven bound
    r64 = r.double()
    up = torch.nextafter(r, torch.tensor(float("inf"))).double()
    down = torch.nextafter(r, torch.tensor(float("-inf"))).double()
    # unsafe: the exact value may round to another float32 than s64 does
    unsafe = ((s64 - bound) <= (r64 + down) / 2) | ((s64 + bound) >= (r64 + up) / 2)
    if unsafe.any():
        i, j = torch.nonzero(unsafe, as_tuple=True)
        products = (q64[i] * g64[j]).tolist()
        r[i, j] = torch.tensor([_exact_float32(p) for p in products], dtype=torch.float32)
    return r + 0.0  # no -0.0: it sorts like 0.0 everywhere


def _exact_float32(products: list[float]) -> float:
    """The float32 nearest the exact sum of ``products`` (each exact in float64), ties to even."""
    v = math.fsum(products)  # the float64 nearest the exact sum
    r = np.float32(v)
    if not math.isfinite(v) or float(r) == v:
        return float(r)
    other = np.nextafter(r, np.float32(math.copysign(np.inf, v - float(r))))
    mid = (float(r) + float(other)) / 2
    if v != mid:  # v is on r's side of the midpoint, and so is the exact sum
        return float(r)
    rest = math.fsum([*products, -mid])  # the exact sum minus the midpoint: its sign is exact
    if rest == 0:
        return float(r)  # a true tie: numpy rounded it to even
    return float(max(r, other) if rest > 0 else min(r, other))


def _query_blocks(queries: FeatureBlocks, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    yield from queries.blocks(rows)


def _n_blocks(n: int, rows: int) -> int:
    return -(-n // rows)


@contextlib.contextmanager
def _bar(progress: bool, total: int, description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def exact_topk(
    queries, gallery, k: int | None = None, settings: SearchSettings | None = None, *, progress: bool = False
) -> TopK:
    """Each query's ``k`` highest-cosine gallery rows (``k`` capped at the gallery size), exactly:
    ties rank the lower gallery row first; the same result for any ``query_block`` / ``gallery_block``
    as the dense Q×N matrix (module docstring). ``queries`` / ``gallery``: arrays, tensors or
    :class:`FeatureBlocks` sources."""
    import torch

    settings = (settings or SearchSettings()).check()
    queries, gallery = as_blocks(queries), as_blocks(gallery)
    check_comparable(queries, gallery)
    k = min(_positive(k if k is not None else settings.k, "k"), len(gallery))
    qb, gb = settings.query_block, settings.gallery_block
    scores = np.empty((len(queries), k), np.float32)
    indices = np.empty((len(queries), k), np.int64)
    total = _n_blocks(len(queries), qb) * _n_blocks(len(gallery), gb)
    with torch.inference_mode(), _bar(progress, total, "exact search") as advance:
        for qstart, qblock in _query_blocks(queries, qb):
            qn = normalise(qblock, "query features")
            best_s = torch.empty((len(qn), 0), dtype=torch.float32)
            best_i = torch.empty((len(qn), 0), dtype=torch.int64)
            expected = 0
            for gstart, gblock in gallery.blocks(gb):
                if gstart != expected:
                    raise SfscError(f"gallery blocks out of order: row {gstart} after {expected}")
                expected = gstart + len(gblock)
                s = cosine_scores(qn, normalise(gblock, "gallery features"))
                rows = torch.arange(gstart, expected, dtype=torch.int64).expand(len(qn), -1)
                cand_s, cand_i = torch.cat([best_s, s], 1), torch.cat([best_i, rows], 1)
                # stable: equal scores keep [earlier best | this block] order, i.e. lower rows first
                order = torch.sort(cand_s, dim=1, descending=True, stable=True).indices[:, :k]
                best_s, best_i = cand_s.gather(1, order), cand_i.gather(1, order)
                advance()
            if expected != len(gallery):
                raise SfscError(f"the gallery gave {expected} rows, not the {len(gallery)} it declares")
            scores[qstart : qstart + len(qn)] = best_s.numpy()
            indices[qstart : qstart + len(qn)] = best_i.numpy()
    return TopK(scores, indices, "exact", {"query_block": qb, "gallery_block": gb})


# ------------------------------------------------------------------------------------- faiss
def import_faiss():
    try:
        import faiss
    except ImportError:
        raise SfscError(f"approximate search needs faiss, which is not installed; {FAISS_HINT}") from None
    return faiss


def read_rows(source: FeatureBlocks, rows: np.ndarray, block: int) -> np.ndarray:
    """float32 [len(rows), D]: the given (sorted) rows of a source, read block by block."""
    out = np.empty((len(rows), source.dim), np.float32)
    at = 0
    for start, b in source.blocks(block):
        stop = np.searchsorted(rows, start + len(b))
        out[at:stop] = b[rows[at:stop] - start]
        at = stop
        if at == len(rows):
            break
    return out


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(n)[: min(n, size)])


def faiss_params(settings: SearchSettings, n: int, dim: int) -> dict[str, Any]:
    """The index's parameters for a gallery of ``n`` ``dim``-d rows; impossible ones are one line."""
    if settings.index == "flat":
        return {}
    nlist = settings.nlist if settings.nlist is not None else max(1, min(n, round(4 * math.sqrt(n))))
    train = min(n, settings.train_size)
    if nlist > train:
        raise SfscError(
            f"--nlist {nlist} needs at least as many training rows, but there are {train} "
            f"(gallery {n}, --train-size {settings.train_size}); use --nlist {train} or less"
        )
    params = {
        "nlist": nlist,
        "nprobe": min(settings.nprobe, nlist),
        "train_size": train,
        "seed": settings.seed,
    }
    if settings.index == "ivfpq":
        if dim % settings.pq_m:
            raise SfscError(f"--pq-m {settings.pq_m} must divide the feature dimension {dim}")
        if train < 2**settings.pq_bits:
            raise SfscError(
                f"--pq-bits {settings.pq_bits} needs at least {2**settings.pq_bits} training rows, "
                f"there are {train}; lower --pq-bits"
            )
        params |= {"pq_m": settings.pq_m, "pq_bits": settings.pq_bits}
    return params


def faiss_topk(
    queries, gallery, k: int | None = None, settings: SearchSettings | None = None, *, progress: bool = False
) -> TopK:
    """Top-k from a faiss index of the normalised gallery (inner product = cosine): ``IndexFlatIP``
    (``index="flat"``), ``IndexIVFFlat`` (``"ivf"``) or ``IndexIVFPQ`` (``"ivfpq"``). IVF quantizers
    are trained on a seeded sample of the gallery, the gallery added block by block, ``nprobe`` set
    on the index. faiss's own thread count is left as it is. ``recall`` is not measured here
    (:func:`search` does)."""
    settings = (settings or SearchSettings()).check()
    if settings.index == "exact":
        raise SfscError("faiss_topk needs --index flat, ivf or ivfpq")
    faiss = import_faiss()
    queries, gallery = as_blocks(queries), as_blocks(gallery)
    check_comparable(queries, gallery)
    n, dim = len(gallery), gallery.dim
    k = min(_positive(k if k is not None else settings.k, "k"), n)
    params = faiss_params(settings, n, dim)
    metric = faiss.METRIC_INNER_PRODUCT
    quantizer = None
    if settings.index == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        quantizer = faiss.IndexFlatIP(dim)
        if settings.index == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, params["nlist"], metric)
        else:
            index = faiss.IndexIVFPQ(
                quantizer, dim, params["nlist"], params["pq_m"], params["pq_bits"], metric
            )
            index.pq.cp.seed = settings.seed
        index.cp.seed = settings.seed
        sample = read_rows(gallery, _sample(n, params["train_size"], settings.seed), settings.gallery_block)
        index.train(normalise(sample, "gallery features").numpy())
        index.nprobe = params["nprobe"]
    qb, gb = settings.query_block, settings.gallery_block
    total = _n_blocks(n, gb) + _n_blocks(len(queries), qb)
    scores = np.empty((len(queries), k), np.float32)
    indices = np.empty((len(queries), k), np.int64)
    with _bar(progress, total, f"faiss {settings.index}") as advance:
        for _, block in gallery.blocks(gb):
            index.add(normalise(block, "gallery features").numpy())
            advance()
        for start, block in _query_blocks(queries, qb):
            s, i = index.search(normalise(block, "query features").numpy(), k)
            scores[start : start + len(block)] = np.where(i >= 0, s, -np.inf)
            indices[start : start + len(block)] = i
            advance()
    del quantizer
    return TopK(scores, indices, f"faiss-{settings.index}", params)


def recall_at_k(approx: TopK, exact: TopK, k: int | None = None) -> float:
    """Mean over queries of the share of the exact top-k that the approximate top-k found
    (``k``: the shorter list's by default). Exact ties at the k-th score may count against it."""
    k = min(approx.k, exact.k) if k is None else k
    if len(approx) != len(exact):
        raise SfscError(f"recall needs the same queries: {len(approx)} approximate, {len(exact)} exact")
    if not len(exact) or k < 1:
        return float("nan")
    a, e = approx.indices[:, :k], exact.indices[:, :k]
    found = [np.isin(e[q], a[q][a[q] >= 0]).sum() / max(int((e[q] >= 0).sum()), 1) for q in range(len(e))]
    return float(np.mean(found))


def search(queries, gallery, settings: SearchSettings | None = None, *, progress: bool = False) -> TopK:
    """Top-``settings.k`` by ``settings.index``; an approximate index (faiss) also has its recall@k
    against exact search measured on a seeded sample of ``recall_queries`` queries, every time."""
    settings = (settings or SearchSettings()).check()
    queries, gallery = as_blocks(queries), as_blocks(gallery)
    if settings.index == "exact":
        return exact_topk(queries, gallery, settings.k, settings, progress=progress)
    found = faiss_topk(queries, gallery, settings.k, settings, progress=progress)
    rows = _sample(len(queries), settings.recall_queries, settings.seed)
    sample = ArrayGallery(read_rows(queries, rows, settings.query_block))
    truth = exact_topk(sample, gallery, settings.k, settings, progress=progress)
    picked = TopK(found.scores[rows], found.indices[rows], found.method)
    found.recall, found.recall_queries = recall_at_k(picked, truth), len(rows)
    return found


def evaluate_topk(topk: TopK, queries: LabelledGallery, gallery: LabelledGallery, ranks=(1, 5, 10)):
    """mAP / CMC / mINP from the lists (``evaluation.topk_metrics``; ``ranking`` says top-k), or
    None when either side has no ids and cameras."""
    from sfsc_deploy.evaluation.topk_metrics import topk_evaluate

    labels = (getattr(queries, "pids", None), getattr(queries, "camids", None))
    labels += (getattr(gallery, "pids", None), getattr(gallery, "camids", None))
    if any(x is None for x in labels):
        return None
    q_pids, q_cams, g_pids, g_cams = labels
    return topk_evaluate(topk.indices, topk.scores, q_pids, g_pids, q_cams, g_cams, ranks, k=topk.k)


# ----------------------------------------------------------------------------------- results
def _label(values, row: int):
    if values is None:
        return None
    value = values[row]
    return value.item() if hasattr(value, "item") else value


def results_rows(topk: TopK, queries: LabelledGallery, gallery: LabelledGallery) -> Iterator[dict[str, Any]]:
    """One row per (query, rank): the query's row and path, the gallery item's row, path, pid, camid
    and score (CSV columns; absent labels are None). Empty slots (-1) are left out."""
    qpaths, gp, gc, gpaths = (
        getattr(queries, "paths", None),
        getattr(gallery, "pids", None),
        getattr(gallery, "camids", None),
        getattr(gallery, "paths", None),
    )
    for q in range(len(topk)):
        for rank, (j, s) in enumerate(zip(topk.indices[q].tolist(), topk.scores[q].tolist(), strict=True), 1):
            if j < 0:
                continue
            yield {
                "query": q,
                "query_path": _label(qpaths, q),
                "rank": rank,
                "index": j,
                "path": _label(gpaths, j),
                "pid": _label(gp, j),
                "camid": _label(gc, j),
                "score": s,
            }


def results_text(
    topk: TopK, queries: LabelledGallery, gallery: LabelledGallery, suffix: str, metrics=None, sources=()
) -> str:
    """The ranked lists as JSON (header, method, parameters, recall, metrics, per query its row,
    path and results) or CSV (one row per query and rank, :func:`results_rows`)."""
    import csv
    import io

    from exporters.files import json_text
    from sfsc_deploy.io.headers import SEARCH_RESULTS

    if suffix not in RESULT_SUFFIXES:
        raise SfscError(f"--out must end in {' or '.join(RESULT_SUFFIXES)}, got {suffix or 'no suffix'!r}")
    rows = results_rows(topk, queries, gallery)
    if suffix == ".csv":
        buffer = io.StringIO()
        columns = ["query", "query_path", "rank", "index", "path", "pid", "camid", "score"]
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        return buffer.getvalue()
    per_query: list[dict[str, Any]] = []
    qp, qc, qpaths = (
        getattr(queries, "pids", None),
        getattr(queries, "camids", None),
        getattr(queries, "paths", None),
    )
    for q in range(len(topk)):
        per_query.append(
            {
                "query": q,
                "path": _label(qpaths, q),
                "pid": _label(qp, q),
                "camid": _label(qc, q),
                "results": [],
            }
        )
    for row in rows:
        per_query[row["query"]]["results"].append(
            {k: row[k] for k in ("rank", "index", "path", "pid", "camid", "score")}
        )
    data = {
        **SEARCH_RESULTS.header(),
        **{k: str(v) for k, v in zip(("queries_source", "gallery_source"), sources, strict=False)},
        "gallery_rows": len(gallery),
        "family_id": getattr(gallery, "meta", {}).get("family_id"),
        "search": topk.summary(),
        "metrics": None if metrics is None else metrics.to_dict(),
        "queries": per_query,
    }
    return json_text(data)
