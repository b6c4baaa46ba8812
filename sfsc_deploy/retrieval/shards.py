"""Gallery folders: features in memory-mappable ``.npy`` shards under one manifest, written
resumably, one shard per process at a time; and ``open_gallery``, the one reader of both layouts.

A gallery folder (``sfsc-deploy extract --out DIR``)::

    manifest.json        header (io.headers.GALLERY_SHARDS); the model's identity exactly as a .npz
                         gallery's meta carries it; count, dim, dtype, shard size; per shard its
                         file names, rows, bytes and sha256
    features-00000.npy   float32 or float16 [rows, D], C order: np.load(mmap_mode="r") maps it
    ids-00000.npy        one structured row per image: pid (int64), camid (int64), path (str)
    ...

Shard ``i`` holds the images ``i*S .. (i+1)*S-1`` of the split (S = the shard size) in the order a
whole-split ``build_bank`` reads them, less any unreadable image, so concatenated the shards are
exactly the ``.npz`` gallery of the same model. Every file is written to a hidden temp file beside
it and renamed (exporters.files.atomic_path); the manifest is rewritten the same way after every
completed shard (after every round of shards with several processes), so a killed extract leaves a
manifest listing only complete shards, and a half-written temp file is never listed, never read,
and removed or overwritten by the next run.

Resume: running the same extract again onto the folder continues it. The manifest must describe the
same model (identity and file hash), dataset images, split, dtype and shard size — else one error
naming what differs (``--force`` starts over). Listed shards are checked (size, sha256) and kept; the
others, and a listed shard that fails its check, are extracted again, to the same bytes.

Several processes (``--nproc N`` or torchrun): the shards still to do are dealt out in rounds, shard
``todo[k*N + r]`` to rank r; each rank writes its own shard files, and after each round rank 0
gathers the ranks' entries (``all_gather_object``) and rewrites the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exporters.files import atomic_path, file_sha256, json_text, output_lock, refuse_input_overlap, write_text
from exporters.metadata import MAX_FEATURE_DIM
from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.headers import GALLERY_SHARDS
from sfsc_deploy.retrieval.gallery import (
    DTYPES,
    SPLITS,
    Gallery,
    block_rows,
    check_features,
    load_gallery,
    meta_problem,
)

MANIFEST = "manifest.json"
FIX = "re-run `sfsc-deploy extract` onto the folder (it re-extracts what is missing or damaged)"


@dataclass(frozen=True)
class ShardSettings:
    """How a gallery folder is cut: ``shard_size`` rows per shard file (the unit of resume and of the
    memory an extract holds: 50,000 × 2048-d float32 is 400 MB), images decoded ``read_images`` at
    a time within a shard (rounded to whole batches)."""

    shard_size: int = 50_000
    read_images: int = 1024


def shard_names(index: int) -> tuple[str, str]:
    return f"features-{index:05d}.npy", f"ids-{index:05d}.npy"


_OURS = re.compile(
    r"^(?:manifest\.json|(?:features|ids)-\d{5,}\.npy)$"
    r"|^\.(?:manifest\.json|(?:features|ids)-\d{5,}\.npy)\.(?:\d+\..*\.tmp|old-\d+)$"
)


# --------------------------------------------------------------------------------------- reading
@dataclass
class _Shard:
    index: int
    rows: int
    features: np.ndarray  # memory-mapped [rows, D]
    name: str


class ShardedGallery(Gallery):
    """A gallery folder: ids, cameras and paths in memory, features memory-mapped shard by shard.

    ``blocks(rows)`` yields float32 blocks of exactly ``rows`` rows (the last one shorter) that may
    span shard boundaries; each is read from the maps into one fresh array, so a search holds one
    block, never the gallery. ``features`` concatenates every shard (for small galleries only).
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], shards: list[_Shard], pids, camids, paths):
        self.folder = folder
        self.manifest = manifest
        self._shards = shards
        self.pids, self.camids, self.paths = pids, camids, paths
        header = {k: manifest[k] for k in ("format", "format_version", "tool_version")}
        self.meta = {**header, **manifest["meta"]}

    def __repr__(self) -> str:
        shape = f"{len(self)} × {self.dim} {self.dtype}"
        return f"ShardedGallery({self.folder}, {shape}, {len(self._shards)} shards)"

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.manifest["dtype"])

    @property
    def features(self) -> np.ndarray:  # type: ignore[override]
        """Every feature in memory, in the stored dtype (checked like ``blocks``)."""
        out = np.empty((len(self), self.dim), self.dtype)
        start = 0
        for shard in self._shards:
            out[start : start + shard.rows] = shard.features
            self._check(out[start : start + shard.rows], shard)
            start += shard.rows
        return out

    def _check(self, block: np.ndarray, shard: _Shard) -> None:
        if len(block):
            check_features(block, f"gallery shard {self.folder / shard.name}", fix=FIX)

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        rows = block_rows(rows)
        total, start, filled = len(self), 0, 0
        out = np.empty((min(rows, total), self.dim), np.float32)
        for shard in self._shards:
            pos = 0
            while pos < shard.rows:
                take = min(rows - filled, shard.rows - pos)
                out[filled : filled + take] = shard.features[pos : pos + take]  # one read from the map
                self._check(out[filled : filled + take], shard)
                filled, pos = filled + take, pos + take
                if filled == len(out):
                    yield start, out
                    start += filled
                    filled = 0
                    out = np.empty((min(rows, total - start), self.dim), np.float32)


