"""The filesystem seam: everything the sink and the checkpoint write goes through ``Storage``.

Paths are relative, ``/``-separated keys under the output root. ``write_file`` is atomic
and durable: readers see the old content or the new, never a torn file. On a local disk that
is write-to-temporary + fsync + rename + fsync of the folder; on object storage (later) it is
one PUT to the final key. Temporary names start with ``.`` and do not end in ``.parquet``, so
dataset readers (pyarrow ignores ``.``/``_`` prefixes, DuckDB globs ``*.parquet``) never see
them. OS errors are translated here, and only here, into ``StorageError``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from harvester import crashpoints
from harvester.archive.layout import (
    checked_key,
    checked_prefix,
    folder_prefix,
    key_kind,
    temporary_name,
)
from harvester.errors import LockedError, StorageError

_SWEPT_ATTEMPTS = 3
#: Folders known to resolve inside the root (a fleet's device folders, a few thousand).
_REMEMBERED_FOLDERS = 65_536


class StorageLock(Protocol):
    def release(self) -> None: ...


class Storage(Protocol):
    """What the sink and the checkpoint need from where the archive lives."""

    def describe(self) -> str: ...

    def write_file(self, key: str, write: Callable[[BinaryIO], object]) -> None: ...

    def read_bytes(self, key: str) -> bytes: ...

    def open_input(self, key: str) -> BinaryIO: ...

    def exists(self, key: str) -> bool: ...

    def list_files(self, prefix: str = "") -> list[str]: ...

    def list_folders(self, prefix: str = "") -> list[str]:
        """The folders directly below ``prefix`` (empty, or ending in ``/``), sorted, each as a
        prefix ending in ``/``: a listing of one level, where ``list_files`` lists every key
        below (1.4 million for the day files of a large fleet)."""
        ...

    def delete(self, key: str) -> None: ...

    def acquire_lock(self, key: str, owner: str) -> StorageLock: ...


def _explain(exc: OSError, what: str) -> StorageError:
    if exc.errno == errno.ENOSPC:
        hint = "the disk is full; free space and run again"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "permission denied; choose a writable --out"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        hint = "a path component is a file, not a folder"
    else:
        hint = exc.strerror or type(exc).__name__
    return StorageError(f"cannot {what}: {hint}")


class _FlockLock:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class LocalStorage:
    """A folder on a local (POSIX) filesystem.

    Every key is checked (``harvester.archive.layout.checked_key``) and its path resolved (symbolic
    links followed) before use: a path that does not lie under the root is a ``StorageError``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root = str(root)
        real = os.path.realpath(root)
        self._real_root = real
        #: What a path resolving inside starts with (the root itself aside).
        self._real_prefix = real if real.endswith(os.sep) else real + os.sep
        self._folders_inside: set[str] = set()

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return Path(self._checked_path(key))

    def _checked_path(self, key: str, final_link_checked: bool = False) -> str:
        """The key's path, once it resolves inside the root; ``final_link_checked``: the
        caller opens it without following a link at its end (``O_NOFOLLOW``), so that one
        ``lstat`` is spared."""
        path = os.path.join(self._root, checked_key(key))
        if not self._resolves_inside(path, final_link_checked):
            raise self._outside(key)
        return path

    def _outside(self, key: str) -> StorageError:
        return StorageError(f"refusing the storage key {key[:120]!r}: it leads outside {self.root}")

    def _inside(self, path: Path, key: str) -> Path:
        if not self._resolves_inside(str(path)):
            raise self._outside(key)
        return path

    def _is_under_root(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self._real_root or real.startswith(self._real_prefix)

    def _resolves_inside(self, path: str, final_link_checked: bool = False) -> bool:
        """Does ``path``, links followed, lie under the root.

        Resolving costs ~160 µs (a system call per component): 2 minutes for the frames of
        700,000 day files before a resume. The folder two levels up (a device's, for a day
        file) is resolved once and remembered; the last two components are checked with
        ``lstat`` each time (the last one not, when ``final_link_checked``), and any link
        among them is resolved in full. Paths are strings: ``pathlib`` cost as much again.
        """
        folder = os.path.dirname(path)
        grandparent = os.path.dirname(folder)
        if grandparent not in self._folders_inside:
            if not self._is_under_root(path):
                return False
            if len(self._folders_inside) >= _REMEMBERED_FOLDERS:
                self._folders_inside.clear()
            if self._is_under_root(grandparent):
                self._folders_inside.add(grandparent)
            return True
        if _is_link(folder) or (not final_link_checked and _is_link(path)):
            return self._is_under_root(path)
        return True

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise _explain(exc, what) from exc

    def write_file(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        final = self._path(key)
        with self._translate(f"write {final}"):
            final.parent.mkdir(parents=True, exist_ok=True)
            # Shards share a few keys (the schema registry): another process's sweep below
            # may remove this write's temporary before its rename. The write is then done
            # again; the last complete write wins, as it would have anyway.
            for _ in range(_SWEPT_ATTEMPTS):
                if self._write_once(key, final, write):
                    break
            else:
                raise FileNotFoundError(
                    errno.ENOENT, "its temporary file was removed by another writer", str(final)
                )
            _fsync_dir(final.parent)
            # A process killed mid-write leaves its temporary behind; the file's next write
            # (a resumed run writes every day it had not checkpointed) sweeps it away.
            for leftover in final.parent.glob(temporary_name(final.name, "*")):
                leftover.unlink(missing_ok=True)
            crashpoints.tear_if_due(f"torn_{key_kind(key)}", final)

    def _write_once(self, key: str, final: Path, write: Callable[[BinaryIO], object]) -> bool:
        """One temporary-and-rename write; False when a concurrent writer of the same key
        swept the temporary away before the rename."""
        tmp = final.with_name(temporary_name(final.name, secrets.token_hex(4)))
        try:
            with open(tmp, "wb") as handle:
                write(handle)
                crashpoints.hit("write", f"write_{key_kind(key)}")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except FileNotFoundError:
            if not final.parent.is_dir():
                raise
            return False
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return True

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with self._translate(f"read {path}"):
            return path.read_bytes()

    def open_input(self, key: str) -> BinaryIO:
        """A seekable reader, so Parquet footers can be read without the whole file.

        Unbuffered: its readers ask for what they need (a footer, a column chunk), and a
        buffer would only copy it. Opened without following a link at the path's end (a link
        is then resolved and checked in full): ~13 µs a file where ``lstat``, ``pathlib`` and
        a buffered open took ~35 (a look at 700,000 day files, or ``verify`` of 1.4 M).
        """
        path = self._checked_path(key, final_link_checked=True)
        with self._translate(f"read {path}"):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                if not self._is_under_root(path):
                    raise self._outside(key) from None
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            return open(fd, "rb", buffering=0)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list_files(self, prefix: str = "") -> list[str]:
        base = self._inside(self.root / checked_prefix(prefix), prefix)
        if not base.is_dir():
            return []
        with self._translate(f"list {base}"):
            return sorted(_walk_files(str(base), base.relative_to(self.root).as_posix()))

    def list_folders(self, prefix: str = "") -> list[str]:
        prefix = folder_prefix(prefix)
        base = self._inside(self.root / checked_prefix(prefix), prefix)
        if not base.is_dir():
            return []
        with self._translate(f"list {base}"), os.scandir(base) as entries:
            return sorted(
                f"{prefix}{entry.name}/" for entry in entries if entry.is_dir(follow_symlinks=False)
            )

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._translate(f"delete {path}"):
            path.unlink(missing_ok=True)

    def acquire_lock(self, key: str, owner: str) -> StorageLock:
        path = self._path(key)
        with self._translate(f"create the lock file {path}"):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another run"
            os.close(fd)
            raise LockedError(
                f"{self.root} is in use by {holder}; wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner.encode(), 0)
        return _FlockLock(fd)


def _walk_files(folder: str, key_prefix: str) -> list[str]:
    """Keys of the files below ``folder`` (links to files included; linked folders are not
    entered, as ``Path.rglob`` did), ``key_prefix`` before each.

    ``os.scandir`` and plain strings: ``rglob`` made a ``Path`` of every entry, ~3.7 CPU-s and
    57 MB at the peak for the 50,000 files of a 1,000-device month archive (this: 0.6 s, 7 MB).
    A folder removed while it is walked has no files; any other error is the caller's.
    """
    keys: list[str] = []
    pending = [(folder, "" if key_prefix in ("", ".") else f"{key_prefix}/")]
    while pending:
        path, prefix = pending.pop()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((entry.path, f"{prefix}{entry.name}/"))
                    elif entry.is_file():
                        keys.append(prefix + entry.name)
        except FileNotFoundError:
            if path == folder:
                raise
    return keys


def _is_link(path: str | Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
