"""What the CLI prints of server text: never a raw control character on a terminal."""

from __future__ import annotations

import pytest

from harvester.cli.common import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("1041", "1041"),
        ("设备-☃-é", "设备-☃-é"),
        ("\x1b[2J\x1b[31mpwned", "\\x1b[2J\\x1b[31mpwned"),
        ("a\x00b", "a\\x00b"),
        ("line\rover", "line\\rover"),
        ("two\nlines", "two\\nlines"),
    ],
)
def test_control_characters_are_shown_escaped_and_printable_text_kept(
    text: str, shown: str
) -> None:
    """An ANSI escape, a NUL, a carriage return or a newline from the server is printed as
    its escape, so it cannot clear the screen or forge a line; letters of any script stay."""
    assert printable(text) == shown
