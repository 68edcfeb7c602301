"""The native reader as tests call it: every array it builds validated in full."""

from __future__ import annotations

import pyarrow as pa

from harvester.records.native_reader import read_flat_records


def read_validated(body: bytes) -> pa.Table | None:
    """``read_flat_records(body)`` with every array of the table it builds validated in full
    (offsets, UTF-8, bitmaps, lengths) before anything else looks at it."""
    table = read_flat_records(body)
    if table is not None:
        for column in table.columns:
            for chunk in column.chunks:
                chunk.validate(full=True)
    return table
