"""PngStream: a PNG written band by band decodes to exactly the pixels given."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from harvester.inspect.png_stream import PngStream


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 40),
    bands=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_bands_decode_to_the_pixels_written(width: int, bands: list[int], seed: int) -> None:
    """Whatever the width and however the rows are split into bands, the decoded image is the
    rows written, in order (the Sub filter wraps modulo 256 on every channel)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (sum(bands), width, 3), np.uint8)
    out = io.BytesIO()
    png = PngStream(out, width, len(pixels))
    top = 0
    for rows in bands:
        png.write_rows(pixels[top : top + rows])
        top += rows
    png.close()
    with Image.open(io.BytesIO(out.getvalue())) as image:
        assert image.mode == "RGB"
        assert np.array_equal(np.asarray(image), pixels)


def test_rows_that_do_not_fit_the_image_are_refused() -> None:
    """Rows of another width, rows past the height and an image closed short are errors, not
    a PNG that decodes to something else."""
    png = PngStream(io.BytesIO(), 4, 2)
    with pytest.raises(ValueError, match="rows of 5"):
        png.write_rows(np.zeros((1, 5, 3), np.uint8))
    png.write_rows(np.zeros((1, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="1 of the image's 2 rows"):
        png.close()
    with pytest.raises(ValueError, match="more than the image's 2 rows"):
        png.write_rows(np.zeros((2, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="needs pixels"):
        PngStream(io.BytesIO(), 0, 3)
