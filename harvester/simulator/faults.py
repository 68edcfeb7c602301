"""Transient fault injection for the data routes.

Whether a request fails is a seeded hash of (route + request body, how many times that exact
request was seen before), so a run is reproducible for a given request sequence, and a
retried request gets a fresh draw. A request never fails more than
``max_consecutive_faults`` times in a row: every fault is transient.
"""

from __future__ import annotations

from harvester.simulator.hashing import mix64, text_key, unit
from harvester.simulator.options import SimulatorOptions

HTML_ERRORS = {
    "500": "Internal Server Error",
    "502": "Bad Gateway",
    "503": "Service Unavailable",
}


def error_page(status: str) -> str:
    """The HTML body a proxy in front of the API would send for ``status``."""
    title = f"{status} {HTML_ERRORS[status]}"
    return (
        f"<html><head><title>{title}</title></head><body>"
        f"<center><h1>{title}</h1></center><hr><center>nginx</center></body></html>"
    )


class FaultPlan:
    """Decides, per data request, whether it fails and how."""

    def __init__(self, options: SimulatorOptions) -> None:
        self._seed = options.seed
        self._rate = options.fault_rate
        self._kinds = options.fault_kinds
        self._max_streak = options.max_consecutive_faults
        self._seen: dict[int, int] = {}
        self._streak: dict[int, int] = {}

    def decide(self, route: str, body: bytes) -> str | None:
        """The fault kind to inject into this request, or None to answer it properly."""
        if self._rate <= 0:
            return None
        key = text_key(route.encode() + b"\0" + body)
        attempt = self._seen.get(key, 0)
        self._seen[key] = attempt + 1
        streak = self._streak.get(key, 0)
        if streak >= self._max_streak or unit(self._seed, key, attempt) >= self._rate:
            self._streak.pop(key, None)
            return None
        self._streak[key] = streak + 1
        return self._kinds[mix64(self._seed, key, attempt, 1) % len(self._kinds)]
