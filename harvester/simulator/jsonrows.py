"""Serialise whole columns into JSON text without one Python object per value.

A window's records are rendered into one ``uint8`` matrix, one row per record: every field
has a fixed-width cell (numbers right-aligned and padded with spaces, which is legal JSON
whitespace) written column by column with vectorised digit arithmetic, between constant key
text. The body is then a single ``ndarray.tobytes()`` with the padding deleted (one
``bytes.translate``, a few ms for a 7,200-record window). Numbers keep their JSON type:
integers are written without a decimal point, fractional fields always with one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.uint8]
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ZERO, _SPACE, _MINUS, _POINT, _QUOTE = (ord(c) for c in '0 -."')
#: Below this many rows, per-value Python formatting beats a few hundred numpy calls.
SMALL = 48


class Cell(Protocol):
    """One field of every record: a fixed width and a way to fill its columns."""

    @property
    def width(self) -> int: ...

    def write(self, out: Matrix) -> None:
        """Fill ``out`` (rows x ``width``) with this field's JSON text."""


def _write_texts(out: Matrix, texts: list[str]) -> None:
    """Right-align ``texts`` (ASCII, at most ``out``'s width) into the rows of ``out``."""
    width = out.shape[1]
    joined = "".join(text.rjust(width) for text in texts).encode()
    out[:] = np.frombuffer(joined, dtype=np.uint8).reshape(len(texts), width)


def _write_digits(out: Matrix, values: npt.NDArray[np.int64], count: int) -> None:
    """Zero-padded decimal digits of non-negative ``values`` into the ``count`` columns."""
    # 32-bit division is markedly faster than 64-bit; most columns fit. np.max, not the
    # method: numpy 2.5's stubs, read for Python 3.11 as mypy is told to, type it and
    # ndarray.max() does not match them.
    narrow = len(values) == 0 or int(np.max(values)) < 2**32
    rest = values.astype(np.uint32) if narrow else values.copy()
    for column in range(count - 1, -1, -1):
        out[:, column] = _ZERO + rest % 10
        rest //= 10


@dataclass(frozen=True, slots=True)
class Number:
    """Numbers rounded to ``decimals`` places (0: integers); rows in ``null`` become null."""

    values: npt.NDArray[np.float64]
    decimals: int = 0
    null: npt.NDArray[np.bool_] | None = None

    @property
    def _int_digits(self) -> int:
        largest = float(np.abs(self.values).max()) if len(self.values) else 0.0
        return max(1, len(str(int(round(largest, self.decimals)))))

    @property
    def width(self) -> int:
        # A spare leading column keeps room for a minus sign.
        width = 1 + self._int_digits + (1 + self.decimals if self.decimals else 0)
        return width if self.null is None else max(width, 4)

    def write(self, out: Matrix) -> None:
        scaled = np.rint(np.abs(self.values) * 10**self.decimals).astype(np.int64)
        negative = (self.values < 0) & (scaled > 0)
        if len(scaled) < SMALL:
            self._write_small(out, scaled.tolist(), negative.tolist())
        else:
            self._write_large(out, scaled, negative)
        if self.null is not None:
            out[self.null] = _SPACE
            out[self.null, -4:] = np.frombuffer(b"null", dtype=np.uint8)

    def _write_small(self, out: Matrix, scaled: list[int], negative: list[bool]) -> None:
        # The same integers as the vectorised path, so a record renders identically in
        # windows of any size.
        unit = 10**self.decimals
        texts = []
        for value, minus in zip(scaled, negative, strict=True):
            whole, fraction = divmod(value, unit)
            text = f"{whole}.{fraction:0{self.decimals}d}" if self.decimals else str(whole)
            texts.append("-" + text if minus else text)
        _write_texts(out, texts)

    def _write_large(
        self, out: Matrix, scaled: npt.NDArray[np.int64], negative: npt.NDArray[np.bool_]
    ) -> None:
        int_columns = out.shape[1]
        whole = scaled
        if self.decimals:
            int_columns -= self.decimals + 1
            unit = 10**self.decimals
            whole, fraction = np.divmod(scaled, unit)
            _write_digits(out[:, int_columns + 1 :], fraction, self.decimals)
            out[:, int_columns] = _POINT
        integer_part = out[:, :int_columns]
        _write_digits(integer_part, whole, int_columns)
        exponents = np.arange(int_columns - 1, -1, -1, dtype=np.int64)
        leading = (whole[:, None] < 10**exponents) & (exponents > 0)
        integer_part[leading] = _SPACE
        if negative.any():
            rows = np.flatnonzero(negative)
            integer_part[rows, leading[rows].sum(axis=1) - 1] = _MINUS


@dataclass(frozen=True, slots=True)
class Boolean:
    """``true`` / `` false`` per row."""

    truth: npt.NDArray[np.bool_]
    width: int = 5

    def write(self, out: Matrix) -> None:
        table = np.frombuffer(b"false true", dtype=np.uint8).reshape(2, 5)
        out[:] = table[self.truth.astype(np.int64)]


