"""Flat records bodies read natively: ``harvester._flatjson`` → an Arrow table.

Parsing is most of the harvester's CPU. ``pyarrow.json`` takes 17 to 26 ms of CPU on a SPOD
window of 6,700 records (2.4 MB), and its ISO dates another cast; orjson plus a pandas
``DataFrame`` cost about as much, so no harvester built on it can be much cheaper than a
pandas script. Nearly every body is ``{"data": [flat records]}`` (numbers, texts, booleans
and nulls), and the C reader builds those columns, dates included, in about 5 ms, without
the GIL. No kept library does this: pyarrow.json, Polars and DuckDB took as long or longer,
and orjson or msgspec make a Python object per value.

The reader refuses every body it would not read exactly as pyarrow.json does (see the C
file's header), and ``harvester.parse`` then reads it with pyarrow.json. Built optionally: an
install without a C compiler reads every body with pyarrow.json.
"""

from __future__ import annotations

import re
from typing import Final

import pyarrow as pa

from harvester.schema import TIMESTAMP

try:
    from harvester import _flatjson
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


# A text (to its closing quote, or to the end when it has none) or a bracket.
_TEXT_OR_BRACKET: Final = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def nesting_depth(body: bytes, limit: int) -> int:
    """The deepest nesting of arrays and objects in ``body`` outside texts, or ``limit + 1``
    as soon as it goes beyond ``limit``: a scan that cannot itself recurse, in C when the
    native reader is built."""
    if _flatjson is not None:
        return _flatjson.nesting_depth(body, limit)
    depth = deepest = 0
    for token in _TEXT_OR_BRACKET.finditer(body):
        bracket = token.group()
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif bracket in (b"]", b"}"):
            depth -= 1
    return deepest


def read_flat_records(body: bytes) -> pa.Table | None:
    """The records of a ``{"data": [flat record, ...]}`` body, typed as pyarrow.json types
    them, or None when the native reader is absent or refuses the body."""
    if _flatjson is None:
        return None
    read = _flatjson.read_columns(body)
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
