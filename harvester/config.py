"""Configuration: TOML file, ``SENSIT_*`` environment and flags, validated up front.

Precedence is flag > environment > config file > default. Every problem is reported as one
line naming the setting, where it came from and how to fix it; all problems are collected
and raised together as one ``ConfigError``. The password is wrapped in ``Secret`` so that no
repr, log event or error message can show it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from harvester.errors import ConfigError
from harvester.models import DEVICE_TYPES
from harvester.plan.shards import Shard, parse_shard

DEFAULT_BASE_URL = "https://api.sensitconnect.net"
ENV_PREFIX = "SENSIT_"
# The largest legitimate reply is a records window: 2 hours at 1 Hz of the widest device type,
# 7,201 records with both bounds. The simulator's SPOD (18 fields) renders that window in
# 2.6 MB (FMD 1.7 MB, RAMP 1.5 MB). 32 MiB is 12x that: room for a server that pretty-prints
# or adds fields, with a bound on memory that still holds with every worker receiving at once
# (16 requests x 32 MiB).
DEFAULT_MAX_RESPONSE_MB = 32
# --partition: the folder names harvester.archive.layout gives a day's and a month's files (it
# sits above this module, so the names are repeated here; a test keeps the two equal).
PARTITIONS = ("day", "month")


class Secret:
    """A string that never shows itself in repr/str (logs, tracebacks, manifests)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class HarvestConfig:
    """Every setting of plan/run/verify/status, after validation."""

    base_url: str = DEFAULT_BASE_URL
    email: str | None = None
    password: Secret | None = None
    # A folder, or a URI pyarrow.fs resolves (s3://bucket/prefix): objectstore.open_location.
    out: str = "sensit-data"
    s3_endpoint: str | None = None
    shard: Shard | None = None
    # None: the archive's recorded partition, "day" for a new one (archive.settings).
    partition: str | None = None
    device_type: str = "ALL"
    devices: tuple[str, ...] = ()
    since: dt.date | None = None
    until: dt.date | None = None
    timezone: str = "UTC"
    concurrency: int = 16
    rps: float = 20.0
    max_attempts: int = 8
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_response_mb: int = DEFAULT_MAX_RESPONSE_MB
    window_429_budget_s: float = 90.0
    days_in_flight: int = 0
    ca_bundle: Path | None = None
    signin_path: str = "/users/signin"
    devices_path: str = "/clients/getDevicesFromDeviceTypeAndRole"
    dates_path: str = "/sensors-data/get{type}DataAvailableDates"
    records_path: str = "/sensors-data/get{type}DeviceLogForGivenHour"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def effective_days_in_flight(self) -> int:
        """The most device-days open at once. The pool opens a day only when its workers are
        about to run out of windows, so this ceiling matters for days of a few windows each,
        which take many open days to keep every worker busy."""
        return self.days_in_flight or max(2, self.concurrency // 2 + 2)

    def redacted(self) -> dict[str, Any]:
        """The settings as plain JSON-able values, with the password replaced."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = "***"
            elif isinstance(value, Path | dt.date | Shard):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return value.strip()


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a whole number, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _positive_int(value: Any) -> int:
    number = _as_int(value)
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


def _non_negative_int(value: Any) -> int:
    number = _as_int(value)
    if number < 0:
        raise ValueError(f"must be 0 or more, got {number}")
    return number


def _positive_float(value: Any) -> float:
    number = _as_float(value)
    if number <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return number


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    text = _as_str(value)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _base_url(value: Any) -> str:
    text = _as_str(value).rstrip("/")
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {text!r}")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"the port in {text!r} is not a number from 0 to 65535") from None
    return text


def _device_type(value: Any) -> str:
    text = _as_str(value).upper()
    allowed = ("ALL", *DEVICE_TYPES)
    if text not in allowed:
        raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
    return text


def _devices(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else _as_str(value).split(",")
    uuids = tuple(str(item).strip() for item in items if str(item).strip())
    if not uuids:
        raise ValueError("expected one or more device uuids separated by commas")
    return uuids


def _timezone(value: Any) -> str:
    text = _as_str(value)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {text!r}: use an IANA name such as UTC or America/Chicago"
        ) from None
    return text


def _path(value: Any) -> Path:
    text = _as_str(value)
    if not text:
        raise ValueError("expected a path")
    return Path(text).expanduser()


def _location(value: Any) -> str:
    """A folder (``~`` expanded) or a URI such as ``s3://bucket/prefix``, kept as given."""
    text = _as_str(value)
    if not text:
        raise ValueError("expected a folder or a URI such as s3://bucket/prefix")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return str(Path(text).expanduser())
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) or not rest.strip("/"):
        raise ValueError(f"expected a folder or a URI such as s3://bucket/prefix, got {text!r}")
    return f"{scheme.lower()}://{rest.rstrip('/')}" if scheme.lower() != "file" else text


