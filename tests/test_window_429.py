"""One window answered 429 on every attempt while every other request is served (a server
refusing one costly query): the run ends within that window's own-429 budget, lists it as
failed (exit 1), stores every other window exactly, and the refusals slow the run's rate
once; the next run, against a healthy server, completes exactly."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from harvester import harvest as harvest_module
from harvester.simulator.app import build_app
from harvester.simulator.options import SimulatorOptions
from tests.support import plain_client
from tests.support.counting_gate import CountingGate
from tests.support.crash_harness import EMAIL, PASSWORD, archive_problems
from tests.support.inproc import harvest

#: The budget the runs get instead of the default 90 s, so the test ends in seconds.
BUDGET_S = 2.0
FAILED = re.compile(r"^FAILED +device (\S+) (\S+) \.\. \S+ after \d+ attempts: (.+)$", re.M)


@dataclass
class RefuseOneWindow:
    """The first records window asked for is answered 429 (with ``retry_after`` as the
    Retry-After header) every time, while ``active``; everything else is served."""

    retry_after: str
    active: bool = True
    window: tuple[str, str, str] | None = None  # (device uuid, StartDate, EndDate)
    refusals: int = 0

    async def answer(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.active and "DeviceLog" in request.path:
            body = orjson.loads(await request.read())
            asked = (str(body["DeviceId"]), body["StartDate"], body["EndDate"])
            self.window = self.window or asked
            if asked == self.window:
                self.refusals += 1
                return web.json_response(
                    {"message": "Too many requests", "statusCode": 429},
                    status=429,
                    headers={"Retry-After": self.retry_after},
                )
        response: web.StreamResponse = await handler(request)
        return response


class ServerThread:
    """The simulator with ``refuse`` in front, on its own event loop in a thread (the
    harvester's CLI must run in the main thread: it installs signal handlers)."""

    def __init__(self, refuse: RefuseOneWindow) -> None:
        self.refuse = refuse
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),))

    async def _serve(self) -> None:
        app = build_app(SimulatorOptions(seed=29, devices=3, days=2, cadence_s=600))

        @web.middleware
        async def refusing(request: web.Request, handler: Any) -> web.StreamResponse:
            return await self.refuse.answer(request, handler)

        app.middlewares.insert(0, refusing)
        site_runner = web.AppRunner(app, shutdown_timeout=0.5)
        await site_runner.setup()
        await web.TCPSite(site_runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{site_runner.addresses[0][1]}"
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await site_runner.cleanup()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(timeout=10), "the server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture(params=["86400", "soon-ish"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """One window refused with Retry-After a day, or unparseable."""
    with ServerThread(RefuseOneWindow(request.param)) as running:
        yield running


def _expected_without(
    url: str, window: tuple[str, str, str]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every record the healthy server holds, and the same without the refused window's
    (the records it alone holds: ``start <= date < end``)."""
    everything = plain_client.collect_all(url, EMAIL, PASSWORD)
    login = plain_client.sign_in(url, EMAIL, PASSWORD)
    token, (uuid, first, last) = login["accessToken"], window
    device = next(d for d in plain_client.list_devices(url, login) if str(d["uuid"]) == uuid)
    held = plain_client.fetch_window(url, token, uuid, device["type"], first, last)
    start, end = (dt.datetime.fromisoformat(t + "+00:00") for t in (first, last))
    alone = {
        r["_id"]
        for r in held
        if start <= dt.datetime.fromisoformat(r["date"].replace("Z", "+00:00")) < end
    }
    assert alone, "the refused window must hold records of its own, or the test proves nothing"
    return everything, {k: v for k, v in everything.items() if k not in alone}


def test_one_window_refused_throughout_fails_alone_and_the_next_run_completes(
    server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run 1 exits 1 naming the refused window as failed (refused on its own), with every
    other window's records exact and the gate slowed by one of its 429s only, though it
    met several; run 2 against the healthy server exits 0 with the archive exact."""
    url, refuse = server.url, server.refuse
    gates: list[CountingGate] = []

    def counting_gate(rps: float) -> CountingGate:
        gates.append(CountingGate(rps))
        return gates[-1]

    monkeypatch.setattr(harvest_module, "RequestGate", counting_gate)
    out = tmp_path / "out"

    code, stdout, stderr = harvest(url, out, "--window-429-budget-s", str(BUDGET_S))
    assert code == 1, stdout + stderr[-2000:]
    assert refuse.window is not None
    [(uuid, start, reason)] = FAILED.findall(stdout)
    assert uuid == refuse.window[0]
    assert start.replace("T", " ").startswith(refuse.window[1][:16])
    assert "refused on its own" in reason
    assert "Traceback" not in stderr
    assert refuse.refusals >= 2
    [gate] = gates
    assert gate.slowed == 1

    refuse.active = False
    everything, others = _expected_without(url, refuse.window)
    assert archive_problems(out, others) == []

    code, stdout, stderr = harvest(url, out)
    assert code == 0, stdout + stderr[-2000:]
    assert archive_problems(out, everything) == []
