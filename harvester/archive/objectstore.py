"""The storage seam on object storage (S3 and whatever else ``pyarrow.fs`` resolves).

There is no rename and no append there, and a single PUT is atomic: ``write_file`` renders the
whole object in memory and sends it in one upload to its final, deterministic key, so readers
see the old object or the new one, never a torn one (a multipart upload, used by pyarrow for
large objects, is just as atomic: the object appears on completion only). Nothing temporary is
ever visible.

The lock is a lease, because pyarrow cannot send a conditional PUT (``If-None-Match: *``): the
holder writes ``{token, owner, host, pid, expires_at}`` to the lock key, waits ``settle_s`` and
reads it back; it holds the lock only if its own token is still there, and a heartbeat thread
extends the lease every ``lease_s / 4``. A lock whose lease has expired, or that a dead process
on this same host holds, is stale and is taken over, so a crashed pod blocks others for at most
``lease_s``. What this cannot guarantee (README, "Object storage"): two starters that both read
"free" and whose PUTs are more than ``settle_s`` apart can both win; a holder paused (or cut
off) for longer than the lease loses the lock to a newcomer and only learns so at its next
heartbeat (it logs ``lock_lost``); clocks skewed by more than the lease misjudge expiry.

pyarrow and OS errors become ``StorageError`` here, one line, naming no credentials.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Final, cast

import orjson
import pyarrow as pa
import pyarrow.fs as pafs
import structlog

from harvester.archive.layout import checked_key, checked_prefix, folder_prefix
from harvester.archive.storage import LocalStorage, Storage, StorageLock
from harvester.errors import LockedError, StorageError

log = structlog.get_logger(__name__)

DEFAULT_LEASE_S: Final = 60.0
DEFAULT_SETTLE_S: Final = 1.0
_LEASE_READS: Final = 3
_LEASE_REREAD_S: Final = 0.05

# Lease tokens held by this process: a lease naming this host and pid but none of these was
# left by an earlier process that had the same pid (pid 1 of a restarted container).
_HELD_HERE: set[str] = set()

_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{12,}\b")
_KEY_VALUE_SECRET = re.compile(r"(?i)(secret|token|key|signature|credential)[^\s,;'\"]*=\S+")
_HINTS: Final = (
    (
        (
            "ACCESS_DENIED",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "Forbidden",
            "403",
            "credentials",
        ),
        "access denied: check the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "or AWS_PROFILE) and the bucket's policy",
    ),
    (
        ("NoSuchBucket", "bucket does not exist", "Bucket does not exist"),
        "the bucket does not exist: create it first, or check the name in --out",
    ),
    (
        ("NETWORK_CONNECTION", "curlCode", "onnect", "resolve host", "Timeout", "timed out"),
        "cannot reach the object store: check --s3-endpoint, the network and any proxy",
    ),
)


def local_path(location: str) -> Path | None:
    """The folder of a plain path or ``file://`` URI; None for object storage URIs."""
    scheme, sep, _ = location.partition("://")
    if not sep:
        return Path(location)
    if scheme.lower() == "file":
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(location).path))
    return None


def public_uri(location: str) -> str:
    """``location`` without user info or query (where pyarrow URIs may carry credentials)."""
    parts = urllib.parse.urlsplit(location)
    host = parts.hostname or ""
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def explain(exc: BaseException, what: str) -> StorageError:
    """One line for a pyarrow/OS error, with a hint where the cause is recognisable."""
    text = str(exc)
    if isinstance(exc, FileNotFoundError) and "bucket" not in text.lower():
        return StorageError(f"cannot {what}: no such object")
    for needles, hint in _HINTS:
        if any(needle in text for needle in needles):
            return StorageError(f"cannot {what}: {hint}")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = _KEY_VALUE_SECRET.sub(r"\1=***", _ACCESS_KEY_ID.sub("***", first))
    return StorageError(f"cannot {what}: {first[:200]}")


@contextmanager
def _translate(what: str) -> Iterator[None]:
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise explain(exc, what) from None


