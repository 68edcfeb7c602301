"""structlog configuration, done once by the CLI. Library code only calls ``get_logger``.

Events are key-value (``window_done device=1033 start=... records=7200``) on stderr, or one JSON
object per line with ``--log-format json``. A last processor masks every registered secret
(the password, access tokens) wherever it would appear — a net under the rule that secrets are
never logged in the first place.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import orjson
import structlog

_secrets: set[str] = set()
MASK = "***"


def register_secret(value: str) -> None:
    """Mask ``value`` in every later log event (ignores values too short to be secret)."""
    if len(value) >= 3:
        _secrets.add(value)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def mask_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: replace registered secrets in every value of the event."""
    if not _secrets:
        return event
    for key, value in event.items():
        event[key] = _mask(value)
    return event


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing.

    Binding the stream once would keep writing to a stream that was swapped and closed since
    (``contextlib.redirect_stderr``, test runners' capture).
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _json_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(
    fmt: str = "console", verbosity: int = 0, stream: TextIO | None = None
) -> None:
    """Configure structlog: level from ``verbosity`` (-1 quiet, 0 info, 1+ debug)."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    out: Any = stream or _CurrentStderr()
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)
    else:
        # Plain tracebacks: the rich formatter would print local variables, secrets among them.
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
        )
    processors: Iterable[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
        renderer,
    ]
    structlog.configure(
        processors=list(processors),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
