"""Running the simulator: in the current event loop, or in the foreground until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from harvester.simulator.app import build_app
from harvester.simulator.options import SimulatorOptions
from harvester.simulator.recording import read_recording
from harvester.simulator.replay import build_replay_app

log = structlog.get_logger(__name__)

#: How long shutdown waits for requests in flight (slow faults are woken up at once).
_SHUTDOWN_GRACE_S = 2.0


@contextlib.asynccontextmanager
async def running_simulator(options: SimulatorOptions) -> AsyncIterator[str]:
    """Serve the simulator in the current event loop; yields its base URL.

    ``options.port`` 0 picks a free port. Raises ``ConfigError`` for invalid options or a
    ``replay`` recording that cannot be read.
    """
    options.validate()
    if options.replay is None:
        app = build_app(options)
    else:
        app = build_replay_app(read_recording(options.replay))
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=_SHUTDOWN_GRACE_S,
    )
    await runner.setup()
    try:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((options.host, options.port))
        site = web.SockSite(runner, listener, backlog=1024)
        await site.start()
        host, port = listener.getsockname()[:2]
        url = f"http://{host}:{port}"
        log.info(
            "simulator_listening",
            host=host,
            port=port,
            seed=options.seed,
            replay=str(options.replay) if options.replay else None,
        )
        yield url
    finally:
        await runner.cleanup()


async def serve_until_signalled(options: SimulatorOptions, announce: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM; ``announce`` receives the URL once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_simulator(options) as url:
            announce(url)
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    log.info("simulator_stopped")
