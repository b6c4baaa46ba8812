"""Image data: datasets (Market-1501, generic folders, built-in synthetic), banks, transforms."""

from __future__ import annotations

from pathlib import Path

from sfsc_deploy.data.records import Record, ReidSplits
from sfsc_deploy.data.synthetic import SyntheticConfig
from sfsc_deploy.errors import SfscError

FORMATS = ("market1501", "market1501-heldout", "folder")

__all__ = ["FORMATS", "Record", "ReidSplits", "SyntheticConfig", "load_dataset"]


def detect_format(root: Path) -> str:
    if (root / "query").is_dir() and (root / "bounding_box_test").is_dir():
        return "market1501"
    if (root / "bounding_box_train").is_dir():
        return "market1501-heldout"
    return "folder"


def load_dataset(
    data: str, fmt: str | None = None, *, synthetic: SyntheticConfig | None = None
) -> ReidSplits:
    """``data='synthetic'`` is the built-in dataset; otherwise a folder in one of FORMATS."""
    if data == "synthetic":
        from sfsc_deploy.data.synthetic import synthetic_splits

        return synthetic_splits(synthetic or SyntheticConfig())
    root = Path(data)
    if not root.is_dir():
        raise SfscError(f"dataset folder {root} not found; pass an existing folder or --data synthetic")
    fmt = fmt or detect_format(root)
    if fmt == "market1501":
        from sfsc_deploy.data.market import load_market1501

        return load_market1501(root)
    if fmt == "market1501-heldout":
        from sfsc_deploy.data.market import load_market1501_heldout

        return load_market1501_heldout(root)
    if fmt == "folder":
        from sfsc_deploy.data.folder import load_folder_dataset

        return load_folder_dataset(root)
    raise SfscError(f"unknown --format {fmt!r}; choose one of: {', '.join(FORMATS)}")
