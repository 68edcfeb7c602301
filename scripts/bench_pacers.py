"""asyncio-throttle beside our ``RequestGate`` (``RatePacer`` + AIMD): rate and burstiness.

    .venv/bin/python scripts/bench_pacers.py [--seconds 2]

Each contender is asked for ``R`` requests/s by 16 tasks that send as fast as they are let
through; the send times are recorded (no network). Figures: achieved rate ÷ R, and the most
sends seen in any 100 ms span beside the ideal ``ceil(R / 10)`` (a smooth pacer's burst).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
from collections.abc import Awaitable, Callable
from typing import Any

from asyncio_throttle import Throttler

from harvester.fetch.gate import RequestGate

RATES = (5, 50, 200, 500)
TASKS = 16
SPAN_S = 0.1


def _throttled(throttler: Throttler) -> Callable[[], Awaitable[None]]:
    async def turn() -> None:
        async with throttler:
            return

    return turn


CONTENDERS: dict[str, Callable[[float], Callable[[], Awaitable[None]]]] = {
    "asyncio-throttle Throttler(R, 1)": lambda r: _throttled(
        Throttler(rate_limit=int(r), period=1.0)
    ),
    "asyncio-throttle Throttler(1, 1/R)": lambda r: _throttled(
        Throttler(rate_limit=1, period=1.0 / r)
    ),
    "harvester RequestGate(R)": lambda r: RequestGate(r).wait_turn,
}


async def _sends(turn: Callable[[], Awaitable[None]], seconds: float) -> list[float]:
    """Send times (seconds from the start) of those let through before the deadline."""
    loop = asyncio.get_running_loop()
    times: list[float] = []
    started = loop.time()

    async def sender() -> None:
        while loop.time() - started < seconds:
            await turn()
            times.append(loop.time() - started)

    await asyncio.gather(*(sender() for _ in range(TASKS)))
    return sorted(t for t in times if t < seconds)


def peak_in_span(times: list[float], span: float = SPAN_S) -> int:
    """The most send times that fall within any ``span`` seconds."""
    return max(
        (bisect.bisect_right(times, t + span - 1e-9) - i for i, t in enumerate(times)), default=0
    )


def measure(name: str, rate: float, seconds: float) -> dict[str, Any]:
    times = asyncio.run(_sends(CONTENDERS[name](rate), seconds))
    # Over the whole span, start to deadline: a burst up front counts as sent.
    achieved = len(times) / seconds
    return {
        "contender": name,
        "rate": rate,
        "sent": len(times),
        "achieved_ratio": achieved / rate,
        "peak_per_100ms": peak_in_span(times),
        "ideal_per_100ms": math.ceil(rate * SPAN_S),
    }


def compare(seconds: float, rates: tuple[int, ...] = RATES) -> list[dict[str, Any]]:
    return [measure(name, rate, seconds) for rate in rates for name in CONTENDERS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    for row in compare(parser.parse_args().seconds):
        print(
            f"{row['contender']:<36} R={row['rate']:>4}  achieved {row['achieved_ratio']:.2f} R"
            f"  peak/100ms {row['peak_per_100ms']:>4} (ideal {row['ideal_per_100ms']})"
        )


if __name__ == "__main__":
    main()
