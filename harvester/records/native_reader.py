"""Flat records bodies read natively: ``harvester.records._flatjson`` → an Arrow table.

Parsing is most of the harvester's CPU. ``pyarrow.json`` takes 17 to 26 ms of CPU on a SPOD
window of 6,700 records (2.4 MB), and its ISO dates another cast; orjson plus a pandas
``DataFrame`` cost about as much, so no harvester built on it can be much cheaper than a
pandas script. Nearly every body is ``{"data": [flat records]}`` (numbers, texts, booleans
and nulls), and the C reader builds those columns, dates included, in about 5 ms, without
the GIL. No kept library does this: pyarrow.json, Polars and DuckDB took as long or longer,
and orjson or msgspec make a Python object per value.

The reader refuses every body it would not read exactly as pyarrow.json does (see the C
file's header), and ``parse`` then reads it with pyarrow.json. Built optionally: an
install without a C compiler reads every body with pyarrow.json.
"""

from __future__ import annotations

import re
from typing import Final

import pyarrow as pa

from harvester.errors import MalformedReplyError
from harvester.records.limits import MAX_CELLS, MAX_DEPTH, MAX_FIELDS, RELEASE_GIL_FROM_BYTES
from harvester.records.schema import TIMESTAMP

try:
    from harvester.records import _flatjson
except ImportError:
    # Installed without a C compiler. The ignore: mypy types the name as the module only.
    _flatjson = None  # type: ignore[assignment]

NATIVE: Final = _flatjson is not None

# The kinds of _flatjson.c; its "date" kind is already milliseconds since the epoch, UTC.
_NULL_KIND, _STRING_KIND = 0, 3
_KIND_TYPES: Final = {
    1: pa.int64(),
    2: pa.float64(),
    _STRING_KIND: pa.string(),
    4: TIMESTAMP,
    5: pa.bool_(),
}


# A text (to its closing quote, or to the end without one), with the ':' making it a key; or
# a bracket. The text's loop is unrolled: a run of plain bytes per step, not one byte.
_TOKEN: Final = re.compile(rb'"([^"\\]*(?:\\.[^"\\]*)*)(?:"([ \t\n\r]*:)?)?|[\[\]{}]', re.DOTALL)


def scan_shape(body: bytes, max_depth: int, max_names: int) -> tuple[int, int, int]:
    """How deep arrays and objects nest in ``body``, how many objects and how many distinct
    key names it holds, all outside texts (``_flatjson_shape.h`` says why); the scan stops
    once the depth passes ``max_depth`` or the names ``max_names``. It cannot itself recurse;
    in C when the native reader is built."""
    if _flatjson is not None:
        return _flatjson.scan_shape(body, max_depth, max_names, RELEASE_GIL_FROM_BYTES)
    return scan_shape_python(body, max_depth, max_names)


def scan_shape_python(body: bytes, max_depth: int, max_names: int) -> tuple[int, int, int]:
    """``scan_shape`` without the native reader (the fuzzer holds the two to one answer)."""
    depth = deepest = objects = 0
    names: set[bytes] = set()
    for token in _TOKEN.finditer(body):
        text = token.group()
        if text in (b"[", b"{"):
            objects += text == b"{"
            depth += 1
            deepest = max(deepest, depth)
            if deepest > max_depth:
                break
        elif text in (b"]", b"}"):
            depth -= 1
        elif token.group(2) is not None:
            names.add(token.group(1))
            if len(names) > max_names:
                break
    return deepest, objects, len(names)


def check_shape(body: bytes) -> None:
    """``MalformedReplyError`` for a body nested beyond ``MAX_DEPTH``, whose records hold
    more than ``MAX_FIELDS`` fields, or whose table would hold more than ``MAX_CELLS`` cells:
    no parser that recurses or builds a column per field may see it. The native reader
    neither recurses nor reads such a body, and a body it reads always passes this check."""
    # The envelope adds one name ("data") and one object to the records' own.
    depth, objects, names = scan_shape(body, MAX_DEPTH, MAX_FIELDS + 1)
    if depth > MAX_DEPTH:
        raise MalformedReplyError(
            f"the response nests arrays or objects more than {MAX_DEPTH} deep"
        )
    if names > MAX_FIELDS + 1:
        raise MalformedReplyError(f"the response holds more than {MAX_FIELDS} distinct field names")
    if objects * names > MAX_CELLS:
        raise MalformedReplyError(
            f"the response's {objects:,} objects of up to {names:,} fields exceed the budget "
            f"of {MAX_CELLS:,} values a window may hold"
        )


def read_flat_records(body: bytes) -> pa.Table | None:
    """The records of a ``{"data": [flat record, ...]}`` body, typed as pyarrow.json types
    them, or None when the native reader is absent or refuses the body (also when its
    records hold more than ``MAX_FIELDS`` fields or ``MAX_CELLS`` cells)."""
    if _flatjson is None:
        return None
    read = _flatjson.read_columns(body, MAX_FIELDS, MAX_CELLS, RELEASE_GIL_FROM_BYTES)
    if read is None:
        return None
    rows, columns = read
    arrays = []
    for _, kind, nulls, validity, values, chars in columns:
        if kind == _NULL_KIND:
            arrays.append(pa.nulls(rows))
            continue
        buffers = [None if validity is None else pa.py_buffer(validity), pa.py_buffer(values)]
        if kind == _STRING_KIND:
            buffers.append(pa.py_buffer(chars))
        arrays.append(pa.Array.from_buffers(_KIND_TYPES[kind], rows, buffers, null_count=nulls))
    return pa.Table.from_arrays(arrays, names=[column[0] for column in columns])
