"""LocalStorage: atomic durable writes, leftovers swept, one-line errors, an exclusive lock."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pytest

from harvester.archive.layout import is_temporary
from harvester.archive.storage import LocalStorage
from harvester.errors import LockedError, StorageError


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


def test_a_write_whose_temporary_another_writer_swept_is_done_again(tmp_path: Path) -> None:
    """Shards share a few keys (the schema registry). When another process's write of the
    same key sweeps this write's temporary away before its rename, the write is done again
    instead of failing the run."""
    storage = LocalStorage(tmp_path)
    calls = 0

    def write(handle: BinaryIO) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the other writer's sweep, between this write and its rename
            for temporary in tmp_path.glob(".registry.arrow.tmp-*"):
                temporary.unlink()
        handle.write(b"widened")

    storage.write_file("registry.arrow", write)
    assert calls == 2
    assert storage.read_bytes("registry.arrow") == b"widened"
    assert [p.name for p in tmp_path.iterdir()] == ["registry.arrow"]


def test_a_write_swept_every_time_is_a_storage_error(tmp_path: Path) -> None:
    """A temporary that keeps vanishing is reported, never taken for a written file."""
    storage = LocalStorage(tmp_path)

    def write(handle: BinaryIO) -> None:
        for temporary in tmp_path.glob(".registry.arrow.tmp-*"):
            temporary.unlink()

    with pytest.raises(StorageError, match="removed by another writer"):
        storage.write_file("registry.arrow", write)
    assert not (tmp_path / "registry.arrow").exists()


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


BAD_KEYS = ["../escape", "a/../../escape", "/tmp/escape", "a//b", "a\\..\\b", "a\x00b", "", "a/."]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_every_operation_refuses_a_key_that_could_leave_the_root(tmp_path: Path, key: str) -> None:
    """Writes, reads, look-ups, deletes, listings and locks all refuse an unchecked key, and
    nothing is created anywhere."""
    root = tmp_path / "out"
    storage = LocalStorage(root)
    operations = [
        lambda: storage.write_file(key, lambda h: h.write(b"x")),
        lambda: storage.read_bytes(key),
        lambda: storage.open_input(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
        lambda: storage.acquire_lock(key, "me"),
    ]
    if key:
        operations.append(lambda: storage.list_files(key + "/"))
    for operation in operations:
        with pytest.raises(StorageError, match="refusing the storage key"):
            operation()
    assert list(tmp_path.rglob("*")) == []


def test_a_symbolic_link_out_of_the_root_is_refused(tmp_path: Path) -> None:
    """A checked key that resolves outside the root through a symbolic link is refused."""
    root, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "device_type=FMD").symlink_to(elsewhere)
    storage = LocalStorage(root)
    with pytest.raises(StorageError, match="leads outside"):
        storage.write_file("device_type=FMD/x.parquet", lambda h: h.write(b"x"))
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("read", ["read_bytes", "open_input"])
@pytest.mark.parametrize("linked", ["day=2024-01-02", "day=2024-01-02/d.parquet"])
def test_a_link_below_a_folder_already_seen_is_still_refused(
    tmp_path: Path, linked: str, read: str
) -> None:
    """Once a device's folder is known to lie inside, a day folder or file made a link out
    of the root afterwards is still refused (the last two components are checked each time,
    the file's by opening it without following a link), whichever way it is read."""
    root, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    device = root / "device_type=FMD" / "device_id=1"
    (device / "day=2024-01-01").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "d.parquet").write_bytes(b"secret")
    storage = LocalStorage(root)
    storage.write_file(
        "device_type=FMD/device_id=1/day=2024-01-01/d.parquet", lambda h: h.write(b"x")
    )
    if linked.endswith(".parquet"):
        (device / "day=2024-01-02").mkdir()
        (device / linked).symlink_to(elsewhere / "d.parquet")
    else:
        (device / linked).symlink_to(elsewhere)
    with pytest.raises(StorageError, match="leads outside"):
        getattr(storage, read)("device_type=FMD/device_id=1/day=2024-01-02/d.parquet")


def test_a_link_to_a_file_inside_the_root_is_read(tmp_path: Path) -> None:
    """A file that is a link to another file inside the root is read through it, with its
    folder known or not, and a missing file is a ``StorageError`` naming it."""
    LocalStorage(tmp_path).write_file("t=a/d=1/p=1/real.bin", lambda h: h.write(b"inside"))
    storage = LocalStorage(tmp_path)
    (tmp_path / "t=a/d=1/p=1/link.bin").symlink_to(tmp_path / "t=a/d=1/p=1/real.bin")
    for _ in range(2):  # the folder unknown, then known
        with storage.open_input("t=a/d=1/p=1/link.bin") as handle:
            assert handle.read() == b"inside"
    with pytest.raises(StorageError, match=r"gone\.bin"):
        storage.open_input("t=a/d=1/p=1/gone.bin")


def test_encoded_names_with_percent_equals_and_unicode_round_trip(tmp_path: Path) -> None:
    """Keys holding '%', '=', a long segment and non-ASCII text are written, listed and read
    back under their exact names."""
    storage = LocalStorage(tmp_path)
    keys = ["device_id=a%2Fb%25/k=v.bin", "Zürich/東京.bin", "x" * 230]
    for key in keys:
        storage.write_file(key, lambda h, k=key: h.write(k.encode()))
    assert storage.list_files() == sorted(keys)
    assert [storage.read_bytes(key) for key in keys] == [key.encode() for key in keys]


def test_listing_names_every_file_below_a_prefix_sorted_and_enters_no_linked_folder(
    tmp_path: Path,
) -> None:
    """``list_files`` returns every file at any depth below the prefix as keys, sorted; a link
    to a file is listed, a link to a folder is not walked into, folders are not listed."""
    root, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    storage = LocalStorage(root)
    keys = ["d/b/2.bin", "d/a/1.bin", "d/a/c/3.bin", "e/4.bin", "top.bin"]
    for key in keys:
        storage.write_file(key, lambda h: h.write(b"x"))
    (root / "d" / "empty").mkdir()
    elsewhere.mkdir()
    (elsewhere / "inner.bin").write_bytes(b"y")
    (root / "d" / "linked").symlink_to(elsewhere)
    (root / "d" / "file-link.bin").symlink_to(root / "top.bin")
    assert storage.list_files() == sorted([*keys, "d/file-link.bin"])
    assert storage.list_files("d/a/") == ["d/a/1.bin", "d/a/c/3.bin"]
    assert storage.list_files("nowhere/") == []


def test_folder_listing_names_one_level_of_folders_as_prefixes(tmp_path: Path) -> None:
    """``list_folders`` returns the folders directly below a prefix, sorted, as prefixes ending
    in ``/`` (with or without the slash asked); files and linked folders are not among them."""
    root = tmp_path / "out"
    storage = LocalStorage(root)
    for key in ["t=b/d=2/x.bin", "t=a/d=1/y.bin", "t=a/d=3/deeper/z.bin", "t=a/file.bin"]:
        storage.write_file(key, lambda h: h.write(b"x"))
    (tmp_path / "elsewhere").mkdir()
    (root / "t=a" / "d=linked").symlink_to(tmp_path / "elsewhere")
    assert storage.list_folders() == ["t=a/", "t=b/"]
    assert storage.list_folders("t=a/") == ["t=a/d=1/", "t=a/d=3/"]
    assert storage.list_folders("t=a") == ["t=a/d=1/", "t=a/d=3/"]
    assert storage.list_folders("t=c/") == []
