"""The request gate: every request to the API waits for its slot at the adaptive rate.

One gate per run is shared by discovery, the pool and ``verify``, so the account's rate is
spent once however many callers there are. The decisions (the rate, the slots, whose 429 it
was) are the PURE ``harvester.fetch.pacing``; this module only waits and counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, TypeVar

from harvester.errors import RateLimitedError
from harvester.fetch.backoff import OwnRateLimitedError
from harvester.fetch.pacing import AdaptiveRate, RateLimitJudge, RatePacer

T = TypeVar("T")

#: Request slots due sooner than this are not waited for (see ``RequestGate.wait_turn``).
MIN_PACING_SLEEP_S: Final = 0.001


class RequestGate:
    """Paces every request to the adaptive rate: one slot per request, no bursts.

    Only the account's 429s slow the rate: a request may name its key (the pool's window),
    and a 429 that the judge finds to be that key's own is raised as ``OwnRateLimitedError``
    for the retry policy to weigh against its budget, leaving the rate alone.
    """

    def __init__(self, rps: float) -> None:
        self._adaptive = AdaptiveRate(ceiling=rps)
        self._pacer = RatePacer(rps)
        self._judge = RateLimitJudge()
        # One booking at a time: a slot handed out cannot be moved, so without the lock every
        # worker would hold a slot booked ahead and a rate cut would act only seconds later.
        self._turn = asyncio.Lock()

    @property
    def rate(self) -> float:
        return self._adaptive.rate

    async def wait_turn(self) -> None:
        async with self._turn:
            wait = self._pacer.reserve(asyncio.get_running_loop().time())
            # A sleep always costs a loop iteration while the lock is held, and every other
            # worker queues behind it: a wait shorter than a timer can keep is sent at once.
            # The slots stay booked, so the long-run rate is unchanged.
            if wait >= MIN_PACING_SLEEP_S:
                await asyncio.sleep(wait)

    async def send(self, request: Callable[[], Awaitable[T]], key: Hashable | None = None) -> T:
        """``request()`` in its turn; the account's 429s slow the rate, a success lets it grow
        again. A 429 judged ``key``'s own is raised again as an ``OwnRateLimitedError``."""
        await self.wait_turn()
        try:
            result = await request()
        except RateLimitedError as error:
            if self._judge.on_rate_limited(key):
                raise OwnRateLimitedError(str(error), error.retry_after) from error
            self.on_rate_limited()
            raise
        self._judge.on_success(key)
        self.on_success()
        return result

    def on_success(self) -> None:
        now = asyncio.get_running_loop().time()
        self._pacer.set_rate(self._adaptive.on_success(now), now)

    def on_rate_limited(self) -> None:
        now = asyncio.get_running_loop().time()
        self._pacer.set_rate(self._adaptive.on_rate_limited(now), now)
