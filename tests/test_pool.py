"""RequestGate: paced turns, and the rate learning from every request sent through it."""

from __future__ import annotations

import asyncio

import pytest

from harvester.errors import RateLimitedError
from harvester.pool import RequestGate


async def test_slots_due_within_a_millisecond_are_sent_without_yielding() -> None:
    """At a very high rate, a hundred turns in a row never give the loop an iteration, so
    workers do not queue one loop iteration each behind the gate's lock."""
    gate = RequestGate(1e6)
    yielded: list[bool] = []
    asyncio.get_running_loop().call_soon(yielded.append, True)
    for _ in range(100):
        await gate.wait_turn()
    assert yielded == []


async def test_a_later_slot_is_still_waited_for() -> None:
    """At 20 requests/s the second turn sleeps until its slot (the loop runs meanwhile)."""
    gate = RequestGate(20)
    loop = asyncio.get_running_loop()
    await gate.wait_turn()
    yielded: list[bool] = []
    loop.call_soon(yielded.append, True)
    started = loop.time()
    await gate.wait_turn()
    assert yielded == [True]
    assert loop.time() - started >= 0.04


async def test_send_returns_the_answer_and_a_429_slows_the_gate() -> None:
    """Any request sent through the gate (a window, a dates call) feeds the adaptive rate."""
    gate = RequestGate(100)

    async def ok() -> str:
        return "answer"

    async def limited() -> str:
        raise RateLimitedError("429", retry_after=None)

    assert await gate.send(ok) == "answer"
    assert gate.rate == 100
    with pytest.raises(RateLimitedError):
        await gate.send(limited)
    assert gate.rate < 100
