"""Measure the simulator's two speed figures (prints them; asserts nothing).

Run: ``.venv/bin/python -m tests.simulator.measure_speed``

1. A 7,200-record window (two hours at a one-second cadence): time to render it cold
   (no cache), in process, and the round trip of the same request over HTTP.
2. Small requests per second: the simulator alone in a child process, loaded by an aiohttp
   client with 32 connections asking small record windows. Besides the wall-clock rate (which
   the load generator on the same machine limits), it reports requests per CPU-second of the
   server process: what one core of the simulator sustains.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import time
from typing import Any

import aiohttp

from harvester.simulator.data import SimulatedData
from harvester.simulator.fleet import SimDevice
from harvester.simulator.options import SimulatorOptions
from harvester.simulator.server import running_simulator

OPTIONS = SimulatorOptions(devices=6, days=30, cadence_s=1)
CREDENTIALS = {"email": "demo@example.com", "password": "demo"}


def cold_window_ms() -> list[float]:
    data = SimulatedData(OPTIONS)
    timings = []
    for device in data.devices:
        first = device.timeline.first or 0
        for hour in range(2, 12, 2):
            start = first - first % 86_400 + 86_400 + hour * 3600
            began = time.perf_counter()
            _, count = data.window(device, start, start + 7200)
            timings.append((time.perf_counter() - began) * 1000)
            assert count in (0, 7201) or count < 7201
    return timings


def _full_window() -> tuple[SimDevice, int]:
    """A device and a window start where all 7,201 records of a 2 h window exist."""
    data = SimulatedData(OPTIONS)
    for device in data.devices:
        for hour in range(24, 24 * OPTIONS.days, 2):
            start = (device.timeline.first or 0) // 86_400 * 86_400 + hour * 3600
            if data.window(device, start, start + 7200)[1] == 7201:
                return device, start
    raise RuntimeError("no complete 2 h window in the fleet")


def _serve(queue: Any) -> None:
    async def serve() -> None:
        async with running_simulator(OPTIONS) as url:
            queue.put(url)
            await asyncio.Event().wait()

    asyncio.run(serve())


async def _load(url: str, seconds: float) -> tuple[int, float, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        async with session.post(url + "/users/signin", json=CREDENTIALS) as response:
            token = (await response.json())["accessToken"]
        headers = {"Authorization": f"Bearer {token}"}
        path = url + "/sensors-data/getFMDDeviceLogForGivenHour"
        device, start = _full_window()
        begin = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start))
        end = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + 7200))
        big = {"DeviceId": device.uuid, "StartDate": begin, "EndDate": end}
        route = url + f"/sensors-data/get{device.type}DeviceLogForGivenHour"
        began = time.perf_counter()
        async with session.post(route, json=big, headers=headers) as response:
            raw = await response.read()
        big_ms = (time.perf_counter() - began) * 1000
        records = raw.count(b'"_id"')
        assert records == 7201, records
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker(n: int) -> None:
            nonlocal done
            minute = 0
            while time.perf_counter() < deadline:
                minute = (minute + 1) % 600
                body = {
                    "DeviceId": "1001",
                    "StartDate": f"2024-01-{3 + n % 20:02d} {minute // 60:02d}:{minute % 60:02d}:00",  # noqa: E501 -- a literal request body
                    "EndDate": f"2024-01-{3 + n % 20:02d} {minute // 60:02d}:{minute % 60:02d}:01",
                }
                async with session.post(path, json=body, headers=headers) as response:
                    await response.read()
                    done += response.status == 200

        began = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(32)))
        return done, time.perf_counter() - began, big_ms


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    timings = cold_window_ms()
    print(
        f"cold 7,200-record window render: median {statistics.median(timings):.1f} ms, "
        f"min {min(timings):.1f} ms, max {max(timings):.1f} ms over {len(timings)} windows"
    )
    queue: Any = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(queue,))
    server.start()
    try:
        url = queue.get(timeout=30)
        assert server.pid is not None
        cpu_before = _cpu_seconds(server.pid)
        done, elapsed, big_ms = asyncio.run(_load(url, 5.0))
        cpu = _cpu_seconds(server.pid) - cpu_before
        print(f"7,200-record window over HTTP (cold, round trip): {big_ms:.1f} ms")
        print(f"small requests: {done} in {elapsed:.1f} s = {done / elapsed:.0f} requests/s")
        print(f"server CPU {cpu:.2f} s: {done / max(cpu, 1e-9):.0f} requests per CPU-second")
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()
