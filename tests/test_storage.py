"""LocalStorage: atomic durable writes, leftovers swept, one-line errors, an exclusive lock."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pytest

from harvester.errors import LockedError, StorageError
from harvester.storage import LocalStorage, is_temporary


def test_write_file_replaces_whole_content(tmp_path: Path) -> None:
    """A key written twice holds the second content, and no temporary file remains."""
    storage = LocalStorage(tmp_path)
    storage.write_file("a/b.bin", lambda h: h.write(b"one"))
    storage.write_file("a/b.bin", lambda h: h.write(b"two"))
    assert storage.read_bytes("a/b.bin") == b"two"
    assert storage.list_files() == ["a/b.bin"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    """A writer that raises leaves the previous content in place and nothing else."""
    storage = LocalStorage(tmp_path)
    storage.write_file("k.bin", lambda h: h.write(b"old"))

    def broken(handle: BinaryIO) -> None:
        handle.write(b"half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        storage.write_file("k.bin", broken)
    assert storage.read_bytes("k.bin") == b"old"
    assert storage.list_files() == ["k.bin"]


def test_leftover_of_a_killed_write_is_swept_by_the_next_write(tmp_path: Path) -> None:
    """A temporary left by a killed process disappears when its file is written again."""
    storage = LocalStorage(tmp_path)
    leftover = tmp_path / "d" / ".x.parquet.tmp-dead0001"
    leftover.parent.mkdir()
    leftover.write_bytes(b"partial")
    assert is_temporary("d/.x.parquet.tmp-dead0001")
    storage.write_file("d/x.parquet", lambda h: h.write(b"full"))
    assert not leftover.exists()
    assert storage.list_files("d/") == ["d/x.parquet"]


def test_os_errors_become_one_line_storage_errors(tmp_path: Path) -> None:
    """Writing below a file is a StorageError that says what is wrong, not an OSError."""
    (tmp_path / "file").write_text("x")
    storage = LocalStorage(tmp_path / "file")
    with pytest.raises(StorageError, match="not a folder") as info:
        storage.write_file("k.bin", lambda h: h.write(b"x"))
    assert "\n" not in str(info.value)


def test_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    """A second holder is refused with the first one's name; after release it is free."""
    storage = LocalStorage(tmp_path)
    lock = storage.acquire_lock("_harvest/lock", "run A (pid 1)")
    with pytest.raises(LockedError, match=r"in use by run A \(pid 1\)"):
        LocalStorage(tmp_path).acquire_lock("_harvest/lock", "run B")
    lock.release()
    LocalStorage(tmp_path).acquire_lock("_harvest/lock", "run B").release()
