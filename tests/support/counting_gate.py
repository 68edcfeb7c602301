"""A RequestGate that counts the 429s it lets slow the rate down (the account's)."""

from __future__ import annotations

from harvester.fetch.gate import RequestGate


class CountingGate(RequestGate):
    """``slowed``: how many 429s reached the adaptive rate."""

    def __init__(self, rps: float) -> None:
        super().__init__(rps)
        self.slowed = 0

    def on_rate_limited(self) -> None:
        self.slowed += 1
        super().on_rate_limited()
