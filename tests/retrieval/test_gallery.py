import numpy as np
import pytest

from sfsc_deploy.errors import SfscError
from sfsc_deploy.retrieval.gallery import Gallery, load_gallery, save_gallery


def gallery(dtype="float32"):
    rng = np.random.default_rng(0)
    return Gallery(
        features=rng.normal(size=(6, 4)).astype(dtype),
        pids=np.arange(6),
        camids=np.arange(6) % 2,
        paths=np.array([f"img{i}.jpg" for i in range(6)]),
        meta={"family_id": "abc", "width": 1.0, "feature_dim": 4, "normalized": False},
    )


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip(tmp_path, dtype):
    g = gallery(dtype)
    save_gallery(g, tmp_path / "g.npz")
    back = load_gallery(tmp_path / "g.npz")
    assert back.features.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.features, g.features)
    np.testing.assert_array_equal(back.pids, g.pids)
    assert list(back.paths) == list(g.paths)
    assert back.meta["family_id"] == "abc" and back.meta["format"] == "sfsc-deploy/gallery"


def test_existing_file_needs_force(tmp_path):
    save_gallery(gallery(), tmp_path / "g.npz")
    with pytest.raises(SfscError, match="already exists"):
        save_gallery(gallery(), tmp_path / "g.npz", force=False)


def test_bad_files_are_refused_without_unpickling(tmp_path):
    with pytest.raises(SfscError, match="not found"):
        load_gallery(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(SfscError, match="not a readable gallery"):
        load_gallery(tmp_path / "junk.npz")
    np.savez(tmp_path / "obj.npz", features=np.array([object()], dtype=object), meta=np.array("{}"))
    with pytest.raises(SfscError, match="not a readable gallery"):
        load_gallery(tmp_path / "obj.npz")
    np.savez(tmp_path / "other.npz", features=np.zeros((2, 2)), meta=np.array('{"format": "x"}'))
    with pytest.raises(SfscError, match="not a readable gallery"):
        load_gallery(tmp_path / "other.npz")


def test_rows_must_agree(tmp_path):
    g = gallery()
    g.pids = g.pids[:3]
    with pytest.raises(SfscError, match="one row per image"):
        save_gallery(g, tmp_path / "g.npz")
    assert not (tmp_path / "g.npz").exists()


def test_non_finite_or_zero_features_are_never_written():
    import numpy as np

    from sfsc_deploy.retrieval.gallery import check_features

    good = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    check_features(good, "test model")
    nan = good.copy()
    nan[2, 1] = np.nan
    with pytest.raises(SfscError, match="non-finite features for 1 of 6 images"):
        check_features(nan, "test model")
    with pytest.raises(SfscError, match="zero features"):
        check_features(np.zeros((6, 4), np.float32), "test model")
