"""PURE  Storage keys: the one place server text becomes part of a path, and the one check.

Device uuids come from the server, so any text may arrive. Partition values are encoded as
Hive and Spark encode them, so that readers decode them back to the server's text: every
character outside ``[A-Za-z0-9._-]`` becomes ``%XX`` (uppercase hex of each UTF-8 byte), and
so does a leading ``.`` or ``_``. ``/``, ``\\``, ``=``, ``%``, ``:``, spaces, NUL, control and
non-ASCII characters thus never reach a path; ``.`` and ``..`` become ``%2E`` and ``%2E.``; and
no day file's name starts with ``.`` or ``_``, which dataset readers skip as hidden (and this
harvester sweeps away as temporary). ``pyarrow.dataset`` (``segment_encoding="uri"``, its
default) and DuckDB (``hive_partitioning = true``) both read ``device_id`` back decoded. A plain
uuid such as ``1041`` is its own encoding: its keys are the same as before encoding existed.

:func:`checked_key` is the proof every storage seam applies to every key before touching it:
a relative, ``/``-separated key of non-empty segments, none of them ``.`` or ``..``, with no
NUL or backslash, can only name something under the root it is joined to.
"""

from __future__ import annotations

import datetime as dt
import string
import urllib.parse
from typing import Final

from harvester.errors import StorageError

_SAFE: Final = frozenset(string.ascii_letters + string.digits + "._-")
#: Longest encoded uuid accepted. The longest name built from it, a day file's temporary
#: (``.<uuid>_YYYY-MM-DD.parquet.tmp-<8 hex>``), is this plus 33 bytes: 233, under the 255 bytes
#: ext4, XFS, APFS and NTFS allow a name; S3's 1,024-byte keys hold it twice over.
MAX_VALUE_BYTES: Final = 200
#: Longest key segment ``checked_key`` lets through: the usual file-system name limit.
MAX_SEGMENT_BYTES: Final = 255


def encode_value(text: str) -> str:
    """``text`` as a partition value: Hive-style ``%XX`` escapes (see the module docstring)."""
    return "".join(
        char
        if char in _SAFE and not (index == 0 and char in "._")
        else "".join(f"%{byte:02X}" for byte in char.encode())
        for index, char in enumerate(text)
    )


def decode_value(text: str) -> str:
    """The server's text back from a partition value written by :func:`encode_value`."""
    return urllib.parse.unquote(text)


def unusable_uuid(uuid: str) -> str | None:
    """Why ``uuid`` cannot name a device's folder, or None when it can."""
    if not uuid:
        return "empty uuid"
    size = len(encode_value(uuid).encode())
    if size > MAX_VALUE_BYTES:
        return f"uuid is {size} bytes once encoded, over the limit of {MAX_VALUE_BYTES}"
    return None


def device_prefix(device_type: str, uuid: str) -> str:
    """The folder of one device's files, ending in ``/``."""
    return f"device_type={encode_value(device_type)}/device_id={encode_value(uuid)}/"


def day_file_key(device_type: str, uuid: str, day: dt.date) -> str:
    """The storage key of a device-day's one Parquet file."""
    iso = day.isoformat()
    return f"{device_prefix(device_type, uuid)}day={iso}/{encode_value(uuid)}_{iso}.parquet"


def parse_day_key(key: str) -> tuple[str, str, dt.date] | None:
    """``(device type, uuid, day)`` of a :func:`day_file_key`, decoded; None for other keys."""
    parts = key.split("/")
    if len(parts) != 4 or not parts[3].endswith(".parquet"):
        return None
    names = ("device_type=", "device_id=", "day=")
    if not all(part.startswith(name) for part, name in zip(parts, names, strict=False)):
        return None
    try:
        day = dt.date.fromisoformat(parts[2].removeprefix("day="))
    except ValueError:
        return None
    device_type, uuid = (decode_value(p.split("=", 1)[1]) for p in parts[:2])
    return device_type, uuid, day


def checked_key(key: str) -> str:
    """``key`` itself, once proven to stay under the root; ``StorageError`` otherwise."""
    problem = _key_problem(key)
    if problem is not None:
        raise StorageError(f"refusing the storage key {key[:120]!r}: {problem}")
    return key


def checked_prefix(prefix: str) -> str:
    """A listing prefix (empty, or a key that may end in ``/``) checked as :func:`checked_key`."""
    if prefix:
        checked_key(prefix.removesuffix("/"))
    return prefix


def _key_problem(key: str) -> str | None:
    if not key:
        return "it is empty"
    if "\x00" in key:
        return "it holds a NUL character"
    if "\\" in key:
        return "it holds a backslash"
    if key.startswith("/"):
        return "it is absolute"
    for segment in key.split("/"):
        if not segment:
            return "it has an empty segment"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            return f"a segment is longer than {MAX_SEGMENT_BYTES} bytes"
    return None
