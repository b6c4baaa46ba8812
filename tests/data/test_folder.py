from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sfsc_deploy.data.folder import camera_of, load_folder_dataset
from sfsc_deploy.errors import SfscError


def _jpg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 4, 3), dtype=np.uint8)).save(path)


def _names(records):
    return sorted((Path(r.path).parent.name, Path(r.path).name, r.pid, r.camid) for r in records)


def test_camera_of():
    assert camera_of("img_c3_01.jpg") == 3
    assert camera_of("/a/c12.png") == 12
    assert camera_of("0002_c1s1_000451_03.jpg") == 1
    assert camera_of("pic3.jpg") is None  # 'c' after a letter is not a camera
    assert camera_of("frame_01.jpg") is None
    with pytest.raises(SfscError, match="more than 9 digits"):  # beyond int64: one line, not an overflow
        camera_of("img_c99999999999999999999999_01.jpg")


def test_split_layout_with_cameras(tmp_path):
    for split, ident, name in [
        ("train", "bob", "a_c1.jpg"), ("train", "bob", "b_c2.jpg"), ("train", "alice", "a_c1.jpg"),
        ("query", "zed", "q_c1.jpg"), ("gallery", "zed", "g_c2.jpg"), ("gallery", "carl", "g_c3.jpg"),
        ("gallery", "carl", "nocam.jpg"),
    ]:  # fmt: skip
        _jpg(tmp_path / split / ident / name)
    (tmp_path / "train" / "empty").mkdir()  # identity folder without images is ignored
    s = load_folder_dataset(tmp_path)
    assert s.name == "folder" and s.num_classes == 2
    # train relabelled in sorted name order: alice 0, bob 1
    assert _names(s.train) == [
        ("alice", "a_c1.jpg", 0, 1),
        ("bob", "a_c1.jpg", 1, 1),
        ("bob", "b_c2.jpg", 1, 2),
    ]
    # query / gallery: ids numbered over all splits by sorted name (alice 1, bob 2, carl 3, zed 4)
    assert _names(s.query) == [("zed", "q_c1.jpg", 4, 1)]
    assert _names(s.gallery) == [
        ("carl", "g_c3.jpg", 3, 3),
        ("carl", "nocam.jpg", 3, 0),
        ("zed", "g_c2.jpg", 4, 2),
    ]


def test_split_layout_without_cameras_gives_each_image_its_own_camera(tmp_path):
    for split, name in [("train", "x1.jpg"), ("train", "x2.jpg"), ("query", "q.jpg"), ("gallery", "g1.jpg"),
                        ("gallery", "g2.jpg")]:  # fmt: skip
        _jpg(tmp_path / split / "p" / name)
    s = load_folder_dataset(tmp_path)
    cams = [r.camid for r in s.train + s.query + s.gallery]
    assert sorted(cams) == [1, 2, 3, 4, 5]  # counted over train/query/gallery together


def test_split_layout_with_an_empty_split_is_an_error(tmp_path):
    _jpg(tmp_path / "train" / "a" / "x.jpg")
    _jpg(tmp_path / "query" / "a" / "x.jpg")
    (tmp_path / "gallery").mkdir()
    with pytest.raises(SfscError, match="gallery has no identity folders"):
        load_folder_dataset(tmp_path)


def test_heldout_layout_with_cameras(tmp_path):
    for ident in ("a", "b", "c", "d", "e", "f"):
        for name in ("2_c1.jpg", "1_c1.jpg", "3_c2.jpg", "4_c2.jpg"):
            _jpg(tmp_path / ident / name)
    s = load_folder_dataset(tmp_path, test_fraction=1 / 3)
    assert s.num_classes == 4 and len(s.train) == 16
    assert sorted({Path(r.path).parent.name for r in s.train}) == ["a", "b", "c", "d"]
    assert _names(s.query) == [("e", "1_c1.jpg", 5, 1), ("e", "3_c2.jpg", 5, 2),
                               ("f", "1_c1.jpg", 6, 1), ("f", "3_c2.jpg", 6, 2)]  # fmt: skip
    assert len(s.gallery) == 4 and {r.pid for r in s.gallery} == {5, 6}


def test_heldout_layout_without_cameras_one_query_per_identity(tmp_path):
    for ident in ("p1", "p2", "p3"):
        for name in ("b.jpg", "a.jpg", "sub/c.jpg"):  # images are found recursively
            _jpg(tmp_path / ident / name)
    s = load_folder_dataset(tmp_path, test_fraction=1 / 3)
    assert s.num_classes == 2 and len(s.train) == 6
    for ident in ("p1", "p2", "p3"):
        cams = sorted(r.camid for r in s.train + s.query + s.gallery if f"/{ident}/" in r.path)
        assert cams == [1, 2, 3]  # each image its own camera
    assert [(r.pid, Path(r.path).name) for r in s.query] == [(3, "a.jpg")]
    assert sorted(Path(r.path).name for r in s.gallery) == ["b.jpg", "c.jpg"]


def test_folder_errors(tmp_path):
    with pytest.raises(SfscError, match="not found"):
        load_folder_dataset(tmp_path / "missing")
    with pytest.raises(SfscError, match="no identity folders with images"):
        load_folder_dataset(tmp_path)
    _jpg(tmp_path / "a" / "x.jpg")
    _jpg(tmp_path / "b" / "x.jpg")
    with pytest.raises(SfscError, match="test_fraction"):
        load_folder_dataset(tmp_path, test_fraction=1.0)


def test_symlinks_out_of_the_data_root_are_never_read(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "secret"
    for ident in ("a", "b", "c", "d", "e", "f"):
        for name in ("1_c1.jpg", "2_c2.jpg"):
            _jpg(data / ident / name)
    for name in ("1_c1.jpg", "2_c2.jpg"):
        _jpg(outside / "intruder" / name)
    (data / "g").symlink_to(outside / "intruder", target_is_directory=True)  # an identity folder
    (data / "a" / "3_c1.jpg").symlink_to(outside / "intruder" / "1_c1.jpg")  # one image
    s = load_folder_dataset(data, test_fraction=1 / 3)
    every = [Path(r.path) for r in s.train + s.query + s.gallery]
    assert len(every) == 12
    assert all(p.resolve().is_relative_to(data.resolve()) for p in every)


def test_a_decompression_bomb_is_skipped_not_fatal(tmp_path):
    """A tiny PNG that declares 15000×15000 pixels is counted as unreadable, never decoded."""
    from sfsc_deploy.data.images import load_folder

    Image.new("L", (15000, 15000)).save(tmp_path / "bomb.png", optimize=True)
    _jpg(tmp_path / "ok.jpg")
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000
    images, bad = load_folder(tmp_path, (16, 8), (0.5,) * 3, (0.5,) * 3)
    assert images.shape[0] == 1 and bad == 1
