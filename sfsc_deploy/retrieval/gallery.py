"""Gallery feature files (.npz, no pickles): features, ids, cameras, paths and who made them."""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exporters.files import atomic_path
from exporters.metadata import MAX_FEATURE_DIM
from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.headers import GALLERY


@dataclass
class Gallery:
    features: np.ndarray  # float32 or float16 [N, D]
    pids: np.ndarray  # int64 [N]
    camids: np.ndarray  # int64 [N]
    paths: np.ndarray  # str [N]
    meta: dict[str, Any]  # family_id, width, feature_dim, normalized, runtime, source, ...

    def __len__(self) -> int:
        return len(self.features)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def dtype(self) -> np.dtype:
        """What the file stores (float32 or float16); ``blocks`` always gives float32."""
        return self.features.dtype

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start row, float32 [n, D])`` blocks of at most ``rows`` rows, in order: each a fresh
        array the caller may change. A sharded gallery (retrieval.shards) reads them from its
        memory-mapped shard files, so a search never holds more than one block."""
        rows = block_rows(rows)
        for start in range(0, len(self), rows):
            yield start, self.features[start : start + rows].astype(np.float32)


def block_rows(rows: int) -> int:
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 1:
        raise SfscError(f"gallery blocks need a positive number of rows, got {rows!r}")
    return int(rows)


def open_gallery(path: str | os.PathLike, *, verify: bool = True) -> Gallery:
    """A ``.npz`` gallery file or a gallery folder of shards (``retrieval.shards.open_gallery``)."""
    from sfsc_deploy.retrieval.shards import open_gallery as _open

    return _open(path, verify=verify)


def save_gallery(gallery: Gallery, path: str | os.PathLike, *, force: bool = True, inputs=()) -> Path:
    n = len(gallery.features)
    if not (len(gallery.pids) == len(gallery.camids) == len(gallery.paths) == n):
        raise SfscError("gallery features, ids, cameras and paths must have one row per image")
    meta = {**GALLERY.header(), **gallery.meta}
    with atomic_path(path, force=force, inputs=inputs) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                features=gallery.features,
                pids=gallery.pids.astype(np.int64),
                camids=gallery.camids.astype(np.int64),
                paths=np.asarray(gallery.paths, dtype=str),
                meta=np.asarray(json.dumps(meta)),
            )
    return Path(path)


def load_gallery(path: str | os.PathLike) -> Gallery:
    """Read a gallery and check it against its schema: any damage is one line, never a wrong search."""
    path = Path(path)
    if not path.is_file():
        raise SfscError(f"gallery file {path} not found; create it with `sfsc-deploy extract`")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = dict(GALLERY.check(json.loads(str(data["meta"])), path))
            gallery = Gallery(
                features=data["features"],
                pids=data["pids"],
                camids=data["camids"],
                paths=data["paths"],
                meta=meta,
            )
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise SfscError(
            f"{path} is not a readable gallery file ({reason}); re-run `sfsc-deploy extract`"
        ) from None
    problem = _schema_problem(gallery)
    if problem:
        raise SfscError(f"{path} is a damaged gallery file ({problem}); re-run `sfsc-deploy extract`")
    check_features(
        gallery.features, f"gallery file {path}", fix="re-run `sfsc-deploy extract` with a working model"
    )
    return gallery


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _schema_problem(g: Gallery) -> str | None:
    """What is wrong with a gallery's arrays and description, or None."""
    f = g.features
    if f.dtype.name not in DTYPES or f.ndim != 2 or not 1 <= f.shape[1] <= MAX_FEATURE_DIM:
        return f"features are {f.dtype} {f.shape}, want float32/float16 [N, D] with D ≤ {MAX_FEATURE_DIM}"
    for name in ("pids", "camids"):
        a = getattr(g, name)
        if a.dtype.kind not in "iu" or a.ndim != 1 or len(a) != len(f):
            return f"{name} are {a.dtype} {a.shape}, want {len(f)} integers"
    if g.paths.dtype.kind != "U" or g.paths.ndim != 1 or len(g.paths) != len(f):
        return f"paths are {g.paths.dtype} {g.paths.shape}, want {len(f)} strings"
    return meta_problem(g.meta, f.shape[1])


def meta_problem(m: dict[str, Any], dim: int) -> str | None:
    """What is wrong with a gallery's description of ``dim``-d features, or None."""
    if not isinstance(m.get("family_id"), str) or not m["family_id"]:
        return "no family_id"
    if not isinstance(m.get("feature_dim"), int) or isinstance(m.get("feature_dim"), bool):
        return "feature_dim is not an integer"
    if m["feature_dim"] != dim:
        return f"feature_dim {m['feature_dim']} but {dim}-d features"
    width = m.get("width")
    if not _is_number(width) or not (math.isfinite(width) and 0 < width <= 1):
        return f"width {width!r} is not in (0, 1]"
    if not isinstance(m.get("normalized", False), bool):
        return "normalized is not true/false"
    return None


SPLITS = ("gallery", "query", "train")
DTYPES = ("float32", "float16")


def check_features(features: np.ndarray, source: str, *, fix: str | None = None) -> None:
    """Refuse features no search can use: non-finite ones, or all (near) zero.

    NaN weights or a damaged normalisation give NaN features, and an all-zero gallery ties every
    candidate; written to disk, or read from it, either would be searched as if it were real.
    ``fix`` replaces the default advice (for features about to be written).
    """
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        raise SfscError(
            f"the {source} gave non-finite features for {int((~finite).sum())} of {len(features)} images; "
            + (
                fix
                or "nothing was written; re-train or re-export the model (NaN/inf weights or a damaged "
                "checkpoint)"
            )
        )
    norms = np.linalg.norm(features.astype(np.float64), axis=1)
    if len(norms) and float(np.median(norms)) < 1e-6:
        raise SfscError(
            f"the {source} gave (near) zero features (median norm {float(np.median(norms)):.1e}), which "
            "cannot rank anything; "
            + (fix or "nothing was written; check the model (an untrained BatchNorm?)")
        )


def extract_gallery(
    extractor,  # retrieval.extractors.FeatureExtractor
    splits,  # data.ReidSplits
    split: str = "gallery",
    *,
    dtype: str = "float32",
    batch_size: int = 64,
    progress: bool = False,
) -> Gallery:
    """Features of one split with its ids, cameras, paths and the model's identity.

    In a process group of several ranks each rank extracts its shard of the images and every rank
    returns the whole gallery (the caller lets rank 0 write it); progress bars are rank 0's.
    """
    from sfsc_deploy.data.bank import build_bank
    from sfsc_deploy.train.distributed import current

    progress = progress and current().main

    if split not in SPLITS:
        raise SfscError(f"--split {split!r} must be one of {', '.join(SPLITS)}")
    if dtype not in DTYPES:
        raise SfscError(f"--dtype {dtype!r} must be one of {', '.join(DTYPES)}")
    bank = build_bank(getattr(splits, split), extractor.info.input_size, split=split, progress=progress)
    features = extractor.features(bank.images, batch_size=batch_size, progress=progress, description=split)
    check_features(features, f"{extractor.info.runtime} model (width {extractor.info.width:g})")
    meta = {**extractor.info.to_dict(), "dataset": splits.name, "split": split, "dtype": dtype}
    return Gallery(
        features.astype(dtype), bank.pids.numpy(), bank.camids.numpy(), np.asarray(bank.paths), meta
    )