def open_gallery(path: str | os.PathLike, *, verify: bool = True) -> Gallery:
    """A gallery from ``extract``: a ``.npz`` file (``load_gallery``) or a folder of shards.

    A folder's manifest and every shard's shapes and dtypes are checked; with ``verify`` (the
    default) every shard file's sha256 too, which reads the whole gallery once (``verify=False``
    skips that; every block read is still checked for non-finite features). Any damage is one line.
    """
    path = Path(path)
    if path.name == MANIFEST and path.is_file():
        path = path.parent
    if not path.is_dir():
        return load_gallery(path)
    manifest = read_manifest(path)
    if not manifest["complete"]:
        raise SfscError(
            f"{path} is an unfinished gallery ({len(manifest['shards'])} of {manifest['shards_total']} "
            "shards); run the same `sfsc-deploy extract` command again to finish it"
        )
    shards, pids, camids, paths = [], [], [], []
    for entry in manifest["shards"]:
        if verify:
            problem = entry_problem(path, entry)
            if problem:
                raise SfscError(f"{path} is a damaged gallery: {problem}; {FIX}")
        features, ids = _load_shard(path, manifest, entry)
        shards.append(_Shard(entry["index"], entry["rows"], features, entry["features"]))
        pids.append(ids["pid"].astype(np.int64))
        camids.append(ids["camid"].astype(np.int64))
        paths.append(np.asarray(ids["path"]))
    return ShardedGallery(
        path,
        manifest,
        shards,
        np.concatenate(pids),
        np.concatenate(camids),
        np.concatenate(paths).astype(str),
    )


