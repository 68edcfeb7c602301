"""Every number that decides how a records body is read, with the reason for each.

Two kinds: the sizes that choose *where* a body is read and *by which reader* (trade-offs
of speed; any value reads every body alike), and the bounds beyond which a body is refused
(safety; a body past one is a ``MalformedReplyError`` from every reader). The pool, ``parse``,
``native_reader`` and the C reader (which is passed its value, it holds none of its own) all
read them from here. Figures from a 2-core machine (2026-12); ``scripts/bench_datapath.py``
measures them again.
"""

from __future__ import annotations

from typing import Final

# -- where, and by which reader: speed only ----------------------------------------------------

#: Bodies up to this size are read on the event loop, larger ones in a worker thread. Reading
#: a window of a few records costs 50 to 150 µs (native reader), under 1 ms by any reader;
#: handing it to a thread costs more than that in wall time, since the thread must win the
#: GIL back from the loop (up to the 5 ms switch interval) each time it re-acquires it.
INLINE_PARSE_MAX_BYTES: Final = 32 * 1024

#: The native reader lets go of the GIL while it reads a body of at least this size. On the
#: event loop, handing the GIL over for a read of some 100 µs can cost a wait of a whole
#: switch interval to get it back from a writer thread, so no body read there lets go of it
#: (this is above ``INLINE_PARSE_MAX_BYTES``). In a thread, a body below it blocks the loop
#: for at most ~110 µs (the read of 64 KiB, mostly fixed per-call costs) and spares the
#: thread that wait; a 2.5 MB window (2.7 ms) lets the loop run meanwhile.
RELEASE_GIL_FROM_BYTES: Final = 64 * 1024

#: Of the bodies the native reader refuses (nested values, escapes, mixed kinds), those up to
#: this size are read by orjson and ``pa.array`` (the object path), larger ones by
#: ``pyarrow.json``. pyarrow.json costs ~0.3 ms however small the body; the object path makes
#: a Python object per value. Measured on a refused body of 9 fields a record, the two cross
#: between 12 and 16 KiB (~0.55 ms and ~0.7 ms each); at 32 KiB the object path costs 1.1 ms
#: against 0.6 ms.
SMALL_BODY_MAX_BYTES: Final = 16 * 1024

# -- bounds: beyond them a body is refused -----------------------------------------------------

#: How deep arrays and objects may nest. pyarrow.json, json and parse.py's builders recurse
#: once per level of nesting: pyarrow.json overflows the C stack (SIGSEGV) somewhere between
#: 5,000 and 20,000 levels on an 8 MiB stack (less on a smaller thread stack), json raises
#: RecursionError near 1,000, orjson refuses beyond 1,024 and, writing a nested value as text
#: (json_text), beyond 255. A records body is 3 levels deep (envelope, list, flat record), and
#: the API documents nothing deeper than one nested object; 64 leaves any plausible nested
#: value 61 levels while staying far below every limit above, whatever the thread's stack.
MAX_DEPTH: Final = 64

#: The most fields the records of one body may hold, and the most cells (objects x distinct
#: names, the envelope counted as one of each) its table may have. A 2-hour SPOD window at
#: 1 Hz holds 18 fields and 137,000 cells; a body at the default response cap (32 MiB) of
#: such records about 1.8 million. Beyond 4 million cells the body is refused: the native
#: reader then holds at most ~72 MB of columns (twice the cells, 9 bytes each, while they
#: grow), where it took 108 MB more for one record of 300 fields, and pyarrow.json ~500 MB
#: for a 450 KB body of 8,000 records of a new field each; every reader of the table after it
#: is bounded alike.
MAX_FIELDS: Final = 4096
MAX_CELLS: Final = 4_000_000