def open_location(
    location: str,
    s3_endpoint: str | None = None,
    *,
    lease_s: float = DEFAULT_LEASE_S,
    settle_s: float = DEFAULT_SETTLE_S,
) -> Storage:
    """The storage behind ``--out``: a folder, or object storage for any other URI.

    ``s3_endpoint`` (``http[s]://host:port``) points ``s3://`` at an S3-compatible store;
    credentials come from the standard AWS environment (variables, profiles, instance role).
    ``lease_s`` and ``settle_s`` tune the object storage lock (see the module docstring).
    """
    folder = local_path(location)
    if folder is not None:
        return LocalStorage(folder)
    shown = public_uri(location)
    with _translate(f"open {shown}"):
        if location.startswith("s3://") and s3_endpoint:
            endpoint = urllib.parse.urlsplit(s3_endpoint)
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            filesystem: pafs.FileSystem = pafs.S3FileSystem(
                endpoint_override=endpoint.netloc + endpoint.path.rstrip("/"),
                scheme=endpoint.scheme,
                region=region or "us-east-1",
                connect_timeout=10,
                request_timeout=60,
            )
            root = location.removeprefix("s3://")
        else:
            filesystem, root = pafs.FileSystem.from_uri(location)
    return ObjectStorage(filesystem, root.rstrip("/"), shown, lease_s=lease_s, settle_s=settle_s)


@dataclass(frozen=True)
class _Lease:
    token: str
    owner: str
    host: str
    pid: int
    expires_at: float

    def encode(self) -> bytes:
        return orjson.dumps(self.__dict__)


