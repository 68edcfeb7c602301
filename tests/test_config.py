"""Configuration: precedence, validation, one line per problem, the password kept secret."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from harvester.config import (
    HarvestConfig,
    Secret,
    read_config_file,
    require_credentials,
    resolve_config,
)
from harvester.errors import ConfigError


def test_defaults_when_nothing_is_given() -> None:
    """With no source at all, the documented defaults apply."""
    config = resolve_config({}, {})
    assert config == HarvestConfig()
    assert config.base_url == "https://api.sensitconnect.net"
    assert config.timezone == "UTC"


def test_flag_beats_environment_beats_file() -> None:
    """Precedence is flag > SENSIT_* environment > config file."""
    file_values = {"concurrency": 3, "rps": 7, "timezone": "Asia/Kolkata"}
    env = {"SENSIT_CONCURRENCY": "5", "SENSIT_RPS": "9"}
    config = resolve_config({"concurrency": "11"}, env, file_values)
    assert config.concurrency == 11
    assert config.rps == 9.0
    assert config.timezone == "Asia/Kolkata"


def test_none_flags_do_not_override() -> None:
    """An option left off the command line (None) leaves lower sources in charge."""
    config = resolve_config({"email": None}, {"SENSIT_EMAIL": "a@b.c"})
    assert config.email == "a@b.c"


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"concurrency": "-1"}, "--concurrency: must be at least 1"),
        ({"concurrency": "0"}, "--concurrency: must be at least 1"),
        ({"concurrency": "many"}, "--concurrency: expected a whole number"),
        ({"rps": "0"}, "--rps: must be greater than 0"),
        ({"rps": "nan"}, "--rps: expected a finite number"),
        ({"device_type": "XYZ"}, "--device-type: expected one of ALL, FMD, SPOD, RAMP"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"since": "2024-02-30"}, "--since: expected a date YYYY-MM-DD"),
        ({"base_url": "ftp://x"}, "--base-url: expected an http:// or https:// URL"),
        ({"base_url": "127.0.0.1:8080"}, "--base-url: expected an http:// or https:// URL"),
        ({"base_url": "http://"}, "--base-url: expected an http:// or https:// URL"),
        ({"base_url": "http://host:99999"}, "is not a number from 0 to 65535"),
        ({"since": "2024-03-02", "until": "2024-03-01"}, "is after --until"),
        ({"devices": " , "}, "--devices: expected one or more device uuids"),
    ],
)
def test_bad_values_name_the_option(flags: dict[str, str], needle: str) -> None:
    """Each invalid value is reported with the option that carried it."""
    with pytest.raises(ConfigError) as info:
        resolve_config(flags, {})
    assert needle in str(info.value)


def test_every_problem_is_one_line() -> None:
    """Several problems are all reported, one line each."""
    with pytest.raises(ConfigError) as info:
        resolve_config({"concurrency": "0", "rps": "-2"}, {"SENSIT_TIMEZONE": "Nowhere"})
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert any("environment variable SENSIT_TIMEZONE" in line for line in lines)


def test_unknown_file_key_suggests_the_close_one() -> None:
    """A misspelled config key is refused with a suggestion."""
    with pytest.raises(
        ConfigError, match=r"unknown key 'concurrancy' \(did you mean 'concurrency'"
    ):
        resolve_config({}, {}, {"concurrancy": 4}, file_name="h.toml")


def test_wrong_type_in_file_is_refused() -> None:
    """A TOML value of the wrong type (a boolean for a number) is a clear error."""
    with pytest.raises(ConfigError, match=r"h\.toml key 'rps': expected a number"):
        resolve_config({}, {}, {"rps": True}, file_name="h.toml")


def test_file_values_are_typed(tmp_path: Path) -> None:
    """TOML dates, lists and numbers are accepted natively."""
    path = tmp_path / "h.toml"
    path.write_text('since = 2024-01-02\ndevices = ["1", "2"]\nrps = 2.5\nout = "~/x"\n')
    config = resolve_config({}, {}, read_config_file(path))
    assert config.since == dt.date(2024, 1, 2)
    assert config.devices == ("1", "2")
    assert config.rps == 2.5
    assert config.out == str(Path("~/x").expanduser())


def test_unreadable_config_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing or malformed TOML file is one line, not a traceback."""
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("rps = = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        read_config_file(bad)


def test_password_never_shows() -> None:
    """repr/str of the config and its redacted form never contain the password."""
    config = resolve_config({"password": "hunter2-secret"}, {})
    assert isinstance(config.password, Secret)
    assert "hunter2-secret" not in repr(config)
    assert "hunter2-secret" not in str(config.redacted())
    assert config.password.reveal() == "hunter2-secret"


def test_missing_credentials_say_how_to_supply_them() -> None:
    """Without email/password the error names both the flag and the variable."""
    with pytest.raises(ConfigError, match=r"--password \(or SENSIT_PASSWORD\)"):
        require_credentials(resolve_config({"email": "a@b.c"}, {}))
