from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sfsc_deploy.data.market import load_market1501, load_market1501_heldout, parse_market_name
from sfsc_deploy.errors import SfscError
from tests.conftest import MARKET


def test_parse_market_name():
    assert parse_market_name("0002_c1s1_000451_03.jpg") == (2, 1)
    assert parse_market_name("/some/dir/1501_c6s4_001902_01.jpg") == (1501, 6)
    assert parse_market_name("-1_c1s1_000401_03.jpg") == (-1, 1)
    assert parse_market_name("0000_c3s2_000001_01.jpg") == (0, 3)
    for bad in ("Thumbs.db", "abc_c1s1.jpg", "0002_x1s1_000451_03.jpg", "0002c1.jpg", "_c1s1.jpg"):
        assert parse_market_name(bad) is None, bad
    # numbers beyond int64 (or near it) are names that do not parse: skipped and counted, never a crash
    for huge in ("99999999999999999999999_c1s1_000001_01.jpg", "0002_c99999999999999999999s1_0_01.jpg"):
        assert parse_market_name(huge) is None, huge


def _jpg(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 4, 3), value, dtype=np.uint8)).save(path)


def _official(root: Path) -> None:
    train = root / "bounding_box_train"
    for name in ("0002_c1s1_000451_03.jpg", "0002_c2s1_000100_01.jpg", "0007_c1s1_000001_01.jpg",
                 "0007_c3s1_000002_01.jpg", "0000_c1s1_000003_01.jpg", "-1_c1s1_000004_01.jpg",
                 "junk.jpg"):  # fmt: skip
        _jpg(train / name)
    (train / "notes.txt").write_text("not an image")
    for name in ("0003_c1s1_000010_01.jpg", "0005_c2s1_000011_01.jpg"):
        _jpg(root / "query" / name)
    for name in ("0003_c2s1_000020_01.jpg", "0005_c1s1_000021_01.jpg", "0000_c4s1_000022_01.jpg",
                 "-1_c1s1_000023_01.jpg", "bad_name.png"):  # fmt: skip
        _jpg(root / "bounding_box_test" / name)


def test_load_market1501_official_layout(tmp_path, capsys):
    _official(tmp_path)
    s = load_market1501(tmp_path)
    assert s.name == "market1501" and s.num_classes == 2
    assert sorted((Path(r.path).name[:4], r.pid, r.camid) for r in s.train) == [
        ("0002", 0, 1), ("0002", 0, 2), ("0007", 1, 1), ("0007", 1, 3),
    ]  # fmt: skip
    assert sorted((r.pid, r.camid) for r in s.query) == [(3, 1), (5, 2)]
    # distractor (0) kept, junk (-1) dropped
    assert sorted((r.pid, r.camid) for r in s.gallery) == [(0, 4), (3, 2), (5, 1)]
    assert all(Path(r.path).is_file() for r in s.train + s.query + s.gallery)
    assert "skipped 2 image file(s)" in capsys.readouterr().err


def test_load_market1501_missing_folder_is_one_line_error(tmp_path):
    _official(tmp_path)
    for p in (tmp_path / "query").iterdir():
        p.unlink()
    (tmp_path / "query").rmdir()
    with pytest.raises(SfscError) as info:
        load_market1501(tmp_path)
    msg = str(info.value)
    assert "query/ not found" in msg and "market1501-heldout" in msg and "\n" not in msg


def test_load_market1501_empty_split_is_an_error(tmp_path):
    _official(tmp_path)
    for p in (tmp_path / "query").iterdir():
        p.unlink()
    with pytest.raises(SfscError, match="no usable Market-1501 images"):
        load_market1501(tmp_path)


def test_load_market1501_heldout_fake(tmp_path):
    train = tmp_path / "bounding_box_train"
    for pid in range(1, 7):
        for cam in (1, 2):
            for frame in (5, 3):
                _jpg(train / f"{pid:04d}_c{cam}s1_{frame:06d}_01.jpg")
    _jpg(train / "0000_c1s1_000001_01.jpg")
    _jpg(train / "-1_c1s1_000001_01.jpg")
    s = load_market1501_heldout(tmp_path, test_fraction=1 / 3)
    assert s.name == "market1501-heldout" and s.num_classes == 4
    assert sorted({r.pid for r in s.train}) == [0, 1, 2, 3] and len(s.train) == 16
    assert {r.pid for r in s.query} == {5, 6} == {r.pid for r in s.gallery}
    assert len(s.query) == 4 and all("_000003_" in r.path for r in s.query)
    assert len(s.gallery) == 4 and all("_000005_" in r.path for r in s.gallery)
    with pytest.raises(SfscError, match="bounding_box_train/ not found"):
        load_market1501_heldout(tmp_path / "nowhere")


@pytest.mark.market1501
@pytest.mark.skipif(not (MARKET / "bounding_box_train").is_dir(), reason="Market-1501 not present")
def test_load_market1501_heldout_real():
    s = load_market1501_heldout(MARKET)  # parses names only; no image is decoded
    train_ids = {r.pid for r in s.train}
    test_ids = {r.pid for r in s.query}
    assert s.num_classes == 500 and train_ids == set(range(500))
    assert len(test_ids) == 251 and {r.pid for r in s.gallery} <= test_ids  # a few have one image per camera
    assert len(s.train) + len(s.query) + len(s.gallery) == 12_936
    # test ids are the last 251 original ids; train ids (relabelled) are the first 500
    names = sorted(p.name for p in (MARKET / "bounding_box_train").iterdir() if parse_market_name(p.name))
    all_ids = sorted({parse_market_name(n)[0] for n in names})
    assert len(all_ids) == 751 and test_ids == set(all_ids[500:])
    train_original = {parse_market_name(r.path)[0] for r in s.train}
    assert train_original == set(all_ids[:500]) and train_original.isdisjoint(test_ids)
    assert len({r.path for r in s.train + s.query + s.gallery}) == 12_936
    assert Counter((r.pid, r.camid) for r in s.query).most_common(1)[0][1] == 1
    smallest = {}
    for r in s.query + s.gallery:
        key, name = (r.pid, r.camid), Path(r.path).name
        smallest[key] = min(smallest.get(key, name), name)
    assert {(r.pid, r.camid): Path(r.path).name for r in s.query} == smallest
