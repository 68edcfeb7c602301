"""Everything that shapes a simulator run, in one frozen value."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from harvester.errors import ConfigError

#: Every fault the simulator can inject into a data call (see ``faults.py``).
FAULT_KINDS: Final[tuple[str, ...]] = (
    "500",
    "502",
    "503",
    "reset",
    "slow",
    "truncated",
    "nodata",
)

# The switches that each flip one assumption about the real service (``sensit-api.md``
# leaves them open); the first value of each is the vendor document's reading.
#: Which records a window ``[StartDate, EndDate]`` holds: both ends, ``[start, end)``,
#: ``(start, end)``.
BOUNDS: Final = ("inclusive", "half-open", "exclusive")
#: The order of a window's records.
ORDERS: Final = ("newest", "oldest")
#: A window longer than ``max_window_h``: refused with 400, or answered with its first
#: ``max_window_h`` hours as if that were all.
OVER_CAP: Final = ("reject", "truncate")
#: ``{"data": [...]}`` or a bare JSON array.
ENVELOPES: Final = ("data", "bare")
#: ``2024-01-01T00:00:00.000Z``, ``2024-01-01T00:00:00Z``, ``2024-01-01 00:00:00``.
DATE_STYLES: Final = ("iso-ms", "iso-s", "space")
#: Each switch's option name, field and allowed values.
SWITCHES: Final = (
    ("--bounds", "bounds", BOUNDS),
    ("--order", "order", ORDERS),
    ("--over-cap", "over_cap", OVER_CAP),
    ("--envelope", "envelope", ENVELOPES),
    ("--date-style", "date_style", DATE_STYLES),
)


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """Options of ``harvester simulate``; the defaults are the documented ones.

    ``now`` is the simulated present; ``None`` means 14:00 UTC on the last day of the range,
    so that day is still in progress.
    """

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 1
    devices: int = 6
    start: dt.date = dt.date(2024, 1, 1)
    days: int = 10
    cadence_s: int = 60
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    rate_limit: float = 0.0
    token_ttl_s: int = 28800
    max_window_h: float = 2.0
    email: str = "demo@example.com"
    password: str = "demo"
    now: dt.datetime | None = None
    slow_fault_s: float = 120.0
    max_consecutive_faults: int = 3
    #: Memory for rendered record blocks (``data.py``); 0 keeps only the latest block.
    cache_mb: int = 128
    bounds: str = BOUNDS[0]
    order: str = ORDERS[0]
    over_cap: str = OVER_CAP[0]
    envelope: str = ENVELOPES[0]
    date_style: str = DATE_STYLES[0]
    #: A recorded session to serve instead of simulated data (``docs/recording.md``).
    replay: Path | None = None

    def problems(self) -> list[str]:
        """Every invalid value, as one message each (empty when all is well)."""
        checks = [
            (0 <= self.port <= 65535, "--port must be in 0..65535"),
            (1 <= self.devices <= 10_000, "--devices must be in 1..10000"),
            (1 <= self.days <= 36_500, "--days must be in 1..36500"),
            (1 <= self.cadence_s <= 86_400, "--cadence-s must be in 1..86400"),
            (self.latency_ms >= 0, "--latency-ms must not be negative"),
            (0.0 <= self.fault_rate <= 1.0, "--fault-rate must be in 0..1"),
            (self.rate_limit >= 0, "--rate-limit must not be negative"),
            (self.token_ttl_s >= 1, "--token-ttl-s must be at least 1"),
            (self.max_window_h > 0, "--max-window-h must be positive"),
            (self.slow_fault_s >= 0, "--slow-fault-s must not be negative"),
            (self.max_consecutive_faults >= 1, "--max-consecutive-faults must be at least 1"),
            (self.cache_mb >= 0, "--cache-mb must not be negative"),
            (bool(self.email), "--email must not be empty"),
            (bool(self.fault_kinds), "--fault-kinds must name at least one kind"),
        ]
        found = [message for ok, message in checks if not ok]
        unknown = sorted(set(self.fault_kinds) - set(FAULT_KINDS))
        if unknown:
            found.append(
                f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(FAULT_KINDS)}"
            )
        if self.now is not None and self.now.tzinfo is None:
            found.append("--now must carry a time zone (e.g. 2024-01-10T14:00:00Z)")
        flipped = []
        for flag, name, choices in SWITCHES:
            value = getattr(self, name)
            if value not in choices:
                found.append(f"{flag} must be one of {', '.join(choices)}; got {value!r}")
            elif value != choices[0]:
                flipped.append(flag)
        if self.replay is not None and (flipped or self.fault_rate):
            # A recording is served as it was recorded: nothing could honour these.
            found.append(
                "--replay serves the recording as recorded; drop "
                + ", ".join([*flipped, *(["--fault-rate"] if self.fault_rate else [])])
            )
        return found

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first invalid value."""
        found = self.problems()
        if found:
            raise ConfigError(found[0])

    def initial_now(self) -> dt.datetime:
        """The simulated present at start-up (aware UTC)."""
        if self.now is not None:
            return self.now.astimezone(dt.UTC)
        last_day = self.start + dt.timedelta(days=self.days - 1)
        return dt.datetime.combine(last_day, dt.time(14), tzinfo=dt.UTC)
