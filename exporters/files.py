"""Atomic file and directory writes, and file hashes: the file handling both packages share.

Written once here, in the lower layer, so an interrupted run never leaves a half-written artifact
whichever package wrote it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists (another user's) or not a pid we can judge: leave its files alone
    return True


def sweep_stale(path: Path) -> None:
    """Remove what a killed writer of ``path`` left beside it: temp files and folders (and a moved
    old copy) named with a process id that no longer runs. A live writer's files are kept."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:old-(\d+)|(\d+)\..*\.tmp)$")
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return
    for entry in siblings:
        m = pattern.match(entry.name)
        if not m or _alive(int(m.group(1) or m.group(2))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."  # the pid lets a later run tell a killed writer's leftovers


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = True, inputs: Inputs = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Without ``force`` the final step never replaces a file that appeared meanwhile (another run
    writing the same output): that run wins and this one fails with one line.
    """
    path = Path(path)
    check_overwrite(path, force, inputs)
    _check_parent(path)
    sweep_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a normal file follows umask
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp_path, path)
        else:
            try:
                os.link(tmp_path, path)  # atomic and never clobbers, unlike rename
            except FileExistsError:
                raise UserError(
                    f"{path} appeared while this command ran (another run writing it?); nothing was "
                    "replaced; pass --force or choose another path"
                ) from None
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
def output_lock(path: Path) -> Iterator[None]:
    """Hold ``path`` for this process alone while it is written; a second writer fails at once.

    An advisory lock on a hidden ``.NAME.lock`` beside it, removed when done (the lock dies with
    a killed process). Without ``fcntl`` (Windows) the ``filelock`` package does the same but
    leaves its lock file.
    """
    lock = path.with_name(f".{path.name}.lock")
    busy = UserError(
        f"another sfsc-deploy command is writing {path} right now; wait for it to finish or choose "
        "another --out"
    )
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        from filelock import FileLock, Timeout

        try:
            with FileLock(str(lock), timeout=0):
                yield
        except Timeout:
            raise busy from None
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino  # not a file its last holder removed
        except (BlockingIOError, FileNotFoundError):
            same = False
        if not same:
            raise busy
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock)  # while still held, so nobody locks a removed file and thinks it theirs
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False, inputs: Inputs = ()) -> Iterator[Path]:
    """Yield a temporary directory; it replaces ``path`` as a whole only if the block succeeds.

    Never onto an input or a folder holding one; onto a non-empty folder only with ``force`` and
    only when everything in it was written there by sfsc-deploy (its ``OWNED`` list). One writer at
    a time (``output_lock``); a killed writer's leftovers are removed first.
    """
    path = Path(path)
    check_output_dir(path, force, inputs)
    with output_lock(path):
        check_output_dir(path, force, inputs)  # again, now that nobody else can be writing it
        sweep_stale(path)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
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


def json_text(data: object, indent: int | None = 2) -> str:
    """Strict JSON for every file we write: NaN and inf become null, never the bare ``NaN`` that
    other JSON readers reject."""

    def clean(value: object) -> object:
        if type(value).__module__ == "numpy" and hasattr(value, "item"):
            value = value.item()  # numpy scalars: json cannot write them, and a float32 NaN hides there
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), indent=indent, allow_nan=False, ensure_ascii=False, default=str) + "\n"


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
