import pytest

from exporters.files import atomic_dir, write_text
from sfsc_deploy.errors import SfscError


def test_failed_directory_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_parent_is_one_clear_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.access(locked, os.W_OK):  # running as root: permissions are not enforced
            pytest.skip("running as root, directory permissions are not enforced")
        with pytest.raises(SfscError, match="not writable"):
            write_text(locked / "x.json", "{}")
    finally:
        locked.chmod(0o700)


def test_files_get_normal_permissions(tmp_path):
    path = write_text(tmp_path / "a.json", "{}")
    assert path.stat().st_mode & 0o044  # readable by group/others under a normal umask


def test_parent_that_is_a_file_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SfscError, match="is a file"):
        write_text(tmp_path / "file" / "sub" / "x.json", "{}")


# a writer that is killed (SIGKILL: no cleanup runs) inside the block, as a killed export would be
_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from exporters.files import atomic_dir, atomic_path
out = Path(sys.argv[1])
if sys.argv[2] == "dir":
    with atomic_dir(out) as tmp:
        (tmp / "model.onnx").write_bytes(b"half a model")
        os.kill(os.getpid(), signal.SIGKILL)
with atomic_path(out) as tmp:
    tmp.write_bytes(b"half a file")
    os.kill(os.getpid(), signal.SIGKILL)
"""

# a writer that holds the output until told to finish, as a long export would
_SLOW_WRITER = """
import sys, time
from pathlib import Path
from exporters.files import atomic_dir
out, go = Path(sys.argv[1]), Path(sys.argv[2])
with atomic_dir(out) as tmp:
    (tmp / "model.onnx").write_bytes(b"first")
    print("writing", flush=True)
    while not go.exists():
        time.sleep(0.02)
"""


def _python(code: str, *args: str, **kwargs):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=root, **kwargs)


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_a_killed_writers_leftovers_are_removed_by_the_next_run(tmp_path, kind):
    out = tmp_path / "out"
    assert _python(_KILLED_WRITER, str(out), kind).wait() == -9
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers and all(name.startswith(".out.") for name in leftovers), leftovers
    assert not out.exists()
    if kind == "dir":
        with atomic_dir(out) as tmp:
            (tmp / "model.onnx").write_bytes(b"whole")
    else:
        write_text(out, "whole", force=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no hidden temp folder, no lock


def test_a_live_writers_temp_files_are_left_alone(tmp_path):
    import os

    from exporters.files import sweep_stale

    mine = tmp_path / f".out.{os.getpid()}.abc.tmp"  # this process is alive
    mine.mkdir()
    user = tmp_path / ".out.notes"  # not our naming: never touched
    user.write_text("keep")
    sweep_stale(tmp_path / "out")
    assert mine.exists() and user.exists()


def test_a_second_writer_of_one_folder_fails_at_once(tmp_path):
    """Two runs writing one --out: the second fails with one line; the first's output is whole."""
    import subprocess

    out, go = tmp_path / "out", tmp_path / "go"
    first = _python(_SLOW_WRITER, str(out), str(go), stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "writing"
        with pytest.raises(SfscError, match="another sfsc-deploy command is writing"):
            with atomic_dir(out, force=True) as tmp:
                (tmp / "model.onnx").write_bytes(b"second")
    finally:
        go.touch()
        assert first.wait(timeout=60) == 0
    assert (out / "model.onnx").read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "out"]


def test_a_file_that_appears_meanwhile_is_never_replaced_without_force(tmp_path):
    from exporters.files import atomic_path

    target = tmp_path / "report.json"
    with pytest.raises(SfscError, match="appeared while this command ran"):
        with atomic_path(target, force=False) as tmp:
            tmp.write_text("mine")
            target.write_text("theirs")  # another run finished first
    assert target.read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_json_files_never_hold_a_bare_nan():
    import json

    import numpy as np

    from exporters.files import json_text

    text = json_text({"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": np.int64(3)})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": 3}
