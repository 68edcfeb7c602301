"""Record a session with the default simulator, in the format of ``docs/recording.md``.

    .venv/bin/python scripts/record_fixture.py [--out tests/fixtures/recordings/simulator-small]

Asks what ``harvester run`` asks, the way it asks it: sign in, list every device, read each
device's available days in UTC, then every 2-hour window of each such day (``YYYY-MM-DD
HH:MM:SS``, a day's last window ending at the next midnight). One more request, a 3-hour
window, records the 400 the cap earns. Every exchange is redacted (``recording.redact``) and the
result is the same on every run: ``tests/test_replay.py`` harvests it through ``simulate
--replay``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from harvester.simulator.options import SimulatorOptions
from harvester.simulator.recording import Exchange, redact, write_recording
from harvester.simulator.server import running_simulator

#: Three devices, one of each type, two days (the second in progress), a record an hour;
#: every other option is the default.
FLEET: dict[str, Any] = {"seed": 21, "devices": 3, "days": 2, "cadence_s": 3600}
OPTIONS = SimulatorOptions(**FLEET)
EMAIL, PASSWORD = OPTIONS.email, OPTIONS.password
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/recordings/simulator-small"
#: Headers that would change from one recording to the next without saying anything.
_UNSTABLE_HEADERS = frozenset({"date", "server"})


class Recorder:
    """Sends requests to the simulator and keeps each exchange."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session
        self.token = ""
        self.exchanges: list[Exchange] = []

    async def call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        query: dict[str, str] | None = None,
        sign_in: bool = False,
    ) -> Any:
        """One request; returns its decoded JSON answer."""
        body = b"" if payload is None else orjson.dumps(payload)
        headers = {"Content-Type": "application/json"} if body else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        pairs = tuple((query or {}).items())
        async with self.session.request(
            method, self.url + path, params=pairs, data=body, headers=headers
        ) as response:
            answer = await response.read()
            kept = tuple(
                (name, value)
                for name, value in response.headers.items()
                if name.lower() not in _UNSTABLE_HEADERS
            )
            self.exchanges.append(
                Exchange(method, path, pairs, body, response.status, kept, answer, sign_in)
            )
        return orjson.loads(answer)


def _windows(day: dt.date) -> list[tuple[str, str]]:
    start = dt.datetime.combine(day, dt.time())
    edges = [start + dt.timedelta(hours=hours) for hours in range(0, 26, 2)]
    return [(f"{a:%Y-%m-%d %H:%M:%S}", f"{b:%Y-%m-%d %H:%M:%S}") for a, b in pairwise(edges)]


async def record(out: Path) -> int:
    """Record the session into ``out``; returns the number of exchanges."""
    async with (
        running_simulator(OPTIONS) as url,
        aiohttp.ClientSession() as session,
    ):
        recorder = Recorder(url, session)
        login = await recorder.call(
            "POST", "/users/signin", {"email": EMAIL, "password": PASSWORD}, sign_in=True
        )
        recorder.token = login["accessToken"]
        user = login["user"]
        query = {"DeviceType": "ALL", "Role": user["role"], "UserId": user["id"]}
        devices = await recorder.call(
            "GET", "/clients/getDevicesFromDeviceTypeAndRole", query=query
        )
        for device in devices:
            kind, body = device["type"], {"DeviceId": device["uuid"], "DeviceType": device["type"]}
            days = await recorder.call(
                "POST", f"/sensors-data/get{kind}DataAvailableDates", {**body, "Timezone": "UTC"}
            )
            for entry in days:
                day = dt.date(entry["_id"]["year"], entry["_id"]["month"], entry["_id"]["day"])
                for start, end in _windows(day):
                    window = {**body, "StartDate": start, "EndDate": end}
                    await recorder.call(
                        "POST", f"/sensors-data/get{kind}DeviceLogForGivenHour", window
                    )
        over_cap = {
            "DeviceId": devices[0]["uuid"],
            "DeviceType": devices[0]["type"],
            "StartDate": "2024-01-01 00:00:00",
            "EndDate": "2024-01-01 03:00:00",
        }
        await recorder.call(
            "POST", f"/sensors-data/get{devices[0]['type']}DeviceLogForGivenHour", over_cap
        )
    redacted = [redact(exchange, [recorder.token]) for exchange in recorder.exchanges]
    session_fields = {"recorder": "scripts/record_fixture.py", "simulator": FLEET}
    write_recording(out, redacted, session_fields)
    return len(redacted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the recording's folder")
    args = parser.parse_args()
    count = asyncio.run(record(args.out))
    print(f"{count} exchanges recorded in {args.out}")


if __name__ == "__main__":
    main()