def _load_shard(
    folder: Path, manifest: dict[str, Any], entry: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    rows, dim, dtype = entry["rows"], manifest["dim"], manifest["dtype"]
    arrays = []
    for key in ("features", "ids"):
        file = folder / entry[key]
        try:
            arrays.append(np.load(file, mmap_mode="r", allow_pickle=False))
        except (ValueError, OSError, EOFError) as exc:
            reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
            raise SfscError(f"{file} is not a readable gallery shard ({reason}); {FIX}") from None
    features, ids = arrays
    if features.dtype != np.dtype(dtype) or features.shape != (rows, dim) or not features.flags.c_contiguous:
        raise SfscError(
            f"{folder / entry['features']} holds {features.dtype} {features.shape}, the manifest says "
            f"{dtype} ({rows}, {dim}) in C order; {FIX}"
        )
    names = ids.dtype.names or ()
    if (
        names != ("pid", "camid", "path")
        or ids.shape != (rows,)
        or ids.dtype["pid"].kind not in "iu"
        or ids.dtype["camid"].kind not in "iu"
        or ids.dtype["path"].kind != "U"
    ):
        raise SfscError(
            f"{folder / entry['ids']} holds {ids.dtype} {ids.shape}, want {rows} rows of "
            f"(pid, camid, path); {FIX}"
        )
    return features, ids


def _int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _plain_name(value: Any, expected: str) -> str | None:
    """Why ``value`` is not the file ``expected`` inside the gallery folder, or None."""
    if not isinstance(value, str) or not value:
        return f"a file name {value!r}"
    if (
        "/" in value
        or "\\" in value
        or value in (".", "..")
        or os.path.isabs(value)
        or Path(value).name != value
    ):
        return f"{value!r}, which is not a file inside the gallery folder"
    if value != expected:
        return f"{value!r} where shard files are named {expected!r}"
    return None


def read_manifest(folder: Path) -> dict[str, Any]:
    """``folder``'s manifest, checked: header, numbers, and shard entries naming only plain files
    inside the folder (never ``../x`` or an absolute path); any damage is one line."""
    path = folder / MANIFEST
    if not path.is_file():
        raise SfscError(
            f"{folder} is not a gallery folder (no {MANIFEST}); create it with `sfsc-deploy extract`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise SfscError(f"{path} is not a readable gallery manifest ({reason}); {FIX}") from None
    m = dict(GALLERY_SHARDS.check(data, path))
    problem = _manifest_problem(m)
    if problem:
        raise SfscError(f"{path} is a damaged gallery manifest ({problem}); {FIX}")
    for entry in m["shards"]:
        for key, expected in zip(("features", "ids"), shard_names(entry["index"]), strict=True):
            why = _plain_name(entry.get(key), expected)
            if why:
                raise SfscError(f"{path} names {why} (shard {entry['index']}); refused; {FIX}")
            if (folder / expected).is_symlink():
                raise SfscError(f"{folder / expected} is a symbolic link, not a shard file; refused; {FIX}")
    return m


def _manifest_problem(m: dict[str, Any]) -> str | None:
    if not isinstance(m.get("meta"), dict):
        return "no meta"
    dim, dtype = m.get("dim"), m.get("dtype")
    if not _int(dim, 1) or dim > MAX_FEATURE_DIM:
        return f"dim {dim!r}"
    if dtype not in DTYPES or m["meta"].get("dtype", dtype) != dtype:
        return f"dtype {dtype!r}"
    problem = meta_problem(m["meta"], dim)
    if problem:
        return problem
    for key in ("count", "shard_size", "shards_total"):
        if not _int(m.get(key), 1 if key == "shard_size" else 0):
            return f"{key} {m.get(key)!r}"
    if not isinstance(m.get("complete"), bool) or not isinstance(m.get("shards"), list):
        return "no shard list"
    seen = -1
    for entry in m["shards"]:
        if not isinstance(entry, dict) or not _int(entry.get("index")) or not _int(entry.get("rows")):
            return f"shard entry {entry!r}"
        if entry["index"] <= seen or entry["index"] >= m["shards_total"] or entry["rows"] > m["shard_size"]:
            return f"shard {entry['index']} out of order or range"
        seen = entry["index"]
        for key in ("features", "ids"):
            if not _int(entry.get(f"{key}_bytes")) or not isinstance(entry.get(f"{key}_sha256"), str):
                return f"shard {entry['index']} has no {key} size or sha256"
    if sum(e["rows"] for e in m["shards"]) != m["count"]:
        return f"count {m['count']} is not the sum of the shards' rows"
    if m["complete"] and len(m["shards"]) != m["shards_total"]:
        return f"complete with {len(m['shards'])} of {m['shards_total']} shards"
    return None


def entry_problem(folder: Path, entry: dict[str, Any]) -> str | None:
    """Why a listed shard's files are not the ones the manifest describes (size, sha256), or None."""
    for key in ("features", "ids"):
        file = folder / entry[key]
        try:
            size = file.stat().st_size
        except OSError:
            return f"{file} is missing"
        if size != entry[f"{key}_bytes"]:
            return f"{file} has {size} bytes, the manifest says {entry[f'{key}_bytes']}"
        if file_sha256(file) != entry[f"{key}_sha256"]:
            return f"{file} does not match its sha256 in the manifest (damaged or changed)"
    return None


# --------------------------------------------------------------------------------------- writing
def is_gallery_folder(path: str | os.PathLike, shard_size: int | None = None) -> bool:
    """Does ``extract --out path`` write a folder of shards? Yes unless it names a ``.npz`` file
    (and no ``--shard-size`` was given, which a ``.npz`` path refuses)."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        return True
    if shard_size is not None:
        raise SfscError(
            f"--shard-size writes a gallery folder, but --out {path} names a .npz file; drop --shard-size "
            "or name a folder"
        )
    return False


def check_gallery_folder(path: str | os.PathLike, inputs: Sequence[Any] = ()) -> None:
    """Refuse up front, before anything is extracted: an input, a file or link in the way, or a
    folder holding files sfsc-deploy did not write there."""
    path = Path(path)
    refuse_input_overlap(path, inputs)
    if path.is_symlink():
        raise SfscError(f"{path} is a symbolic link; choose a real folder for --out")
    if path.exists() and not path.is_dir():
        raise SfscError(
            f"{path} exists and is not a folder; a gallery of shards is a folder (name a .npz file for "
            "one gallery file) — choose another --out"
        )
    if path.is_dir():
        foreign = sorted(e.name for e in path.iterdir() if not _OURS.match(e.name))
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise SfscError(
                f"{path} holds files that are not part of a gallery ({shown}); choose an empty or new "
                "folder for --out"
            )


def ordered_records(records: Sequence[Any]) -> list[Any]:
    """The split in the order ``build_bank`` reads it (rendered groups, then files): shard i is
    records ``i*S ..`` of this list, so the shards concatenate to the whole split's gallery."""
    from sfsc_deploy.data.bank import by_source

    generated, files = by_source(list(records))
    return [r for group in generated.values() for r in group] + files


def _records_digest(records: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.path, r.pid, r.camid]).encode() + b"\n")
    return h.hexdigest()


