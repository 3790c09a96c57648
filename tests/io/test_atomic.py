"""Atomic output: all files or none, usual permissions, errors naming the user's path."""

import errno
import os
import stat
from pathlib import Path

import pytest

from embsurgeon.errors import OutputError
from embsurgeon.io.atomic import atomic_paths, check_writable, default_mode


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_all_with_the_umask_mode(tmp_path, umask_022):
    a, b = tmp_path / "a.bin", tmp_path / "b.txt"
    with atomic_paths(a, b) as (ta, tb):
        assert ta.parent == tmp_path and ta.name.startswith(".a.bin.")
        ta.write_bytes(b"1")
        tb.write_text("2")
    assert a.read_bytes() == b"1" and b.read_text() == "2"
    assert mode(a) == mode(b) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt"]


def test_other_umask_and_force_keep_usual_mode(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    target.chmod(0o600)
    old = os.umask(0o027)
    try:
        assert default_mode() == 0o640 and default_mode(directory=True) == 0o750
        with atomic_paths(target, force=True) as (temp,):
            temp.write_text("new")
    finally:
        os.umask(old)
    assert target.read_text() == "new" and mode(target) == 0o640


def write(targets, body, *, force=False):
    """Run ``body(temps)`` inside one atomic group."""
    with atomic_paths(*targets, force=force) as temps:
        body(temps)


def boom(temps):
    temps[0].write_text("half")
    raise RuntimeError("boom")


def test_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        write([tmp_path / "a", tmp_path / "b"], boom)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path):
    (tmp_path / "a").write_text("x")
    with pytest.raises(OutputError, match=r"a already exists; pass --force to overwrite it"):
        check_writable([tmp_path / "a"], force=False)
    check_writable([tmp_path / "a"], force=True)


def test_directory_is_not_a_file_name(tmp_path):
    with pytest.raises(OutputError, match=r"is a directory; give a file name"):
        check_writable([tmp_path], force=True)


def test_missing_parent(tmp_path):
    with pytest.raises(OutputError, match=r"directory .*nope does not exist; create it first"):
        check_writable([tmp_path / "nope" / "a"], force=False)


def test_appeared_while_writing_renames_none(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"

    def race(temps):
        for temp in temps:
            temp.write_text("ours")
        b.write_text("someone else")

    with pytest.raises(OutputError, match=r"b appeared while writing; pass --force"):
        write([a, b], race)
    assert not a.exists() and b.read_text() == "someone else"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_error_names_the_target_not_the_temporary_file(tmp_path):
    target = tmp_path / "p1.json"

    def directory_appears(temps):
        temps[0].write_text("{}")
        target.mkdir()  # renaming a file onto a non-empty directory fails
        (target / "x").write_text("x")

    with pytest.raises(OutputError) as info:
        write([target], directory_appears, force=True)
    assert str(info.value).startswith(f"cannot write {target}: ")
    assert ".tmp" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["p1.json"]


def test_error_while_writing_a_temporary_file_names_the_target(tmp_path):
    target = tmp_path / "p1.json"

    def disk_full(temps):
        # What a full disk raises from the writer: the temporary file's name.
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temps[0]))

    with pytest.raises(OutputError) as info:
        write([target], disk_full)
    assert str(info.value) == f"cannot write {target}: No space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_directory_names_the_target(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match=r"cannot write .*o.txt: Permission denied"):
            write([locked / "o.txt"], lambda temps: None)
    finally:
        locked.chmod(0o700)
