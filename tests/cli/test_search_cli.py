"""`sfsc-deploy search`: features in, ranked gallery items out (JSON / CSV), metrics, bad inputs."""

import csv
import importlib.util
import json

import numpy as np
import pytest

from sfsc_deploy.retrieval.gallery import Gallery, save_gallery
from sfsc_deploy.retrieval.search import exact_topk
from tests.cli import run

HAS_FAISS = importlib.util.find_spec("faiss") is not None


def write(path, features, pids, camids, family="fam0001", split="gallery"):
    meta = {"family_id": family, "feature_dim": features.shape[1], "width": 1.0, "split": split}
    paths = np.array([f"{split}/{i:04d}.jpg" for i in range(len(features))])
    save_gallery(Gallery(features, pids.astype(np.int64), camids.astype(np.int64), paths, meta), path)
    return path


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, 16)).astype(np.float32)
    g_pids, q_pids = rng.integers(0, 12, 150), rng.integers(0, 12, 20)
    gf = centres[g_pids] + rng.standard_normal((150, 16)).astype(np.float32)
    qf = centres[q_pids] + rng.standard_normal((20, 16)).astype(np.float32)
    g = write(tmp_path / "gallery.npz", gf, g_pids, rng.integers(0, 3, 150))
    q = write(tmp_path / "query.npz", qf, q_pids, rng.integers(3, 6, 20), split="query")
    return g, q, qf, gf


def test_search_writes_json_with_metrics(files, tmp_path, capsys):
    g, q, qf, gf = files
    out = tmp_path / "results.json"
    code, stdout, err = run(
        capsys, "search", "--gallery", str(g), "--queries", str(q), "--k", "10", "--out", str(out)
    )
    assert code == 0, err
    assert "ranking: top-k (k=10)" in stdout and "mAP" in stdout
    data = json.loads(out.read_text())
    assert data["format"] == "sfsc-deploy/search-results"
    assert data["search"]["method"] == "exact" and data["search"]["k"] == 10
    assert data["metrics"]["ranking"] == "top-k (k=10)"
    assert len(data["queries"]) == 20 and data["queries"][0]["path"] == "query/0000.jpg"
    want = exact_topk(qf, gf, 10)
    first = data["queries"][3]["results"]
    assert [r["index"] for r in first] == want.indices[3].tolist()
    assert [r["rank"] for r in first] == list(range(1, 11))
    assert first[0]["path"] == f"gallery/{want.indices[3, 0]:04d}.jpg"
    assert first[0]["score"] == float(want.scores[3, 0])


def test_search_writes_csv_from_npy_queries(files, tmp_path, capsys):
    g, _, qf, gf = files
    npy = tmp_path / "q.npy"
    np.save(npy, qf)
    out = tmp_path / "results.csv"
    code, stdout, err = run(
        capsys, "search", "--gallery", str(g), "--queries", str(npy), "--k", "5", "--out", str(out),
        "--query-block", "3", "--gallery-block", "7",
    )  # fmt: skip
    assert code == 0, err
    assert "ranking" not in stdout  # bare features: no labels, no metrics
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20 * 5
    assert list(rows[0]) == ["query", "query_path", "rank", "index", "path", "pid", "camid", "score"]
    want = exact_topk(qf, gf, 5)
    assert [int(r["index"]) for r in rows[:5]] == want.indices[0].tolist()


@pytest.mark.skipif(not HAS_FAISS, reason='faiss is not installed (pip install "sfsc-deploy[faiss]")')
def test_search_with_an_ivf_index_reports_its_recall(files, tmp_path, capsys):
    g, q, _, _ = files
    out = tmp_path / "r.json"
    code, stdout, err = run(
        capsys, "search", "--gallery", str(g), "--queries", str(q), "--k", "10", "--out", str(out),
        "--index", "ivf", "--nlist", "4", "--nprobe", "4",
    )  # fmt: skip
    assert code == 0, err
    assert "recall@10 1.0000" in stdout
    data = json.loads(out.read_text())
    assert data["search"]["method"] == "faiss-ivf" and data["search"]["recall"] == 1.0
    assert data["search"]["params"]["nprobe"] == 4


@pytest.mark.parametrize(
    "change, message",
    [
        ({"family": "other"}, "model family"),
        ({"dim": 8}, "8-d but the gallery"),
        ({"out": "r.txt"}, "must end in .json or .csv"),
        ({"k": "0"}, "--k must be a positive integer"),
        ({"index": "hnsw"}, "--index 'hnsw' must be one of"),
        ({"queries": "missing.npz"}, "not found"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(files, tmp_path, capsys, change, message):
    g, q, qf, _ = files
    if "family" in change or "dim" in change:
        rng = np.random.default_rng(1)
        dim = change.get("dim", 16)
        q = write(tmp_path / "other.npz", qf[:, :dim].copy(), rng.integers(0, 12, 20), rng.integers(0, 3, 20),
                  family=change.get("family", "fam0001"))  # fmt: skip
    if "queries" in change:
        q = tmp_path / change["queries"]
    out = tmp_path / change.get("out", "r.json")
    argv = [
        "search",
        "--gallery",
        str(g),
        "--queries",
        str(q),
        "--out",
        str(out),
        "--k",
        change.get("k", "5"),
    ]
    if "index" in change:
        argv += ["--index", change["index"]]
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not out.exists() and not list(tmp_path.glob(".r.*"))


def test_existing_output_needs_force(files, tmp_path, capsys):
    g, q, _, _ = files
    out = tmp_path / "r.json"
    out.write_text("mine")
    code, _, err = run(capsys, "search", "--gallery", str(g), "--queries", str(q), "--out", str(out))
    assert code == 2 and "already exists" in err and out.read_text() == "mine"
    code, _, err = run(
        capsys, "search", "--gallery", str(g), "--queries", str(q), "--out", str(out), "--force"
    )
    assert code == 0, err
    assert json.loads(out.read_text())["search"]["k"] == 100


def test_search_reads_a_gallery_folder_like_its_npz_twin(tmp_path, capsys):
    import torch

    from sfsc_deploy.data import load_dataset
    from sfsc_deploy.data.synthetic import SyntheticConfig
    from sfsc_deploy.retrieval.extractors import TorchExtractor
    from sfsc_deploy.retrieval.gallery import extract_gallery
    from sfsc_deploy.retrieval.shards import extract_shards
    from tests.conftest import tiny

    torch.set_num_threads(1)
    extractor = TorchExtractor(tiny(widths=[0.25, 0.5, 1.0]), 0.5)
    data = load_dataset("synthetic", synthetic=SyntheticConfig(num_train_ids=4, num_test_ids=8))
    extract_shards(extractor, data, "gallery", tmp_path / "g", shard_size=7, batch_size=7)
    save_gallery(extract_gallery(extractor, data, batch_size=7), tmp_path / "g.npz")
    save_gallery(extract_gallery(extractor, data, "query", batch_size=7), tmp_path / "q.npz")
    texts = []
    for gallery in ("g", "g.npz"):
        out = tmp_path / f"{gallery}.csv"
        argv = ["search", "--gallery", str(tmp_path / gallery), "--queries", str(tmp_path / "q.npz")]
        code, stdout, err = run(capsys, *argv, "--k", "20", "--gallery-block", "5", "--out", str(out))
        assert code == 0, err
        assert "ranking: top-k (k=20)" in stdout
        texts.append(out.read_text())
    assert texts[0] == texts[1]
