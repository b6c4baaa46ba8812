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
