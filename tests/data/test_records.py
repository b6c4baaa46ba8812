import pytest

from sfsc_deploy.data.records import Record, heldout_splits, query_gallery, relabel, split_validation
from sfsc_deploy.errors import SfscError


def _recs(spec):
    """spec: (pid, camid, count) → records with paths p{pid}_c{cam}_{k}."""
    return [Record(f"p{pid:03d}_c{cam}_{k}.jpg", pid, cam) for pid, cam, n in spec for k in range(n)]


def test_relabel_maps_sorted_ids_to_range_and_keeps_paths_and_cameras():
    recs = [Record("a", 42, 1), Record("b", 7, 2), Record("c", 42, 3), Record("d", 100, 1)]
    out, n = relabel(recs)
    assert n == 3
    assert [r.pid for r in out] == [1, 0, 1, 2]
    assert [(r.path, r.camid) for r in out] == [(r.path, r.camid) for r in recs]
    assert relabel([]) == ([], 0)


def test_query_gallery_smallest_path_per_identity_and_camera():
    recs = [
        Record("z/3.jpg", 1, 1), Record("z/1.jpg", 1, 1), Record("z/2.jpg", 1, 2),
        Record("z/9.jpg", 1, 2), Record("z/5.jpg", 2, 1), Record("z/0.jpg", 2, 1),
    ]  # fmt: skip
    query, gallery = query_gallery(reversed(recs))
    assert sorted((r.pid, r.camid, r.path) for r in query) == [
        (1, 1, "z/1.jpg"), (1, 2, "z/2.jpg"), (2, 1, "z/0.jpg"),
    ]  # fmt: skip
    assert sorted(r.path for r in gallery) == ["z/3.jpg", "z/5.jpg", "z/9.jpg"]
    assert len(query) + len(gallery) == len(recs)


def test_query_gallery_one_query_per_identity_without_cameras():
    recs = [Record(f"x/{i}.jpg", 1, i + 1) for i in range(4)] + [Record("x/a.jpg", 2, 7)]
    query, gallery = query_gallery(recs, per_camera=False)
    assert [(r.pid, r.path) for r in query] == [(1, "x/0.jpg"), (2, "x/a.jpg")]
    assert len(gallery) == 3


def test_heldout_splits_last_sorted_ids_are_test():
    recs = _recs([(pid, cam, 2) for pid in (5, 30, 12, 8, 40) for cam in (1, 2)])
    s = heldout_splits("t", recs, 2)
    assert {r.pid for r in s.query} == {30, 40} == {r.pid for r in s.gallery}
    assert s.num_classes == 3 and sorted({r.pid for r in s.train}) == [0, 1, 2]
    assert len(s.train) == 12 and len(s.query) == 4 and len(s.gallery) == 4
    # train keeps original order of ids: 5 → 0, 8 → 1, 12 → 2
    assert {r.path[:4]: r.pid for r in s.train} == {"p005": 0, "p008": 1, "p012": 2}


def test_heldout_splits_clamps_test_ids_and_needs_two_identities():
    recs = _recs([(1, 1, 2), (2, 1, 2), (3, 2, 2)])
    assert heldout_splits("t", recs, 99).num_classes == 1  # at least one train id left
    assert {r.pid for r in heldout_splits("t", recs, 0).query} == {3}  # at least one test id
    with pytest.raises(SfscError, match="at least 2"):
        heldout_splits("t", _recs([(1, 1, 3)]), 1)


def test_split_validation_carves_multi_camera_ids_and_relabels():
    # ids 1..4 seen by two cameras, ids 5, 6 by one
    recs = _recs([(p, c, 2) for p in (1, 2, 3, 4) for c in (1, 2)] + [(5, 1, 3), (6, 3, 3)])
    remaining, vq, vg = split_validation(recs, 2, seed=3)
    picked = {r.pid for r in vq}
    assert len(picked) == 2 and picked <= {1, 2, 3, 4}
    assert {r.pid for r in vg} == picked
    assert len(vq) == 4 and len(vg) == 4  # one query per (id, camera)
    assert sorted({r.pid for r in remaining}) == [0, 1, 2, 3]
    assert len(remaining) + len(vq) + len(vg) == len(recs)
    assert {r.path for r in remaining}.isdisjoint(r.path for r in vq + vg)
    # deterministic per seed
    assert split_validation(recs, 2, seed=3)[1] == vq


def test_split_validation_too_many_ids_is_an_error():
    recs = _recs([(p, c, 1) for p in (1, 2) for c in (1, 2)] + [(3, 1, 2)])
    with pytest.raises(SfscError, match="cannot carve 3"):
        split_validation(recs, 3)  # only 2 eligible
    with pytest.raises(SfscError, match="cannot carve 0"):
        split_validation(recs, 0)
    only_multi = _recs([(p, c, 1) for p in (1, 2) for c in (1, 2)])
    with pytest.raises(SfscError):
        split_validation(only_multi, 2)  # would leave no training identity
