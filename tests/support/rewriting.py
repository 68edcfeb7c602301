"""The simulator behind a middleware that lists hostile device uuids and unusable entries, and
answers one device's available dates malformed while asked to.

It runs on a thread of its own (its own event loop), so that ``tests/support/inproc.py`` can
run the harvester in the test's thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
from aiohttp import web

from harvester.simulator.app import STATE, build_app
from harvester.simulator.options import SimulatorOptions
from tests.support import plain_client

#: Listed names → the simulator's devices whose data they serve.
RENAMED = {"../../../../../escape": "1001", "a/b=c%d é": "1002"}
#: Whose available dates name an impossible day while ``broken_dates`` is set.
BROKEN = "1003"
JUNK = [{"uuid": "", "type": "FMD"}, {"uuid": None, "type": "SPOD"}, {"uuid": "9", "type": "X"}, 7]


class RewritingServer:
    """The simulator on a thread of its own, listing two devices under hostile names and
    four unusable entries, and answering one device's dates malformed while ``broken_dates``."""

    def __init__(self) -> None:
        self.options = SimulatorOptions(seed=5, devices=4, days=2, cadence_s=900)
        self.broken_dates = True
        self.broken_answers = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _start(self) -> str:
        app = build_app(self.options)
        data = app[STATE].data
        find = data.find
        data.find = lambda uuid, kind: find(RENAMED.get(uuid, uuid), kind)  # type: ignore[method-assign]
        original = {served: listed for listed, served in RENAMED.items()}

        @web.middleware
        async def rewrite(request: web.Request, handler: Any) -> web.StreamResponse:
            dates = request.path.endswith("DataAvailableDates") and self.broken_dates
            if dates and (await request.json()).get("DeviceId") == BROKEN:
                self.broken_answers += 1
                day = {"_id": {"year": 2024, "month": 2, "day": 30}, "count": 1, "date": "x"}
                return web.json_response([day])
            response: web.Response = await handler(request)
            if not request.path.endswith("getDevicesFromDeviceTypeAndRole"):
                return response
            assert isinstance(response.body, bytes)
            listed = orjson.loads(response.body)
            for device in listed:
                device["uuid"] = original.get(device["uuid"], device["uuid"])
            return web.json_response([*listed, *JUNK])

        app.middlewares.append(rewrite)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def __enter__(self) -> RewritingServer:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def expected_ids(url: str) -> dict[str, set[str]]:
    """Every record id of every usable listed device, by listed uuid (plain client)."""
    login = plain_client.sign_in(url, "demo@example.com", "demo")
    token = login["accessToken"]
    found: dict[str, set[str]] = {}
    for device in plain_client.list_devices(url, login):
        if not isinstance(device, dict) or device["type"] not in ("FMD", "SPOD", "RAMP"):
            continue
        if not device["uuid"]:
            continue
        ids = found.setdefault(device["uuid"], set())
        for entry in plain_client.available_dates(url, token, device["uuid"], device["type"]):
            day = plain_client.day_of(entry)
            ids.update(plain_client.collect_device_day(url, token, device, day))
    return found
