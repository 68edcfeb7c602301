"""Live progress of a run: a rich bar on a terminal, periodic ``progress`` events otherwise.

Imported only by a command that runs a harvest: rich is heavy.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

import structlog
from rich.progress import BarColumn, Progress, TextColumn

if TYPE_CHECKING:
    from harvester.harvest import RequestGate, SensitClient, WindowPool

log = structlog.get_logger(__name__)


def eta_s(*, left: int, settled: int, elapsed_s: float, backoff_left_s: float) -> float | None:
    """Seconds until the ``left`` windows are settled, or None while nothing tells.

    ``left`` counts every window neither done, failed nor abandoned: queued, in flight,
    waiting on a retry back-off, or fetched and waiting for its day's write. They settle at
    the pace seen so far (``settled`` in ``elapsed_s``), but none of them before the latest
    back-off ends (``backoff_left_s`` from now): one window told to come back in five minutes
    holds the run five minutes, however fast the others went.
    """
    if left <= 0:
        return 0.0
    if settled <= 0 or elapsed_s <= 0:
        return None
    return max(left * elapsed_s / settled, backoff_left_s)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class RunProgress:
    """Attach to a live pool with ``attach``; run ``watch()`` as a task until cancelled."""

    def __init__(self, interval_s: float = 10.0, tty: bool | None = None) -> None:
        self._interval_s = interval_s
        self._tty = sys.stderr.isatty() if tty is None else tty
        self._pool: WindowPool | None = None
        self._gate: RequestGate | None = None
        self._client: SensitClient | None = None
        self._started = time.monotonic()
        self._attached = asyncio.Event()

    def attach(self, pool: WindowPool, gate: RequestGate, client: SensitClient) -> None:
        self._pool, self._gate, self._client = pool, gate, client
        self._started = time.monotonic()
        self._attached.set()

    def _fields(self) -> dict[str, Any]:
        assert self._pool is not None
        assert self._gate is not None
        assert self._client is not None
        stats = self._pool.stats
        elapsed = max(time.monotonic() - self._started, 1e-6)
        settled = stats.windows_done + stats.windows_failed
        eta = eta_s(
            left=stats.windows_total - settled - stats.windows_abandoned,
            settled=settled,
            elapsed_s=elapsed,
            backoff_left_s=stats.backoff_ends_at - time.time(),
        )
        return {
            "windows_done": stats.windows_done,
            "windows_total": stats.windows_total,
            "failed": stats.windows_failed,
            "records": stats.records,
            "requests_per_s": round(self._client.stats.requests / elapsed, 1),
            "retries": stats.retries,
            "backing_off": stats.windows_backing_off,
            "rate_limit_rps": round(self._gate.rate, 1),
            "eta_s": None if eta is None else round(eta),
        }

    async def watch(self) -> None:
        await self._attached.wait()
        if self._tty:
            await self._watch_bar()
        else:
            while True:
                await asyncio.sleep(self._interval_s)
                log.info("progress", **self._fields())

    async def _watch_bar(self) -> None:
        columns = (
            TextColumn("[bold]windows"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[detail]}"),
            # Our own estimate: rich's would extrapolate the bar and ignore pending back-offs.
            TextColumn("eta {task.fields[eta]}"),
        )
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("harvest", total=None, detail="", eta=_clock(None))
            while True:
                fields = self._fields()
                bar.update(
                    task,
                    total=fields["windows_total"] or None,
                    completed=fields["windows_done"] + fields["failed"],
                    detail=(
                        f"{fields['records']:,} records  {fields['requests_per_s']} req/s  "
                        f"{fields['retries']} retries  {fields['backing_off']} backing off"
                    ),
                    eta=_clock(fields["eta_s"]),
                )
                await asyncio.sleep(0.5)
