"""The simulator on a thread of its own (its own event loop), so that the harvester can run in
the test's thread (``tests/support/inproc.py``) without a simulator process to start."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from harvester.simulator.options import SimulatorOptions
from harvester.simulator.server import running_simulator


@contextlib.contextmanager
def threaded_simulator(**options: Any) -> Iterator[str]:
    """Serve ``SimulatorOptions(**options)`` on a thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    serving = running_simulator(SimulatorOptions(**options))
    try:
        url = asyncio.run_coroutine_threadsafe(serving.__aenter__(), loop).result(30)
        try:
            yield url
        finally:
            stopping = serving.__aexit__(None, None, None)
            asyncio.run_coroutine_threadsafe(stopping, loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
