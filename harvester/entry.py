"""The ``harvester`` console script: process settings first, then the command line.

Two settings only a whole process can choose, so the library never applies them:

- **One OpenBLAS thread.** numpy's OpenBLAS starts a thread per core when numpy loads, and
  each spins for ~0.1 s of CPU before it sleeps; the harvester does no linear algebra. It is
  read from the environment when numpy loads, so it is set before ``harvester.cli`` imports.
- **glibc keeps large blocks.** Every response body (~2.5 MB at 1 Hz) and the buffers made
  from it were fresh ``mmap``s, faulted in page by page and handed back on free: ~150,000
  page faults and ~0.3 s of CPU per million records. Blocks up to 32 MiB now come from the
  heap, and up to 256 MiB of freed heap is kept for the next window. Elsewhere (musl,
  macOS) nothing changes.

A user's own ``OPENBLAS_NUM_THREADS`` or ``MALLOC_*`` settings win.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's ceiling for it on 64-bit
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


def tune_process() -> None:
    """Applies the settings above to this process (call before numpy is imported)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)


def main() -> int:
    tune_process()
    # Imported here, after the settings: numpy reads OPENBLAS_NUM_THREADS when it loads.
    from harvester.cli import main as cli_main

    return cli_main()
