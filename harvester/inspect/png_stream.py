"""A PNG written band of rows by band of rows, so that no whole image is ever in memory.

Matplotlib (through Pillow) encodes a PNG from one finished canvas: for the coverage of
1,000 devices that canvas is 14,591 x 2,035 px, ~120 MB of RGBA before anything is drawn
on it. A PNG's pixels are one zlib stream over rows, each row led by its filter byte, so
they can be compressed as the rows come. Pillow has no writer that takes rows in pieces and
pypng does the filtering in pure Python, so this is the format's few lines (RFC 2083):
8-bit RGB, no interlacing, every row filtered ``Sub`` (a run of one colour becomes zeros).
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_RGB: Final = 2  # IHDR colour type: truecolour, no alpha
_FILTER_SUB: Final = 1
_LEVEL: Final = 6


class PngStream:
    """Writes a ``width`` x ``height`` RGB PNG to ``handle`` from bands of rows, top first."""

    def __init__(self, handle: BinaryIO, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"a PNG needs pixels, not {width} x {height}")
        self._handle = handle
        self._width = width
        self._height = height
        self._rows_written = 0
        self._compressor = zlib.compressobj(_LEVEL)
        handle.write(_SIGNATURE)
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, _RGB, 0, 0, 0))

    def write_rows(self, rgb: npt.NDArray[np.uint8]) -> None:
        """Appends the rows of ``rgb`` (shape rows x width x 3)."""
        rows, width, channels = rgb.shape
        if width != self._width or channels != 3:
            raise ValueError(f"rows of {width} x {channels}, the image is {self._width} x 3")
        if self._rows_written + rows > self._height:
            raise ValueError(f"more than the image's {self._height} rows")
        flat = rgb.reshape(rows, width * 3)
        filtered = np.empty((rows, width * 3 + 1), np.uint8)
        filtered[:, 0] = _FILTER_SUB
        filtered[:, 1:] = flat
        # Sub: each byte less the same channel's byte of the pixel before (modulo 256).
        np.subtract(flat[:, 3:], flat[:, :-3], out=filtered[:, 4:])
        self._idat(self._compressor.compress(filtered.tobytes()))
        self._rows_written += rows

    def close(self) -> None:
        """Ends the image; every one of its rows must have been written."""
        if self._rows_written != self._height:
            raise ValueError(f"{self._rows_written} of the image's {self._height} rows written")
        self._idat(self._compressor.flush())
        self._chunk(b"IEND", b"")

    def _idat(self, data: bytes) -> None:
        if data:
            self._chunk(b"IDAT", data)

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self._handle.write(struct.pack(">I", len(data)))
        self._handle.write(kind)
        self._handle.write(data)
        self._handle.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))))
