"""A generic dataset: folders of identity folders, for data that is not in a benchmark's layout.

Either ``root/{train,query,gallery}/<identity>/*.jpg``, or ``root/<identity>/*.jpg`` split by the
held-out rule (sorted identity names, the last ``test_fraction`` of them test). Identity names
may be any string; they become ints 1, 2, ... in sorted order.

Cameras come from a ``c<digits>`` token in the file name (``img_c3_01.jpg`` → 3; the ``c`` must
not follow a letter, so ``pic3.jpg`` has none). Evaluation ignores same-camera matches, so when
*no* file name carries a camera each image of an identity gets its own camera (its index within
the identity + 1, counted over train/query/gallery together) and, in the held-out split, each
test identity has a single query (its smallest path) instead of one per camera. Files without a
camera in a dataset where others have one get camera 0.
"""

from __future__ import annotations

import re
from pathlib import Path

from sfsc_deploy.data.images import list_images
from sfsc_deploy.data.records import Record, ReidSplits, heldout_splits, relabel
from sfsc_deploy.errors import SfscError

_CAMERA = re.compile(r"(?<![A-Za-z])c(\d+)")
SPLIT_DIRS = ("train", "query", "gallery")
MAX_CAMERA_DIGITS = 9  # keeps every id far inside int64


def camera_of(name: str) -> int | None:
    """Camera id from a file name, or None when it has no ``c<digits>`` token."""
    m = _CAMERA.search(Path(name).stem)
    if m and len(m.group(1)) > MAX_CAMERA_DIGITS:
        raise SfscError(
            f"{name}: camera number c{m.group(1)[:12]}… has more than {MAX_CAMERA_DIGITS} digits; "
            "rename the file (cameras are small integers)"
        )
    return int(m.group(1)) if m else None


def _identities(folder: Path, data_root: Path) -> dict[str, list[Path]]:
    """Identity folder name → its image files (recursive), identities without images left out."""
    out = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = list_images(sub, within=data_root)  # a symlink out of --data reads nothing
        if images:
            out[sub.name] = images
    return out


def _records(groups: dict[str, dict[str, list[Path]]]) -> tuple[dict[str, list[Record]], bool]:
    """Records per split, with ids numbered over all splits together; and whether cameras were found."""
    names = sorted({name for ids in groups.values() for name in ids})
    pid = {name: i + 1 for i, name in enumerate(names)}
    found = any(camera_of(p.name) is not None for ids in groups.values() for ps in ids.values() for p in ps)
    count = dict.fromkeys(names, 0)  # images per identity so far, over all splits (distinct cameras)
    out = {}
    for split, ids in groups.items():
        recs = []
        for name, paths in ids.items():
            for p in paths:
                count[name] += 1
                cam = (camera_of(p.name) or 0) if found else count[name]
                recs.append(Record(str(p), pid[name], cam))
        out[split] = recs
    return out, found


def load_folder_dataset(root: str | Path, test_fraction: float = 1 / 3) -> ReidSplits:
    """``root/{train,query,gallery}/<id>/`` as given, or ``root/<id>/`` split by the held-out rule."""
    root = Path(root)
    if not root.is_dir():
        raise SfscError(f"dataset folder {root} not found; check the --data path")
    if all((root / s).is_dir() for s in SPLIT_DIRS):
        groups = {s: _identities(root / s, root) for s in SPLIT_DIRS}
        for s, ids in groups.items():
            if not ids:
                raise SfscError(
                    f"folder: {root / s} has no identity folders with images; "
                    "expected <split>/<identity>/*.jpg"
                )
        recs, _ = _records(groups)
        train, num_classes = relabel(recs["train"])
        return ReidSplits("folder", train, recs["query"], recs["gallery"], num_classes)
    ids = _identities(root, root)
    if not ids:
        raise SfscError(
            f"folder: no identity folders with images in {root}; expected {root}/<identity>/*.jpg "
            "(or train/, query/, gallery/ of those), or use --format market1501"
        )
    if not 0 < test_fraction < 1:
        raise SfscError(f"test_fraction must be in (0, 1), got {test_fraction}")
    recs, found = _records({"all": ids})
    return heldout_splits("folder", recs["all"], round(len(ids) * test_fraction), per_camera=found)
