"""What a re-id dataset is once loaded: image records and the train / query / gallery split.

Every format (Market-1501, a generic folder, the synthetic set) ends up as a :class:`ReidSplits`,
so training and evaluation never see file layouts. The query rule shared by the held-out
protocols lives here too, so that all of them pick queries the same way.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from sfsc_deploy.errors import SfscError


@dataclass(frozen=True)
class Record:
    """One image: a file path (or ``synthetic://{seed}/{index}``), its identity and its camera."""

    path: str
    pid: int
    camid: int


@dataclass
class ReidSplits:
    """Train pids are relabelled to ``0..num_classes-1``; query / gallery keep the original pids."""

    name: str
    train: list[Record]
    query: list[Record]
    gallery: list[Record]
    num_classes: int


def relabel(records: Iterable[Record]) -> tuple[list[Record], int]:
    """Records with pids mapped to ``0..C-1`` in sorted order of the original ids, and C."""
    records = list(records)
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [Record(r.path, mapping[r.pid], r.camid) for r in records], len(mapping)


def query_gallery(records: Iterable[Record], *, per_camera: bool = True) -> tuple[list[Record], list[Record]]:
    """The held-out query rule: per identity and camera, the smallest path is the query, the rest gallery.

    Within one folder the smallest path is the smallest file name.

    With ``per_camera=False`` there is one query per identity (its smallest path); used where
    camera ids are unknown and every image was given its own camera.
    """
    query, gallery, seen = [], [], set()
    for r in sorted(records, key=lambda r: (r.pid, r.path)):
        key = (r.pid, r.camid) if per_camera else r.pid
        (gallery if key in seen else query).append(r)
        seen.add(key)
    return query, gallery


def heldout_splits(
    name: str, records: list[Record], num_test_ids: int, *, per_camera: bool = True
) -> ReidSplits:
    """Sorted identity ids: the last ``num_test_ids`` are test (query/gallery), the rest train."""
    ids = sorted({r.pid for r in records})
    if len(ids) < 2:
        raise SfscError(
            f"{name}: found {len(ids)} identity, need at least 2 (train and test); add identities"
        )
    num_test_ids = min(max(1, num_test_ids), len(ids) - 1)
    test_ids = set(ids[len(ids) - num_test_ids :])
    train, num_classes = relabel(r for r in records if r.pid not in test_ids)
    query, gallery = query_gallery((r for r in records if r.pid in test_ids), per_camera=per_camera)
    return ReidSplits(name, train, query, gallery, num_classes)


def split_validation(
    train: list[Record], num_ids: int, seed: int = 0
) -> tuple[list[Record], list[Record], list[Record]]:
    """Carve ``num_ids`` training identities out as a validation query/gallery, for tuning.

    Only identities seen by at least two cameras are eligible (a query needs a cross-camera
    match). Returns (remaining train relabelled ``0..C'-1``, val_query, val_gallery).
    """
    cameras: dict[int, set[int]] = {}
    for r in train:
        cameras.setdefault(r.pid, set()).add(r.camid)
    eligible = sorted(pid for pid, cams in cameras.items() if len(cams) >= 2)
    if num_ids < 1 or num_ids > len(eligible) or num_ids >= len(cameras):
        raise SfscError(
            f"cannot carve {num_ids} validation identities out of {len(cameras)} training identities "
            f"({len(eligible)} seen by >= 2 cameras); lower --val-ids"
        )
    picked = set(random.Random(seed).sample(eligible, num_ids))
    remaining, _ = relabel(r for r in train if r.pid not in picked)
    val_query, val_gallery = query_gallery(r for r in train if r.pid in picked)
    return remaining, val_query, val_gallery
