"""The settings an archive is created with and keeps for life: today, its partition.

``_harvest/archive.json`` holds ``{"partition": "day"}`` or ``{"partition": "month"}``. It is
written by the first run into an empty OUT (``--partition``, default ``day``); an archive
written before the record existed is ``day``. A later run that asks for the other partition is
refused before it touches anything: one archive never mixes day and month files, which readers
could not partition and the checkpoint's "this day is in its file" could not be checked on.
"""

from __future__ import annotations

import orjson

from harvester.archive.layout import (
    ARCHIVE_KEY,
    DEFAULT_PARTITION,
    HARVEST_DIR,
    LOCK_KEY,
    PARTITIONS,
    is_temporary,
)
from harvester.archive.storage import Storage
from harvester.errors import ConfigError, StorageError


def recorded_partition(storage: Storage) -> str | None:
    """The partition recorded in ``_harvest/archive.json``; None when there is no record."""
    if not storage.exists(ARCHIVE_KEY):
        return None
    return partition_from_record(storage.read_bytes(ARCHIVE_KEY), storage.describe())


def partition_from_record(record: bytes, archive: str) -> str:
    """The partition named by the contents of ``_harvest/archive.json`` of ``archive``."""
    try:
        value = orjson.loads(record)["partition"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise StorageError(
            f"{ARCHIVE_KEY} in {archive} is unreadable ({exc}): restore it, or write "
            '{"partition": "day"} (or "month", as the folders under device_id=... show)'
        ) from None
    if value not in PARTITIONS:
        raise StorageError(
            f"{ARCHIVE_KEY} in {archive} names the partition {value!r}: "
            f"expected one of {', '.join(PARTITIONS)}"
        )
    return str(value)


def archive_partition(storage: Storage) -> str:
    """The partition of the archive in ``storage`` (``day`` when it records none)."""
    return recorded_partition(storage) or DEFAULT_PARTITION


def settle_partition(storage: Storage, requested: str | None, *, record: bool = True) -> str:
    """The partition this run writes: the recorded one, or for a new archive ``requested``
    (default ``day``), recorded when ``record``. A request for the other partition of an
    existing archive is a ``ConfigError`` (exit 2), raised before anything is written."""
    recorded = recorded_partition(storage)
    existing = recorded or (DEFAULT_PARTITION if _holds_an_archive(storage) else None)
    if existing is not None:
        if requested is not None and requested != existing:
            raise ConfigError(
                f"--partition {requested}: the archive {storage.describe()} was created with "
                f"--partition {existing}, which it keeps for life; drop the option, or choose "
                "a new --out"
            )
        if recorded is None and record:
            _record(storage, existing)
        return existing
    chosen = requested or DEFAULT_PARTITION
    if record:
        _record(storage, chosen)
    return chosen


def _record(storage: Storage, partition: str) -> None:
    body = orjson.dumps({"partition": partition}, option=orjson.OPT_INDENT_2)
    storage.write_file(ARCHIVE_KEY, lambda handle: handle.write(body))


def _holds_an_archive(storage: Storage) -> bool:
    """True when OUT already holds an archive's state or data (a lock alone is a run starting:
    every run takes its lock before this question is asked)."""
    if any(
        not key.startswith(LOCK_KEY) and not is_temporary(key)
        for key in storage.list_files(f"{HARVEST_DIR}/")
    ):
        return True
    # Data without _harvest/ (deleted by hand): the whole listing is costly on a large archive,
    # but every archive a run has written holds _harvest/ state and is answered above.
    return any(key.startswith("device_type=") for key in storage.list_files())
