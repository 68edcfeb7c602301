"""Counters behind ``GET /__sim/stats``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


class Stats:
    """Requests by path and status, records served, faults by kind, sign-ins, 429s."""

    def __init__(self) -> None:
        self.requests: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self.records_served = 0
        self.faults_injected: defaultdict[str, int] = defaultdict(int)
        self.sign_ins = 0
        self.rate_limited = 0

    def count(self, path: str, status: str) -> None:
        self.requests[path][status] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": {path: dict(by_status) for path, by_status in self.requests.items()},
            "records_served": self.records_served,
            "faults_injected": dict(self.faults_injected),
            "sign_ins": self.sign_ins,
            "rate_limited": self.rate_limited,
        }
