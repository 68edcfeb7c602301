"""The one exception tree of the harvester.

Every failure the harvester knows about is a ``HarvesterError``. aiohttp and OS errors are
translated into it at one boundary (the client for the network, the storage seam for disks),
and the CLI maps the classes below to exit codes::

    HarvesterError
    ├── ConfigError                 bad option, config key, date, zone, URL       → exit 2
    ├── AuthError                   sign-in refused, 401 after a fresh sign-in     → exit 3
    ├── RemoteError                 the server or the network misbehaved
    │   ├── RetryableError          worth another attempt after a back-off
    │   │   ├── RateLimitedError    HTTP 429 (carries Retry-After when sent)
    │   │   ├── ServerError         HTTP 5xx
    │   │   ├── TransportError      reset, refused, timeout, DNS/TLS trouble mid-run
    │   │   └── ShapeError          a 200 whose body is not the documented shape
    │   │       └── MalformedReplyError  complete JSON of the wrong shape: retried once
    │   └── FatalRemoteError        no retry can help (4xx other than 401/429)
    │       └── ServerUnreachableError  nothing listens at the base URL (at start-up)
    ├── StorageError                the output folder cannot be read or written    → exit 2
    │   ├── LockedError             another run holds the lock on OUT              → exit 2
    │   └── IncompatibleCheckpointError  checkpoint written by another version     → exit 2
    ├── Interrupted                 SIGINT/SIGTERM: drained, checkpoint saved      → exit 130
    └── InternalError               an exception nobody foresaw (a bug, a library's own
                                    error, MemoryError), named with where it struck → exit 1

A ``RemoteError`` that escapes a run (e.g. while listing devices) exits 1.
"""

from __future__ import annotations

from typing import ClassVar


class HarvesterError(Exception):
    """Root of every error the harvester raises on purpose."""


class ConfigError(HarvesterError):
    """A configuration, option or input problem the user can fix."""


class AuthError(HarvesterError):
    """The service refused our credentials or a freshly issued token."""


class RemoteError(HarvesterError):
    """The server or the network between us misbehaved."""


class RetryableError(RemoteError):
    """A transient remote failure: another attempt after a back-off may succeed."""


class RateLimitedError(RetryableError):
    """HTTP 429. ``retry_after`` is the server's hint in seconds, when it sent one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(RetryableError):
    """HTTP 5xx."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class TransportError(RetryableError):
    """Connection reset or refused, timeout, or a broken response stream."""


class ShapeError(RetryableError):
    """A 200 whose body is not the documented shape (truncated JSON, missing ``data``)."""


class MalformedReplyError(ShapeError):
    """A complete, valid JSON document of the wrong shape (not a list, a bad entry).

    Unlike a body cut off mid-way, this is what the server means to answer: asked again it
    answers the same. It is retried once only (``harvester.fetch.retrying``), in case it was a
    one-off glitch, such as a proxy's JSON error page served with a 200.
    """

    max_attempts: ClassVar[int] = 2


class FatalRemoteError(RemoteError):
    """A remote failure that no retry can fix (e.g. HTTP 400 for a malformed request)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerUnreachableError(FatalRemoteError):
    """Nothing answers at the base URL, or it is not the SENSIT API (e.g. an HTML page)."""


class StorageError(HarvesterError):
    """The output location cannot be read or written (permissions, disk full, foreign files)."""


class LockedError(StorageError):
    """Another run holds the lock on the output location."""


class IncompatibleCheckpointError(StorageError):
    """The checkpoint was written by an incompatible version of the harvester."""


class Interrupted(HarvesterError):
    """The run was stopped by a signal after draining and saving the checkpoint."""


class InternalError(HarvesterError):
    """An exception the harvester did not foresee, caught where it struck.

    The run stops as on a signal (in-flight windows drain, the struck day stays
    un-checkpointed) and exits 1; the message names the exception and the device-day, and the
    original is chained (``-v`` prints its traceback).
    """

    def __init__(self, cause: BaseException, where: str) -> None:
        super().__init__(f"unexpected {type(cause).__name__} {where}: {cause}")
        self.where = where
        self.__cause__ = cause
