"""Blocked exact top-k equals the dense Q×N result bit for bit; faiss indices and their recall."""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfsc_deploy.errors import SfscError
from sfsc_deploy.retrieval.gallery import Gallery
from sfsc_deploy.retrieval.search import (
    ArrayGallery,
    SearchSettings,
    TopK,
    cosine_scores,
    exact_topk,
    faiss_topk,
    normalise,
    recall_at_k,
    search,
)

HAS_FAISS = importlib.util.find_spec("faiss") is not None
needs_faiss = pytest.mark.skipif(
    not HAS_FAISS, reason='faiss is not installed (pip install "sfsc-deploy[faiss]")'
)


def data(q=37, n=203, d=48, seed=0):
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((q, d)).astype(np.float32)
    gallery = rng.standard_normal((n, d)).astype(np.float32)
    gallery[150:156] = gallery[7]  # exact ties: the lower row must come first
    gallery[160] = 3 * gallery[7]  # ...also after normalisation (a scaled copy)
    queries[5] = gallery[7]
    return queries, gallery


def dense_topk(queries, gallery, k):
    """The straightforward way: the whole Q×N cosine matrix (float64 product rounded to float32),
    each row sorted by (score descending, gallery row ascending) with numpy's lexsort."""
    qn = F.normalize(torch.from_numpy(queries), dim=1)
    gn = F.normalize(torch.from_numpy(gallery), dim=1)
    sims = (qn.double() @ gn.double().T).float().numpy()
    k = min(k, len(gallery))
    rows = np.arange(len(gallery))
    order = np.stack([np.lexsort((rows, -s))[:k] for s in sims])
    return np.take_along_axis(sims, order, 1), order


@pytest.mark.parametrize("k", [1, 10, 64, 203, 500])
@pytest.mark.parametrize("blocks", [(1, 1), (5, 17), (16, 64), (37, 203), (64, 1000), (3, 200)])
def test_blocked_search_equals_the_dense_matrix_exactly(k, blocks):
    queries, gallery = data()
    want_scores, want_idx = dense_topk(queries, gallery, k)
    qb, gb = blocks
    got = exact_topk(queries, gallery, k, SearchSettings(query_block=qb, gallery_block=gb))
    assert got.method == "exact" and got.k == min(k, len(gallery))
    assert got.indices.dtype == np.int64 and got.scores.dtype == np.float32
    assert np.array_equal(got.indices, want_idx)
    assert np.array_equal(got.scores, want_scores)


def test_ties_rank_the_lower_gallery_row_first():
    queries, gallery = data()
    got = exact_topk(queries[5:6], gallery, 10)
    assert got.indices[0, :8].tolist() == [7, 150, 151, 152, 153, 154, 155, 160]
    assert len(set(got.scores[0, :8].tolist())) == 1


def test_scores_do_not_depend_on_the_shapes_multiplied():
    """float32 matmul does on MKL; cosine_scores is the correctly rounded dot product instead."""
    rng = np.random.default_rng(1)
    q = normalise(rng.standard_normal((33, 512)).astype(np.float32))
    g = normalise(rng.standard_normal((301, 512)).astype(np.float32))
    full = cosine_scores(q, g)
    for qb, gb in [(1, 1), (1, 301), (33, 1), (7, 64), (16, 100)]:
        for i in range(0, 33, qb):
            for j in range(0, 301, gb):
                assert torch.equal(cosine_scores(q[i : i + qb], g[j : j + gb]), full[i : i + qb, j : j + gb])
    # the correctly rounded value of the exact dot product, spot-checked with exact fractions
    from fractions import Fraction

    for i, j in [(0, 0), (5, 17), (32, 300)]:
        exact = sum(
            Fraction(float(a)) * Fraction(float(b)) for a, b in zip(q[i].tolist(), g[j].tolist(), strict=True)
        )
        got = float(full[i, j])
        ulp = float(np.spacing(np.float32(got)))
        assert abs(Fraction(got) - exact) <= Fraction(ulp) / 2


def test_sources_arrays_tensors_and_galleries_agree():
    queries, gallery = data()
    want = exact_topk(queries, gallery, 20)
    meta = {"family_id": "abc"}
    g = Gallery(
        gallery.astype(np.float16),
        np.zeros(len(gallery), np.int64),
        np.zeros(len(gallery), np.int64),
        np.array([f"{i}.jpg" for i in range(len(gallery))]),
        meta,
    )
    from_tensor = exact_topk(torch.from_numpy(queries), ArrayGallery(torch.from_numpy(gallery)), 20)
    assert np.array_equal(from_tensor.indices, want.indices)
    half = exact_topk(queries, g, 20)  # float16 storage: blocks are float32 copies of it
    assert np.array_equal(
        half.indices, exact_topk(queries, gallery.astype(np.float16).astype(np.float32), 20).indices
    )


