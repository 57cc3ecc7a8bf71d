"""Images and LoRAs to and from the engine's C structs: one buffer copy each way, and every
buffer the engine returns freed with libc ``free``."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from PIL import Image

from sdcpp_service.engine.sdcpp import native
from sdcpp_service.types import Lora


def image_to_c(image: Image.Image, keep: list[Any]) -> Any:
    """A PIL image as an ``sd_image_t`` (one buffer copy); the buffer is kept alive in ``keep``."""
    lib = native().lib
    data = image.tobytes()
    buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    keep.append(buf)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[image.mode]
    return lib.sd_image_t(
        width=image.width,
        height=image.height,
        channel=channels,
        data=ctypes.cast(buf, ctypes.POINTER(ctypes.c_uint8)),
    )


def loras_to_c(loras: Sequence[Lora], keep: list[Any]) -> tuple[Any, int]:
    """An ``sd_lora_t`` array for ``loras`` (paths and array kept alive in ``keep``)."""
    arr = (native().lib.sd_lora_t * len(loras))()
    for i, lora in enumerate(loras):
        raw = lora.path.encode("utf-8")
        keep.append(raw)
        arr[i].path, arr[i].multiplier, arr[i].is_high_noise = raw, lora.weight, lora.high_noise
    keep.append(arr)
    return arr, len(loras)


def pil_from_c(img: Any) -> Image.Image:
    """Copy one engine ``sd_image_t`` into a PIL image (the engine buffer is not freed here)."""
    mode = {3: "RGB", 1: "L", 4: "RGBA"}[img.channel]
    raw = ctypes.string_at(img.data, img.width * img.height * img.channel)
    return Image.frombuffer(mode, (img.width, img.height), raw, "raw", mode, 0, 1)


def images_from_c(ptr: Any, count: int) -> list[Image.Image]:
    """Copy ``count`` engine images out, then free the engine's buffers (data and array)."""
    nat = native()
    out: list[Image.Image] = []
    if not ptr:
        return out
    try:
        for i in range(count):
            if ptr[i].data:
                out.append(pil_from_c(ptr[i]))
    finally:
        for i in range(count):
            if ptr[i].data:
                nat.free(ctypes.cast(ptr[i].data, ctypes.c_void_p))
        nat.free(ctypes.cast(ptr, ctypes.c_void_p))
    return out
