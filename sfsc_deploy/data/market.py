"""Market-1501: the official three-folder release, and the held-out protocol for its train folder only.

File names are ``PPPP_cCsS_FFFFFF_BB.jpg``: identity, camera (1-based), sequence, frame, box.
Identity -1 marks junk boxes and 0 distractors (official release).
"""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from sfsc_deploy.data.images import IMAGE_SUFFIXES
from sfsc_deploy.data.records import Record, ReidSplits, heldout_splits, relabel
from sfsc_deploy.errors import SfscError

# at most 9 digits each: ids stay far inside int64 (a longer number is a name that does not parse)
_NAME = re.compile(r"^(-?\d{1,9})_c(\d{1,9})(?!\d)")
HELDOUT_TEST_FRACTION = 251 / 751  # 751 training identities → 500 train, 251 test


def parse_market_name(name: str) -> tuple[int, int] | None:
    """(pid, camid) from a Market-1501 file name or path, or None when it does not follow the scheme."""
    m = _NAME.match(Path(name).name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _read_dir(folder: Path, fmt: str) -> tuple[list[Record], int]:
    """Records of one flat folder, and how many image files did not parse."""
    if not folder.is_dir():
        hint = (
            "use --format market1501-heldout for a folder with only bounding_box_train/, or --format folder"
            if fmt == "market1501"
            else "use --format folder for a folder of identity folders"
        )
        raise SfscError(f"{fmt}: {folder.name}/ not found in {folder.parent}; {hint}")
    records, bad = [], 0
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        parsed = parse_market_name(path.name)
        if parsed is None:
            bad += 1
        else:
            records.append(Record(str(path), *parsed))
    return records, bad


def _report(bad: int, root: Path) -> None:
    if bad:
        Console(stderr=True).print(
            f"skipped {bad} image file(s) in {root} whose name is not PPPP_cC...", highlight=False
        )


def _nonempty(records: list[Record], what: str, root: Path, fmt: str) -> list[Record]:
    if not records:
        raise SfscError(f"{fmt}: no usable Market-1501 images in {root / what}; check the path / --format")
    return records


def load_market1501(root: str | Path) -> ReidSplits:
    """Official layout. Train: pids > 0, relabelled. Gallery: junk (-1) dropped, distractors (0) kept."""
    root = Path(root)
    (train, b1), (query, b2), (gallery, b3) = (
        _read_dir(root / sub, "market1501") for sub in ("bounding_box_train", "query", "bounding_box_test")
    )
    _report(b1 + b2 + b3, root)
    train, num_classes = relabel(r for r in train if r.pid > 0)
    gallery = [r for r in gallery if r.pid != -1]
    return ReidSplits(
        "market1501",
        _nonempty(train, "bounding_box_train", root, "market1501"),
        _nonempty(query, "query", root, "market1501"),
        _nonempty(gallery, "bounding_box_test", root, "market1501"),
        num_classes,
    )


def load_market1501_heldout(root: str | Path, *, test_fraction: float = HELDOUT_TEST_FRACTION) -> ReidSplits:
    """Only ``bounding_box_train/``: sorted ids, first 500 train, last 251 test (the same fraction otherwise).

    Per test identity and camera, the smallest file name is a query; every other test image is
    gallery. Junk / distractor ids (<= 0) are ignored.
    """
    root = Path(root)
    records, bad = _read_dir(root / "bounding_box_train", "market1501-heldout")
    _report(bad, root)
    records = _nonempty([r for r in records if r.pid > 0], "bounding_box_train", root, "market1501-heldout")
    num_ids = len({r.pid for r in records})
    return heldout_splits("market1501-heldout", records, round(num_ids * test_fraction))