def test_bad_inputs_are_one_line():
    queries, gallery = data()
    with pytest.raises(SfscError, match="32-d but the gallery is 48-d"):
        exact_topk(queries[:, :32], gallery, 5)
    with pytest.raises(SfscError, match="positive integer"):
        exact_topk(queries, gallery, 0)
    with pytest.raises(SfscError, match="--index 'hnsw' must be one of"):
        SearchSettings(index="hnsw").check()
    bad = gallery.copy()
    bad[3, 3] = np.nan
    with pytest.raises(SfscError, match="NaN or inf"):
        exact_topk(queries, bad, 5)
    with pytest.raises(SfscError, match="model family"):
        exact_topk(
            ArrayGallery(queries, meta={"family_id": "a"}), ArrayGallery(gallery, meta={"family_id": "b"}), 5
        )


def test_recall_at_k_counts_the_exact_items_found():
    exact = TopK(np.zeros((2, 4), np.float32), np.array([[0, 1, 2, 3], [4, 5, 6, 7]]), "exact")
    approx = TopK(np.zeros((2, 4), np.float32), np.array([[3, 2, 9, -1], [4, 5, 6, 7]]), "faiss-ivf")
    assert recall_at_k(approx, exact) == pytest.approx((0.5 + 1.0) / 2)


def clustered(n=2000, q=150, d=32, seed=0):
    """Features with structure (clusters), where IVF indices do what they are for."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, d)).astype(np.float32)
    g = centres[rng.integers(0, 40, n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    qs = centres[rng.integers(0, 40, q)] + 0.3 * rng.standard_normal((q, d)).astype(np.float32)
    return qs, g


@needs_faiss
def test_faiss_flat_recall_is_one():
    queries, gallery = clustered()
    settings = SearchSettings(index="flat", k=20, gallery_block=300, query_block=64)
    got = search(queries, gallery, settings)
    assert got.method == "faiss-flat" and got.recall == 1.0 and got.recall_queries == len(queries)
    assert recall_at_k(got, exact_topk(queries, gallery, 20)) == 1.0


@needs_faiss
def test_ivf_with_every_cell_probed_is_exact():
    queries, gallery = clustered()
    settings = SearchSettings(index="ivf", k=20, nlist=16, nprobe=16, gallery_block=300)
    got = faiss_topk(queries, gallery, settings=settings)
    assert got.params["nlist"] == 16 and got.params["nprobe"] == 16
    assert recall_at_k(got, exact_topk(queries, gallery, 20)) == 1.0
    few = search(queries, gallery, SearchSettings(index="ivf", k=20, nlist=16, nprobe=1))
    assert 0 < few.recall <= 1.0


@needs_faiss
def test_ivfpq_recall_is_measured():
    queries, gallery = clustered()
    settings = SearchSettings(index="ivfpq", k=20, nlist=16, nprobe=4, pq_m=8, pq_bits=6, recall_queries=50)
    got = search(queries, gallery, settings)
    assert got.method == "faiss-ivfpq" and got.recall_queries == 50
    assert 0 < got.recall <= 1.0
    assert got.params == {"nlist": 16, "nprobe": 4, "train_size": 2000, "seed": 0, "pq_m": 8, "pq_bits": 6}
    again = search(queries, gallery, settings)  # seeded training: the same index and lists
    assert np.array_equal(again.indices, got.indices) and again.recall == got.recall
    with pytest.raises(SfscError, match="--pq-m 5 must divide the feature dimension 32"):
        search(queries, gallery, SearchSettings(index="ivfpq", pq_m=5, nlist=16))
    with pytest.raises(SfscError, match="--nlist 5000 needs at least as many training rows"):
        search(queries, gallery, SearchSettings(index="ivf", nlist=5000))


def test_missing_faiss_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("no faiss")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    queries, gallery = data()
    with pytest.raises(SfscError, match=r'pip install "sfsc-deploy\[faiss\]"'):
        search(queries, gallery, SearchSettings(index="ivf", nlist=4))


@pytest.mark.parametrize(
    "products, want",
    [
        ([1.0, 2.0**-24, 2.0**-80], 1 + 2.0**-23),  # just above a midpoint that float64 rounds onto
        ([1.0, 2.0**-24, -(2.0**-80)], 1.0),  # just below it
        ([1.0, 2.0**-24], 1.0),  # exactly on it: ties to even
        ([1 + 2.0**-23, 2.0**-24], 1 + 2.0**-22),
        ([-1.0, -(2.0**-24), -(2.0**-80)], -(1 + 2.0**-23)),
        ([0.25, 0.5], 0.75),
    ],
)
def test_exact_rounding_avoids_double_rounding(products, want):
    from sfsc_deploy.retrieval.search import _exact_float32

    assert _exact_float32(products) == want