def _model_digest(source: str) -> str | None:
    """sha256 of the model file(s) the features come from (an IR's .xml and .bin), if on disk."""
    path = Path(source) if source else None
    if path is None or not path.is_file():
        return None
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    h = hashlib.sha256()
    for f in files:
        if f.is_file():
            h.update(file_sha256(f).encode())
    return h.hexdigest()


def _mismatch(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """What makes the folder's gallery another one than this extract would write, or None."""
    om, nm = old["meta"], new["meta"]
    checks: list[tuple[str, Any, Any]] = [
        (k, om.get(k), nm.get(k)) for k in ("family_id", "runtime", "width", "dataset", "split", "dtype")
    ]
    checks += [
        ("shard size", old.get("shard_size"), new["shard_size"]),
        ("model file (sha256)", old.get("model_sha256"), new["model_sha256"]),
        ("image list (count)", old.get("records", {}).get("count"), new["records"]["count"]),
        ("image list (sha256)", old.get("records", {}).get("sha256"), new["records"]["sha256"]),
    ]
    checks += [(k, om.get(k), v) for k, v in nm.items() if k != "source"]
    for what, was, now in checks:
        if was != now:
            return f"another {what} ({str(was)[:40]}, this extract: {str(now)[:40]})"
    return None


def _prepare(folder: Path, identity: dict[str, Any], force: bool, inputs: Sequence[Any]) -> dict[int, dict]:
    """Rank 0, before any shard: the folder made ready, and the listed shards that check out."""
    check_gallery_folder(folder, inputs)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SfscError(f"cannot create {folder} ({exc.strerror}); choose another --out") from None
    if force:  # start over: only our own files are there (checked above)
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return {}
    if not (folder / MANIFEST).exists():
        return {}  # a run killed before its first manifest: its files are overwritten
    try:
        old = read_manifest(folder)
    except SfscError as exc:
        raise SfscError(f"{exc} — or pass --force to start the gallery over") from None
    mismatch = _mismatch(old, identity)
    if mismatch:
        raise SfscError(
            f"{folder} holds a gallery of {mismatch}; pass --force to replace it or choose another --out"
        )
    done = {}
    for entry in old["shards"]:
        problem = entry_problem(folder, entry)
        if problem:
            print(f"shard {entry['index']} is extracted again: {problem}", file=sys.stderr)
        else:
            done[entry["index"]] = entry
    return done


def build_manifest(identity: dict[str, Any], done: dict[int, dict]) -> dict[str, Any]:
    shards = [done[i] for i in sorted(done)]
    return {
        **GALLERY_SHARDS.header(),
        "complete": len(shards) == identity["shards_total"],
        "count": sum(e["rows"] for e in shards),
        "dim": identity["meta"]["feature_dim"],
        "dtype": identity["meta"]["dtype"],
        **identity,
        "shards": shards,
    }


def _save_npy(tmp: Path, array: np.ndarray) -> None:
    """Write one shard file (the temp file ``atomic_path`` renames): a seam for tests to break."""
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _write(folder: Path, name: str, array: np.ndarray) -> tuple[int, str]:
    with atomic_path(folder / name) as tmp:
        _save_npy(tmp, array)
        size, digest = tmp.stat().st_size, file_sha256(tmp)
    return size, digest


@dataclass(frozen=True)
class ShardsWritten:
    path: Path
    count: int
    dim: int
    dtype: str
    shards: int
    kept: int  # complete shards an earlier run had written


def extract_shards(
    extractor,  # retrieval.extractors.FeatureExtractor
    splits,  # data.ReidSplits
    split: str,
    out: str | os.PathLike,
    *,
    dtype: str = "float32",
    batch_size: int = 64,
    shard_size: int | None = None,
    force: bool = False,
    inputs: Sequence[Any] = (),
    progress: bool = False,
) -> ShardsWritten:
    """Write (or finish) the gallery folder ``out`` of one split, one shard at a time: images are
    read ``ShardSettings.read_images`` at a time, so memory is bounded by a shard's features.

    In a process group every rank must call this (a collective); ranks write whole shards of their
    own (the module docstring), rank 0 the manifest. Every rank returns the same summary.
    """
    from sfsc_deploy.train import distributed

    size = ShardSettings.shard_size if shard_size is None else shard_size
    if split not in SPLITS:
        raise SfscError(f"--split {split!r} must be one of {', '.join(SPLITS)}")
    if dtype not in DTYPES:
        raise SfscError(f"--dtype {dtype!r} must be one of {', '.join(DTYPES)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise SfscError(f"--shard-size {size!r} must be a positive number of images")
    if batch_size < 1:
        raise SfscError(f"--batch-size {batch_size} must be >= 1")
    folder = Path(out)
    records = ordered_records(getattr(splits, split))
    if not records:
        raise SfscError(f"split {split!r} has no images; check the path and --format")
    info = extractor.info
    meta = {**info.to_dict(), "dataset": splits.name, "split": split, "dtype": dtype}
    identity = {
        "shard_size": size,
        "shards_total": math.ceil(len(records) / size),
        "records": {"count": len(records), "sha256": _records_digest(records)},
        "model_sha256": _model_digest(info.source),
        "meta": json.loads(json_text(meta)),  # as it reads back from the manifest
    }
    world = distributed.current()
    with contextlib.ExitStack() as stack:
        done: dict[int, dict] = {}
        error = None
        if world.main:
            try:
                stack.enter_context(output_lock(folder))
                done = _prepare(folder, identity, force, inputs)
                write_text(folder / MANIFEST, json_text(build_manifest(identity, done)))
            except SfscError as exc:
                error = str(exc)
        if world.many:  # every rank learns the plan, or the one error, from rank 0
            shared = [done, error]
            distributed.dist.broadcast_object_list(shared, src=0)
            done, error = {int(k): v for k, v in shared[0].items()}, shared[1]
        if error:
            raise SfscError(error)
        kept = len(done)
        todo = [i for i in range(identity["shards_total"]) if i not in done]
        mine = todo[world.rank :: world.size]
        images = sum(len(records[i * size : (i + 1) * size]) for i in mine)
        with _bar(progress and world.main, images) as advance:
            for start in range(0, len(todo), world.size):
                group = todo[start : start + world.size]
                entry = None
                if world.rank < len(group):
                    entry = _extract_shard(
                        extractor, records, group[world.rank], size, folder, meta, batch_size, advance
                    )
                entries = [entry]
                if world.many:
                    entries = [None] * world.size
                    distributed.dist.all_gather_object(entries, entry)
                for e in entries:
                    if e is not None:
                        done[e["index"]] = e
                if world.main:
                    write_text(folder / MANIFEST, json_text(build_manifest(identity, done)))
        distributed.barrier()
    manifest = build_manifest(identity, done)
    if manifest["count"] == 0:
        raise SfscError(f"split {split!r} has no readable images; check the path and --format")
    return ShardsWritten(folder, manifest["count"], manifest["dim"], dtype, len(done), kept)


@contextlib.contextmanager
def _bar(show: bool, total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show, transient=True) as bar:
        task = bar.add_task("extracting", total=total)

        def advance(n: int, description: str | None = None) -> None:
            bar.update(task, advance=n, **({"description": description} if description else {}))

        yield advance


def _extract_shard(extractor, records, index, size, folder, meta, batch_size, advance) -> dict[str, Any]:
    """Extract shard ``index`` and write its two files; its manifest entry."""
    from sfsc_deploy.data.bank import build_bank

    info = extractor.info
    chunk = records[index * size : (index + 1) * size]
    step = min(batch_size, extractor.max_batch or batch_size)
    per_read = max(1, ShardSettings.read_images // step) * step
    advance(0, f"shard {index}")
    feats: list[np.ndarray] = []
    pids: list[np.ndarray] = []
    camids: list[np.ndarray] = []
    paths: list[str] = []
    for r0 in range(0, len(chunk), per_read):
        part = chunk[r0 : r0 + per_read]
        try:
            bank = build_bank(part, info.input_size, split=meta["split"], progress=False)
        except SfscError:  # every image of this part unreadable (counted on stderr): none to add
            advance(len(part))
            continue
        advance(len(part) - len(bank))
        for s in range(0, len(bank), step):
            feats.append(np.asarray(extractor.run(bank.images[s : s + step]), dtype=np.float32))
            advance(min(step, len(bank) - s))
        pids.append(bank.pids.numpy())
        camids.append(bank.camids.numpy())
        paths.extend(bank.paths)
    features = np.concatenate(feats) if feats else np.zeros((0, info.feature_dim), np.float32)
    if features.shape[1] != info.feature_dim:
        raise SfscError(
            f"{info.source} declares {info.feature_dim}-d features but gives {features.shape[1]}-d ones; "
            "its metadata does not describe it — re-export it"
        )
    if len(features):
        check_features(features, f"{info.runtime} model (width {info.width:g})")
    width = max([1, *(len(p) for p in paths)])
    ids = np.zeros(len(paths), dtype=[("pid", "<i8"), ("camid", "<i8"), ("path", f"<U{width}")])
    if paths:
        ids["pid"], ids["camid"], ids["path"] = np.concatenate(pids), np.concatenate(camids), paths
    return write_shard(folder, index, index * size, features.astype(meta["dtype"]), ids)


def write_shard(folder: Path, index: int, first_image: int, features: np.ndarray, ids: np.ndarray) -> dict:
    """Shard ``index``'s two files (features [rows, D]; ids: pid, camid, path per row), each written
    atomically; returns its manifest entry (rows, names, sizes, sha256)."""
    fname, iname = shard_names(index)
    fbytes, fsha = _write(folder, fname, np.ascontiguousarray(features))
    ibytes, isha = _write(folder, iname, ids)
    return {
        "index": index,
        "first_image": first_image,
        "rows": len(features),
        "features": fname,
        "features_bytes": fbytes,
        "features_sha256": fsha,
        "ids": iname,
        "ids_bytes": ibytes,
        "ids_sha256": isha,
    }
