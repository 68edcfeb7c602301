"""The unified schema of each device type, kept through the storage seam by many writers.

Split from the sink: the sink writes files on the schema of the moment; this module keeps
that schema (a union of write-once sources, so concurrent shards never lose each other's
fields) and the head file of each type's folder, and publishes ``<TYPE>.arrow``,
``ALL.arrow`` and ``ALL.json`` for readers (see ``SchemaRegistry``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from functools import reduce
from typing import BinaryIO, Final

import orjson
import pyarrow as pa
import structlog

from harvester.archive.layout import (
    ALL_TYPES,
    SCHEMA_PREFIX,
    SCHEMA_SUFFIX,
    UNALIGNED_SUFFIX,
    is_temporary,
    key_device,
    schema_key,
)
from harvester.archive.storage import Storage
from harvester.errors import StorageError
from harvester.records.schema import unify

log = structlog.get_logger(__name__)

_EMPTY: Final = pa.schema([])
#: A source of a type's schema: ``<TYPE>.part-<time>-<token>-<n>.arrow`` (see SchemaRegistry).
_SOURCE_MARK: Final = ".part-"
_HEAD: Final = b"head"
_COMPLETE: Final = b"complete"
#: Sources of one type beyond which ``align_files`` folds them into one.
_SOURCES_KEPT: Final = 8
_PUBLISH_ROUNDS: Final = 3


class SchemaRegistry:
    """The unified schema of each device type, and the first data file of each type's folder
    (its *head*), persisted through the storage seam.

    Shards write one archive at once, so nothing here is read, changed and written back: two
    writers doing that would lose one another's fields. Each change is a new *source*,
    ``_harvest/schema/<TYPE>.part-<time>-<token>-<n>.arrow``, written once and never changed: the
    schema its writer knew, and in its metadata the smallest data key it knew of (``head``) and
    whether that key came from a listing of the folder (``complete``: no older file lies below
    it; without one, files written before sources existed may). A type's schema is the union of
    its sources (and of ``<TYPE>.arrow``, which archives of older versions hold alone), its head
    the smallest of their heads. ``<TYPE>.arrow``, ``ALL.arrow`` and ``ALL.json`` are published
    from that union for readers, again after each widening.

    A ``<TYPE>.unaligned`` marker is written before a widening that readers cannot cast older
    files onto (a field turning from a number to text, say): ``ParquetSink.align_files`` then
    rewrites those files, not only the head.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._lock = threading.Lock()
        self._token = secrets.token_hex(4)
        self._written = 0
        self._schemas: dict[str, pa.Schema] = {}
        self._heads: dict[str, str] = {}
        self._complete: set[str] = set()
        self._folded: dict[str, set[str]] = {}
        self._unaligned: set[str] = set()
        self._conflicted: set[str] = set()
        with self._lock:
            self._reload()

    def _reload(self) -> set[str]:
        """Folds in the sources written since the last call (by any writer); returns the types
        whose schema grew."""
        grown: set[str] = set()
        unaligned: set[str] = set()
        for key in self._storage.list_files(SCHEMA_PREFIX):
            name = key.removeprefix(SCHEMA_PREFIX)
            if is_temporary(key) or "/" in name:
                continue
            if name.endswith(UNALIGNED_SUFFIX):
                unaligned.add(name.removesuffix(UNALIGNED_SUFFIX))
                continue
            device_type = name.removesuffix(SCHEMA_SUFFIX).partition(_SOURCE_MARK)[0]
            if not name.endswith(SCHEMA_SUFFIX) or device_type == ALL_TYPES:
                continue
            folded = self._folded.setdefault(device_type, set())
            if key in folded:
                continue
            folded.add(key)
            schema = self._load(key)
            if schema is not None and self._fold(device_type, schema):
                grown.add(device_type)
        self._unaligned = unaligned | self._conflicted
        return grown

    def _load(self, key: str) -> pa.Schema | None:
        try:
            return pa.ipc.read_schema(pa.py_buffer(self._storage.read_bytes(key)))
        except (pa.ArrowException, OSError, StorageError) as exc:
            # Folded into a newer source by another writer between the listing and this read.
            if not self._storage.exists(key):
                return None
            # The data files still hold every field: align_files rebuilds a lost type from them.
            log.warning("schema_file_unreadable", key=key, error=str(exc))
            return None

    def _fold(self, device_type: str, source: pa.Schema) -> bool:
        metadata = source.metadata or {}
        head = metadata.get(_HEAD)
        if head is not None:
            self._lower_head(device_type, head.decode())
        if metadata.get(_COMPLETE) == b"1":
            self._complete.add(device_type)
        current = self._schemas.get(device_type, _EMPTY)
        unified = unify(current, source.remove_metadata())
        self._schemas[device_type] = unified
        return not unified.equals(current)

    def _lower_head(self, device_type: str, key: str) -> bool:
        known = self._heads.get(device_type)
        if known is not None and known <= key:
            return False
        self._heads[device_type] = key
        return True

    def schema(self, device_type: str) -> pa.Schema:
        """The unified schema of ``device_type`` (empty when nothing was seen yet)."""
        with self._lock:
            return self._schemas.get(device_type, _EMPTY)

    def head(self, device_type: str) -> str | None:
        """The type's first data key in path order, or None when no listing has vouched for
        one (an archive of an older version, a fresh one): the key may have been deleted since."""
        with self._lock:
            return self._heads.get(device_type) if device_type in self._complete else None

    @property
    def widened(self) -> frozenset[str]:
        """Device types whose head may lag their schema: every type the archive holds, since
        another shard may have widened it meanwhile and checking costs one footer read."""
        with self._lock:
            return frozenset(name for name, schema in self._schemas.items() if schema.names)

    def unaligned(self, device_type: str) -> bool:
        """Whether a widening readers cannot cast older files onto awaits ``align_files``."""
        with self._lock:
            return device_type in self._unaligned

    def refresh(self) -> None:
        """Folds in what other writers (shards) recorded since, and publishes again what a
        concurrent writer left stale."""
        with self._lock:
            grown = self._reload()
            stale = {name for name in self._schemas if not self._published(schema_key(name))}
            if grown | stale or not self._published(schema_key(ALL_TYPES)):
                self._publish(grown | stale)

    def _published(self, key: str) -> bool:
        """Whether ``key`` holds what this registry would publish there."""
        name = key.removeprefix(SCHEMA_PREFIX).removesuffix(SCHEMA_SUFFIX)
        expected = self._all_types() if name == ALL_TYPES else self._schemas[name]
        try:
            found = pa.ipc.read_schema(pa.py_buffer(self._storage.read_bytes(key)))
        except (pa.ArrowException, OSError, StorageError):
            return False
        return bool(found.equals(expected))

    def widen(self, device_type: str, schema: pa.Schema) -> pa.Schema:
        """Unifies ``schema`` into the type's schema and records it if it grew; returns the
        type's schema (which may hold fields other writers recorded meanwhile)."""
        with self._lock:
            current = self._schemas.get(device_type, _EMPTY)
            unified = unify(current, schema)
            if unified.equals(current):
                return current
            if not readers_cast(current, unified):
                # Before the source, so that no data file on the new types exists unmarked.
                self._mark_unaligned(device_type)
                self._conflicted.add(device_type)
            self._schemas[device_type] = unified
            self._record(device_type)
            self._publish({device_type})
            added = [name for name in unified.names if name not in current.names]
            log.info("schema_widened", device_type=device_type, new_fields=added)
            return self._schemas[device_type]

    def aligned(self, device_type: str, target: pa.Schema, left: int) -> None:
        """After ``align_files`` read every file of the type: ``left`` files (other shards')
        still cannot be read on ``target``. Drops the marker when none is left, and puts it back
        when another writer widened the type meanwhile in a way readers cannot cast onto."""
        with self._lock:
            if left:
                self._mark_unaligned(device_type)
                return
            self._conflicted.discard(device_type)
            self._storage.delete(schema_key(device_type, UNALIGNED_SUFFIX))
            grown = self._reload()
            if not readers_cast(target, self._schemas.get(device_type, _EMPTY)):
                self._mark_unaligned(device_type)
            if grown:
                self._publish(grown)

    def _mark_unaligned(self, device_type: str) -> None:
        self._storage.write_file(schema_key(device_type, UNALIGNED_SUFFIX), _writer(b""))
        self._unaligned.add(device_type)

    def note_file(self, key: str) -> None:
        """Called before data file ``key`` is written: records it when it becomes its type's
        first key, so that the head stays known without listing the folder again."""
        device_type = key_device(key)[0]
        with self._lock:
            if self._lower_head(device_type, key):
                self._record(device_type)

    def found_head(self, device_type: str, key: str) -> None:
        """Records ``key``, found by listing the type's folder, as its complete head."""
        with self._lock:
            self._heads[device_type] = key
            self._complete.add(device_type)
            # The sources naming an older head (since deleted) would bring it back as the
            # smallest: fold them all into one naming this key.
            self._compact(device_type, force=True)

    def compact(self, device_type: str) -> None:
        """Folds the type's sources into one when they pile up (one per widening or new head)."""
        with self._lock:
            self._compact(device_type, force=False)

    def _compact(self, device_type: str, *, force: bool) -> None:
        # Sources never change, so deleting the ones just folded into a newer one loses
        # nothing, whoever else is reading or compacting at the same time.
        folded = self._folded.get(device_type, set())
        sources = sorted(key for key in folded if _SOURCE_MARK in key)
        if not force and len(sources) <= _SOURCES_KEPT:
            return
        kept = self._record(device_type)
        for key in sources:
            self._storage.delete(key)
        self._folded[device_type] = {key for key in folded if _SOURCE_MARK not in key} | {kept}

    def _record(self, device_type: str) -> str:
        """Writes a new source with what this registry knows of ``device_type``."""
        metadata = {}
        head = self._heads.get(device_type)
        if head is not None:
            metadata[_HEAD] = head.encode()
        if device_type in self._complete:
            metadata[_COMPLETE] = b"1"
        self._written += 1
        name = f"{_SOURCE_MARK}{time.time_ns():020d}-{self._token}-{self._written}{SCHEMA_SUFFIX}"
        key = schema_key(device_type, name)
        schema = self._schemas.get(device_type, _EMPTY).with_metadata(metadata)
        self._storage.write_file(key, _writer(schema.serialize()))
        self._folded.setdefault(device_type, set()).add(key)
        return key

    def _publish(self, device_types: set[str]) -> None:
        """Writes ``<TYPE>.arrow`` of ``device_types``, ``ALL.arrow`` and ``ALL.json``.

        Another writer may overwrite them with what it knew a moment earlier. Looking for
        newer sources after each write, and writing again when there are, makes the last write
        of all complete (sources are written before anyone publishes them); a few rounds are
        plenty, and the next widening or run publishes again anyway.
        """
        for _ in range(_PUBLISH_ROUNDS):
            try:
                for device_type in sorted(device_types):
                    key = schema_key(device_type)
                    self._storage.write_file(key, _writer(self._schemas[device_type].serialize()))
                    self._folded.setdefault(device_type, set()).add(key)
                self._publish_all_types()
            except StorageError as exc:
                # Shards writing the same key at once can sweep one another's temporary away.
                # The sources hold everything; ``refresh`` at the end of the run publishes again.
                log.warning("schema_publish_failed", error=str(exc))
                return
            device_types = self._reload()
            if not device_types:
                return

    def _all_types(self) -> pa.Schema:
        """The union of every type's schema, types in name order."""
        return reduce(unify, (schema for _, schema in sorted(self._schemas.items())), _EMPTY)

    def _publish_all_types(self) -> None:
        """Writes ``ALL.arrow`` (see ``_all_types``) and ``ALL.json``."""
        by_type = sorted(self._schemas.items())
        unified = self._all_types()
        listing = [
            {
                "name": field.name,
                "type": str(field.type),
                "device_types": [name for name, schema in by_type if field.name in schema.names],
            }
            for field in unified
        ]
        self._storage.write_file(schema_key(ALL_TYPES), _writer(unified.serialize()))
        text = orjson.dumps({"fields": listing}, option=orjson.OPT_INDENT_2)
        self._storage.write_file(schema_key(ALL_TYPES, ".json"), _writer(pa.py_buffer(text)))


def readers_cast(old: pa.Schema, new: pa.Schema) -> bool:
    """Whether readers given ``new`` (from the head file or explicitly) read a file of ``old``
    as is: pandas, pyarrow.dataset, DuckDB and Polars (``integer_cast="allow-float"``) fill a
    missing field with nulls and cast null to anything and integers to floats, but not a
    number to text for Polars, nor a nested value to text for any of them."""
    return all(
        new.get_field_index(field.name) >= 0 and _type_cast(field.type, new.field(field.name).type)
        for field in old
    )


def _type_cast(old: pa.DataType, new: pa.DataType) -> bool:
    if old.equals(new) or pa.types.is_null(old):
        return True
    if pa.types.is_integer(old):
        return bool(pa.types.is_integer(new) or pa.types.is_floating(new))
    if pa.types.is_struct(old) and pa.types.is_struct(new):
        return [f.name for f in old] == [f.name for f in new] and all(
            _type_cast(f.type, new.field(f.name).type) for f in old
        )
    if pa.types.is_list(old) and pa.types.is_list(new):
        return _type_cast(old.value_type, new.value_type)
    return False


def _writer(payload: pa.Buffer) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        handle.write(payload)

    return write
