"""In-process simulator helpers for the simulator's own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from harvester.simulator.options import SimulatorOptions
from harvester.simulator.server import running_simulator


class Api:
    """A thin aiohttp caller bound to one running simulator."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session
        self.token = ""
        self.user: dict[str, Any] = {}

    async def sign_in(self, email: str = "demo@example.com", password: str = "demo") -> None:
        status, answer = await self.post("/users/signin", {"email": email, "password": password})
        assert status == 200, answer
        self.token, self.user = answer["accessToken"], answer["user"]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(self.url + path, json=body, headers=self.headers()) as r:
            return r.status, await r.json(content_type=None)

    async def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.session.get(self.url + path, params=params, headers=self.headers()) as r:
            return r.status, await r.json(content_type=None)

    async def devices(self, device_type: str = "ALL") -> list[dict[str, Any]]:
        params = {"DeviceType": device_type, "Role": "SystemAdministrator", "UserId": ""}
        params["UserId"] = self.user["id"]
        status, answer = await self.get("/clients/getDevicesFromDeviceTypeAndRole", params)
        assert status == 200, answer
        return list(answer)

    async def dates(self, uuid: str, device_type: str, zone: str = "UTC") -> list[Any]:
        body = {"DeviceId": uuid, "DeviceType": device_type, "Timezone": zone}
        status, answer = await self.post(f"/sensors-data/get{device_type}DataAvailableDates", body)
        assert status == 200, answer
        return list(answer)

    async def window(self, uuid: str, device_type: str, start: str, end: str) -> list[Any]:
        body = {"DeviceId": uuid, "DeviceType": device_type, "StartDate": start, "EndDate": end}
        status, answer = await self.post(
            f"/sensors-data/get{device_type}DeviceLogForGivenHour", body
        )
        assert status == 200, answer
        return list(answer["data"])

    async def stats(self) -> dict[str, Any]:
        _, answer = await self.get("/__sim/stats")
        return dict(answer)


@asynccontextmanager
async def api_for(**options: Any) -> AsyncIterator[Api]:
    """A signed-in ``Api`` on a fresh in-process simulator with ``options``."""
    async with (
        running_simulator(SimulatorOptions(**options)) as url,
        aiohttp.ClientSession() as session,
    ):
        api = Api(url, session)
        await api.sign_in()
        yield api
