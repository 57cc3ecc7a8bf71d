"""PNG compression level: PIL's default for files kept, a configurable fast level for transport."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcpp_service.config import Settings
from sdcpp_service.engine.images import TRANSPORT_PNG_LEVEL, save_image
from sdcpp_service.errors import InvalidRequest


def zlib_flevel(path: Path) -> int:
    """The FLEVEL bits of the first IDAT's zlib header (0 fastest … 3 maximum compression)."""
    data = path.read_bytes()
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            return data[pos + 9] >> 6
        pos += 12 + length
    raise AssertionError("no IDAT chunk")


def test_png_level_is_honoured_and_lossless(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    paths = {}
    for level in (None, TRANSPORT_PNG_LEVEL, 9):
        paths[level] = save_image(image, tmp_path / f"{level}.png", "a fox", png_level=level)
    assert [zlib_flevel(paths[k]) for k in (TRANSPORT_PNG_LEVEL, None, 9)] == [0, 2, 3]
    for path in paths.values():
        with Image.open(path) as im:
            assert np.array_equal(np.asarray(im), noise) and im.text["parameters"] == "a fox"


def test_png_level_setting() -> None:
    assert Settings.from_env({}).png_level == TRANSPORT_PNG_LEVEL
    assert Settings.from_env({"SDCPP_PNG_LEVEL": "9"}).png_level == 9
    with pytest.raises(InvalidRequest, match="SDCPP_PNG_LEVEL: '12' is not a zlib level 0-9"):
        Settings.from_env({"SDCPP_PNG_LEVEL": "12"})