@dataclass(frozen=True, slots=True)
class Text:
    """The same (already JSON-encoded) text in every row, e.g. ``"1001"`` with its quotes."""

    text: str

    @property
    def width(self) -> int:
        return len(self.text.encode())

    def write(self, out: Matrix) -> None:
        out[:] = np.frombuffer(self.text.encode(), dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class ObjectId:
    """``"tttttttt" + stem + "cccccc"``: 8 hex of the epoch second, a device stem, a counter."""

    times: npt.NDArray[np.int64]
    stem: str
    counters: npt.NDArray[np.int64]

    @property
    def width(self) -> int:
        return 2 + 8 + len(self.stem) + 6

    def write(self, out: Matrix) -> None:
        if len(self.times) < SMALL:
            pairs = zip(self.times.tolist(), self.counters.tolist(), strict=True)
            _write_texts(out, [f'"{t:08x}{self.stem}{c:06x}"' for t, c in pairs])
            return
        out[:, 0] = out[:, -1] = _QUOTE
        for digit in range(8):
            out[:, 1 + digit] = _HEX[(self.times >> (4 * (7 - digit))) & 15]
        stem_end = 9 + len(self.stem)
        out[:, 9:stem_end] = np.frombuffer(self.stem.encode(), dtype=np.uint8)
        for digit in range(6):
            out[:, stem_end + digit] = _HEX[(self.counters >> (4 * (5 - digit))) & 15]


#: Each date style's ``strftime`` format (the styles of ``options.DATE_STYLES``).
DATE_FORMATS: Final = {
    "iso-ms": "%Y-%m-%dT%H:%M:%S.000Z",
    "iso-s": "%Y-%m-%dT%H:%M:%SZ",
    "space": "%Y-%m-%d %H:%M:%S",
}
#: Stands for a space inside a text until ``wrap`` has dropped the padding: a control
#: character, which no JSON text holds raw.
GAP: Final = b"\x1f"


def _date_text(epoch_s: int, style: str) -> str:
    stamp = time.strftime(DATE_FORMATS[style], time.gmtime(epoch_s))
    return '"' + stamp.replace(" ", GAP.decode()) + '"'


@dataclass(frozen=True, slots=True)
class IsoTime:
    """Epoch seconds as UTC texts in a ``DATE_FORMATS`` style: ``"2024-02-05T22:00:00.000Z"``
    (``iso-ms``, the API's own), ``"2024-02-05T22:00:00Z"`` (``iso-s``) or
    ``"2024-02-05 22:00:00"`` (``space``)."""

    times: npt.NDArray[np.int64]
    style: str = "iso-ms"

    @property
    def width(self) -> int:
        return len(_date_text(0, self.style))

    def write(self, out: Matrix) -> None:
        if len(self.times) < SMALL:
            _write_texts(out, [_date_text(t, self.style) for t in self.times.tolist()])
            return
        days = (self.times // 86_400).astype("datetime64[D]")
        months = days.astype("datetime64[M]")
        year = days.astype("datetime64[Y]").astype(np.int64) + 1970
        month = months.astype(np.int64) % 12 + 1
        day = (days - months).astype(np.int64) + 1
        second = self.times % 86_400
        # Every style writes its digits at the same offsets; the rest is constant.
        out[:] = np.frombuffer(_date_text(0, self.style).encode(), dtype=np.uint8)
        for start, count, values in (
            (1, 4, year),
            (6, 2, month),
            (9, 2, day),
            (12, 2, second // 3600),
            (15, 2, second // 60 % 60),
            (18, 2, second % 60),
        ):
            _write_digits(out[:, start : start + count], values, count)


def render_rows(rows: int, fields: Sequence[tuple[str, Cell]]) -> tuple[bytes, int]:
    """Records as fixed-width text rows, each ending with ``,``; also the row width.

    Any run of consecutive rows is a contiguous slice of the bytes, so a window can be cut
    out of a bigger rendered block without re-rendering it.
    """
    keys = [f'{"{" if n == 0 else ","}"{key}":'.encode() for n, (key, _) in enumerate(fields)]
    widths = [cell.width for _, cell in fields]
    width = sum(len(key) for key in keys) + sum(widths) + 2
    out = np.empty((rows, width), dtype=np.uint8)
    column = 0
    for key, cell_width, (_, cell) in zip(keys, widths, fields, strict=True):
        out[:, column : column + len(key)] = np.frombuffer(key, dtype=np.uint8)
        column += len(key)
        cell.write(out[:, column : column + cell_width])
        column += cell_width
    out[:, column:] = np.frombuffer(b"},", dtype=np.uint8)
    return out.tobytes(), width


def wrap(rows: Sequence[bytes], *, bare: bool = False) -> bytes:
    """``{"data":[...]}`` (or with ``bare`` a bare ``[...]``) around rendered rows (each
    ending with ``,``), as compact JSON.

    The cells' padding is dropped (real APIs do not pad, and padding would inflate bodies
    by a third): every space in a rendered row is padding, since no key or text holds one;
    the spaces texts do hold are written as ``GAP`` and restored after.
    """
    opening, closing = (b"[", b"]") if bare else (b'{"data":[', b"]}")
    parts = [part for part in rows if part]
    if not parts:
        return opening + closing
    last = memoryview(parts[-1])[:-1]
    body = b"".join([opening, *parts[:-1], last, closing]).translate(None, b" ")
    # Scanning for an absent byte costs ~1 % of the translate above.
    return body.replace(GAP, b" ")


def render(rows: int, fields: Sequence[tuple[str, Cell]]) -> bytes:
    """``{"data":[...]}`` with one record per row, its ``fields`` (key, cell) in order."""
    if rows == 0 or not fields:
        return b'{"data":[]}'
    return wrap([render_rows(rows, fields)[0]])