def _partition(value: Any) -> str:
    text = _as_str(value).lower()
    if text not in PARTITIONS:
        raise ValueError(f"expected one of {', '.join(PARTITIONS)}, got {value!r}")
    return text


def _shard(value: Any) -> Shard:
    return value if isinstance(value, Shard) else parse_shard(_as_str(value))


def _password(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty password")
    return Secret(value)


def _path_template(value: Any) -> str:
    text = _as_str(value)
    if not text.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {text!r}")
    return text


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "base_url": _base_url,
    "email": _as_str,
    "password": _password,
    "out": _location,
    "s3_endpoint": _base_url,
    "shard": _shard,
    "partition": _partition,
    "device_type": _device_type,
    "devices": _devices,
    "since": _date,
    "until": _date,
    "timezone": _timezone,
    "concurrency": _positive_int,
    "rps": _positive_float,
    "max_attempts": _positive_int,
    "connect_timeout_s": _positive_float,
    "read_timeout_s": _positive_float,
    "max_response_mb": _positive_int,
    "window_429_budget_s": _positive_float,
    "days_in_flight": _non_negative_int,
    "ca_bundle": _path,
    "signin_path": _path_template,
    "devices_path": _path_template,
    "dates_path": _path_template,
    "records_path": _path_template,
}
KEYS = tuple(_PARSERS)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, KEYS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw key/values of a TOML config file (unknown keys are reported later)."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: check --config") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def resolve_config(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    file_values: Mapping[str, Any] | None = None,
    file_name: str = "config file",
) -> HarvestConfig:
    """Merge the sources (flag > env > file > default), validate, and build the config.

    ``flags`` holds only the options given on the command line.
    """
    problems: list[str] = []
    raw: dict[str, tuple[Any, str]] = {}
    for key, value in (file_values or {}).items():
        if key not in _PARSERS:
            problems.append(f"{file_name}: unknown key {key!r}{_suggest(key)}")
            continue
        raw[key] = (value, f"{file_name} key {key!r}")
    for key in KEYS:
        env_name = ENV_PREFIX + key.upper()
        if env_name in environ:
            raw[key] = (environ[env_name], f"environment variable {env_name}")
    for key, value in flags.items():
        if value is not None:
            raw[key] = (value, _flag(key))

    values: dict[str, Any] = {}
    for key, (value, source) in raw.items():
        try:
            values[key] = _PARSERS[key](value)
        except ValueError as exc:
            problems.append(f"{source}: {exc}")

    since, until = values.get("since"), values.get("until")
    if since and until and since > until:
        problems.append(f"--since {since} is after --until {until}: swap them")
    endpoint, out = raw.get("s3_endpoint"), values.get("out", "")
    if endpoint and "s3_endpoint" in values and not out.startswith("s3://"):
        problems.append(f"{endpoint[1]}: applies only to --out s3://bucket/prefix")
    if problems:
        raise ConfigError("\n".join(problems))
    return HarvestConfig(**values)


def require_credentials(config: HarvestConfig) -> tuple[str, str]:
    """The email and password, or a ConfigError that says how to supply them."""
    missing = [
        name
        for name, value in (("email", config.email), ("password", config.password))
        if not value
    ]
    if missing:
        hints = " and ".join(f"{_flag(n)} (or {ENV_PREFIX}{n.upper()})" for n in missing)
        raise ConfigError(f"no {' and '.join(missing)} given: pass {hints}")
    assert config.email is not None
    assert config.password is not None
    return config.email, config.password.reveal()