class ObjectStorage:
    """Keys live under ``root`` (``bucket/prefix``) of a ``pyarrow.fs`` filesystem.

    Every key is checked (``layout.checked_key``) before use: object stores have no
    symbolic links, so a checked key joined to the root names an object under the root.
    """

    def __init__(
        self,
        filesystem: pafs.FileSystem,
        root: str,
        uri: str,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        settle_s: float = DEFAULT_SETTLE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.filesystem = filesystem
        self.root = root
        self._uri = uri
        self.lease_s = lease_s
        self.settle_s = settle_s
        self._clock = clock

    def describe(self) -> str:
        return self._uri

    def _path(self, key: str) -> str:
        return f"{self.root}/{checked_key(key)}"

    def _shown(self, key: str) -> str:
        return f"{self._uri}/{key}"

    def write_file(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        """Render into memory, then one upload: a failing ``write`` uploads nothing."""
        buffer = io.BytesIO()
        write(buffer)
        with (
            _translate(f"write {self._shown(key)}"),
            self.filesystem.open_output_stream(self._path(key)) as out,
        ):
            out.write(buffer.getbuffer())

    def read_bytes(self, key: str) -> bytes:
        with (
            _translate(f"read {self._shown(key)}"),
            self.filesystem.open_input_stream(self._path(key)) as stream,
        ):
            return cast(bytes, stream.read())

    def open_input(self, key: str) -> BinaryIO:
        """A seekable reader (ranged GETs), so Parquet footers are read without the body."""
        with _translate(f"read {self._shown(key)}"):
            return cast(BinaryIO, self.filesystem.open_input_file(self._path(key)))

    def exists(self, key: str) -> bool:
        with _translate(f"look up {self._shown(key)}"):
            info = self.filesystem.get_file_info(self._path(key))
        return bool(info.type == pafs.FileType.File)

    def _infos(self, prefix: str, recursive: bool) -> list[pafs.FileInfo]:
        base = f"{self.root}/{checked_prefix(prefix)}".rstrip("/") if prefix else self.root
        selector = pafs.FileSelector(base, recursive=recursive, allow_not_found=True)
        with _translate(f"list {self._uri}" + (f"/{prefix}" if prefix else "")):
            return list(self.filesystem.get_file_info(selector))

    def list_files(self, prefix: str = "") -> list[str]:
        start = len(self.root) + 1
        return sorted(
            info.path[start:]
            for info in self._infos(prefix, recursive=True)
            if info.type == pafs.FileType.File
        )

    def list_folders(self, prefix: str = "") -> list[str]:
        prefix = folder_prefix(prefix)
        start = len(self.root) + 1
        return sorted(
            f"{info.path[start:]}/"
            for info in self._infos(prefix, recursive=False)
            if info.type == pafs.FileType.Directory
        )

    def top_level_names(self) -> list[str]:
        """Names directly under the root (files and folders), to recognise a foreign prefix."""
        return sorted(info.base_name for info in self._infos("", recursive=False))

    def delete(self, key: str) -> None:
        try:
            self.filesystem.delete_file(self._path(key))
        except FileNotFoundError:
            return
        except (OSError, pa.ArrowException) as exc:
            raise explain(exc, f"delete {self._shown(key)}") from None

    # ------------------------------------------------------------ lock

    def _read_lease(self, key: str) -> _Lease | None:
        """The lease stored at ``key``; None when absent or unreadable (treated as free)."""
        if not self.exists(key):
            return None
        for attempt in range(_LEASE_READS):
            try:
                return _Lease(**orjson.loads(self.read_bytes(key)))
            except StorageError:
                if self.exists(key):
                    raise
                return None
            except (orjson.JSONDecodeError, TypeError):
                # A read is a size look-up then a ranged GET: racing a renewal, it can return
                # the new lease cut to the old one's length. Only a lease that stays
                # unreadable is garbage.
                if attempt + 1 < _LEASE_READS:
                    time.sleep(_LEASE_REREAD_S)
        log.warning("lock_unreadable", key=key, detail="treated as stale and replaced")
        return None

    def _is_stale(self, lease: _Lease) -> bool:
        if lease.expires_at <= self._clock():
            return True
        if lease.host != socket.gethostname() or lease.token in _HELD_HERE:
            return False
        return lease.pid == os.getpid() or not _process_alive(lease.pid)

    def _write_lease(self, key: str, lease: _Lease) -> None:
        body = lease.encode()
        self.write_file(key, lambda handle: handle.write(body))

    def acquire_lock(self, key: str, owner: str) -> StorageLock:
        current = self._read_lease(key)
        if current is not None and not self._is_stale(current):
            raise LockedError(_locked_message(self._uri, current, self._clock()))
        if current is not None:
            log.warning("lock_taken_over", key=key, stale_owner=current.owner)
        lease = _Lease(
            token=secrets.token_hex(8),
            owner=owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            expires_at=self._clock() + self.lease_s,
        )
        self._write_lease(key, lease)
        time.sleep(self.settle_s)
        back = self._read_lease(key)
        if back is None or back.token != lease.token:
            raise LockedError(
                _locked_message(self._uri, back, self._clock())
                if back is not None
                else f"{self._uri}: the lock vanished while taking it; run again"
            )
        _HELD_HERE.add(lease.token)
        return _LeaseLock(self, key, lease)


def _locked_message(uri: str, lease: _Lease, now: float) -> str:
    left = max(0, round(lease.expires_at - now))
    return (
        f"{uri} is in use by {lease.owner}; wait for it to finish, or, if it crashed, "
        f"for its lease to expire (in {left} s), or choose another --out"
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _LeaseLock:
    """A held lease; a daemon thread renews it until ``release``."""

    def __init__(self, storage: ObjectStorage, key: str, lease: _Lease) -> None:
        self._storage = storage
        self._key = key
        self._lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-{key}", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        storage = self._storage
        while not self._stop.wait(storage.lease_s / 4):
            try:
                current = storage._read_lease(self._key)
                if current is None or current.token != self._lease.token:
                    log.error(
                        "lock_lost",
                        key=self._key,
                        holder=current.owner if current else None,
                        detail="another run took the lease over; stop this run",
                    )
                    return
                self._lease = replace(self._lease, expires_at=storage._clock() + storage.lease_s)
                storage._write_lease(self._key, self._lease)
            except StorageError as exc:
                log.warning("lock_renewal_failed", key=self._key, error=str(exc))

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        storage = self._storage
        _HELD_HERE.discard(self._lease.token)
        current = storage._read_lease(self._key)
        if current is not None and current.token == self._lease.token:
            storage.delete(self._key)
