"""Atomic file and directory writes, and file hashes: the file handling both packages share.

Written once here, in the lower layer, so an interrupted run never leaves a half-written artifact
whichever package wrote it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import UserError


def _check_parent(path: Path) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"cannot write {path}: a parent path is a file, not a directory") from None
    except PermissionError:
        raise UserError(f"cannot create {parent}: permission denied; choose another --out") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write to {parent}: directory is not writable; choose another --out")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# every directory a command writes as a whole holds this list of what it wrote: --force replaces a
# folder only when everything in it is on that list, so it never deletes what the user put there
OWNED = ".sfsc-deploy-output.json"
Inputs = Iterable[str | os.PathLike | None]


def refuse_input_overlap(output: str | os.PathLike, inputs: Inputs) -> None:
    """An output must never be one of the command's inputs, nor a folder that holds one."""
    out = Path(output).resolve()
    for given in inputs:
        if given is None or str(given) == "synthetic":
            continue
        source = Path(given).resolve()
        if source == out or out in source.parents:
            what = "is" if source == out else "contains"
            raise UserError(
                f"--out {output} {what} the input {given}; writing there would destroy it, "
                f"choose another --out"
            )


def check_overwrite(path: str | os.PathLike, force: bool, inputs: Inputs = ()) -> None:
    """Refuse to replace an input ever, and an existing output unless the user said --force."""
    path = Path(path)
    refuse_input_overlap(path, inputs)
    if path.is_dir() and not path.is_symlink():
        raise UserError(f"{path} is a directory; --out needs a file path")
    if (path.exists() or path.is_symlink()) and not force:
        raise UserError(f"{path} already exists; pass --force to overwrite it or choose another path")


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.name != OWNED)


def _check_owned(path: Path) -> None:
    """--force onto a non-empty folder: only if every entry is something we wrote there."""
    marker = path / OWNED
    try:
        owned = set(json.loads(marker.read_text())["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        owned = None
    if owned is None:
        raise UserError(
            f"{path} is not empty and was not written by sfsc-deploy; --force only replaces a "
            f"folder it wrote; empty it or choose another --out"
        )
    foreign = [e for e in _listing(path) if e not in owned]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UserError(
            f"{path} holds files sfsc-deploy did not write ({shown}); --force will not delete "
            f"them; move them or choose another --out"
        )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = True, inputs: Inputs = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    check_overwrite(path, force, inputs)
    _check_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a normal file follows umask
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes, force: bool = True, inputs: Inputs = ()) -> Path:
    with atomic_path(path, force, inputs) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, force: bool = True, inputs: Inputs = ()) -> Path:
    return write_bytes(path, text.encode("utf-8"), force, inputs)


def check_output_dir(path: str | os.PathLike, force: bool, inputs: Inputs = ()) -> None:
    """What ``atomic_dir`` checks before writing, callable up front so a command fails before working."""
    path = Path(path)
    refuse_input_overlap(path, inputs)
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link; choose a real folder for --out")
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is not a directory; choose another --out")
    if path.exists() and any(path.iterdir()):
        if not force:
            raise UserError(f"{path} already exists and is not empty; pass --force to replace it")
        _check_owned(path)
    _check_parent(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False, inputs: Inputs = ()) -> Iterator[Path]:
    """Yield a temporary directory; it replaces ``path`` as a whole only if the block succeeds.

    Never onto an input or a folder holding one; onto a non-empty folder only with ``force`` and
    only when everything in it was written there by sfsc-deploy (its ``OWNED`` list).
    """
    path = Path(path)
    check_output_dir(path, force, inputs)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        (tmp / OWNED).write_text(json.dumps({"entries": _listing(tmp)}, indent=1) + "\n")
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
