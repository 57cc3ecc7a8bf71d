"""Request fields: one declarative table of generation fields, checked before anything queues.

Every dialect maps its own names onto :data:`GENERATION` fields, then calls :func:`parse`, which
collects *all* problems into one :class:`~sdcpp_service.server.errors.ValidationFailed` (422,
naming each field). Images arrive as base64 (a ``data:image/…;base64,`` prefix is fine) or raw
bytes and are decoded once with the pixel limit (a decompression-bomb guard).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdcpp_service.errors import InvalidImage, InvalidRequest
from sdcpp_service.server import engine
from sdcpp_service.server.errors import ValidationFailed


@dataclass(frozen=True)
class Field:
    """A field's type and bounds (``lo``/``hi`` inclusive; ``None`` means unbounded)."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    nullable: bool = False


#: GenerateRequest fields a client may set (images and LoRAs are handled separately).
GENERATION: dict[str, Field] = {
    "prompt": Field(str),
    "negative_prompt": Field(str),
    "width": Field(int, 8, 8192),
    "height": Field(int, 8, 8192),
    "steps": Field(int, 1, 1000),
    "cfg_scale": Field(float, 0, 100),
    "image_cfg_scale": Field(float, 0, 100, nullable=True),
    "guidance": Field(float, 0, 100),
    "sampler": Field(str, nullable=True),
    "scheduler": Field(str, nullable=True),
    "seed": Field(int, -1, 2**32 - 1),
    "batch": Field(int, 1, 64),
    "clip_skip": Field(int, -1, 12),
    "eta": Field(float, 0, 10, nullable=True),
    "flow_shift": Field(float, 0, 100, nullable=True),
    "strength": Field(float, 0, 1),
    "control_strength": Field(float, 0, 10),
    "canny": Field(bool),
    "vae_tiling": Field(bool),
    "cache_mode": Field(str),
    "hires": Field(bool),
    "hires_upscaler": Field(str),
    "hires_model": Field(str),
    "hires_scale": Field(float, 1, 8),
    "hires_width": Field(int, 0, 8192),
    "hires_height": Field(int, 0, 8192),
    "hires_steps": Field(int, 0, 1000),
    "hires_denoise": Field(float, 0, 1),
    "preview": Field(str),
    "preview_interval": Field(int, 1, 1000),
}

#: Fields of the ``upscale`` and ``video`` kinds (the service checks which kind takes which).
KIND_FIELDS: dict[str, Field] = {
    "scale": Field(float, 0.05, 16, nullable=True),
    "tile": Field(int, 16, 4096),
    "frames": Field(int, 1, 1001),
    "fps": Field(float, 1, 240),
    "format": Field(str),
    "vace_strength": Field(float, 0, 10),
}

#: Single-image fields (the lists, ``ref_images`` and ``control_frames``, are decoded apart).
IMAGE_FIELDS = tuple(f for f in engine.IMAGE_FIELDS if f not in engine.IMAGE_LISTS)


def coerce(name: str, value: Any, spec: Field) -> Any:
    """``value`` as ``spec.kind`` within bounds, or InvalidRequest naming ``name``."""
    if value is None:
        if spec.nullable:
            return None
        raise InvalidRequest(name, "must not be null")
    if spec.kind is bool:
        if isinstance(value, bool):
            return value
        raise InvalidRequest(name, f"must be true or false, got {value!r}")
    if spec.kind is str:
        if isinstance(value, str):
            return value
        raise InvalidRequest(name, f"must be a string, got {type(value).__name__}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(name, f"must be a number, got {value!r}")
    if spec.kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise InvalidRequest(name, f"must be a whole number, got {value}")
            value = int(value)
    elif not math.isfinite(value):
        raise InvalidRequest(name, f"must be a finite number, got {value}")
    else:
        value = float(value)
    if spec.lo is not None and value < spec.lo or spec.hi is not None and value > spec.hi:
        raise InvalidRequest(name, f"must be between {spec.lo:g} and {spec.hi:g}, got {value}")
    return value


def parse(
    body: Mapping[str, Any], table: Mapping[str, Field] = GENERATION
) -> tuple[dict[str, Any], dict[str, str]]:
    """Coerce every field of ``table`` present in ``body``; returns (values, errors)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, spec in table.items():
        if name in body:
            try:
                values[name] = coerce(name, body[name], spec)
            except InvalidRequest as exc:
                errors[name] = exc.reason
    return values, errors


def decode_image(value: Any, field: str, max_pixels: int) -> bytes:
    """Base64 (optionally a data URL) or bytes → encoded image bytes, checked to decode within
    ``max_pixels``."""
    from sdcpp_service.engine.images import load_image

    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
        except (binascii.Error, ValueError):
            raise InvalidImage(field, "is not valid base64") from None
    else:
        raise InvalidImage(field, "must be a base64-encoded image")
    if not data:
        raise InvalidImage(field, "is empty")
    load_image(data, field, "RGB", max_pixels=max_pixels)
    return data


def decode_images(
    raw: Mapping[str, Any], max_pixels: int
) -> tuple[dict[str, bytes | list[bytes]], dict[str, str]]:
    """Decode the image fields present in ``raw`` (the ``IMAGE_LISTS`` are lists); (images, errors)."""
    images: dict[str, bytes | list[bytes]] = {}
    errors: dict[str, str] = {}
    for name in IMAGE_FIELDS:
        value = raw.get(name)
        if value is None or value == "":
            continue
        try:
            images[name] = decode_image(value, name, max_pixels)
        except InvalidRequest as exc:
            errors[name] = exc.reason
    for name in engine.IMAGE_LISTS:
        items = raw.get(name)
        if not items:
            continue
        if not isinstance(items, list):
            errors[name] = "must be a list of images"
            continue
        out: list[bytes] = []
        for i, item in enumerate(items):
            try:
                out.append(decode_image(item, f"{name}.{i}", max_pixels))
            except InvalidRequest as exc:
                errors[exc.field] = exc.reason
        images[name] = out
    return images, errors


def parse_loras(value: Any) -> tuple[list[tuple[str, float]], str | None]:
    """``[{"name", "weight"}]``, ``[[name, weight]]`` or ``["name:weight"]`` → pairs."""
    if value is None:
        return [], None
    if not isinstance(value, list):
        return [], "must be a list of {name, weight}"
    pairs: list[tuple[str, float]] = []
    for item in value:
        if isinstance(item, str):
            name, _, weight = item.partition(":")
            item = {"name": name, "weight": weight or 1.0}
        elif isinstance(item, list) and len(item) == 2:
            item = {"name": item[0], "weight": item[1]}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return [], "each LoRA needs a name"
        name = str(item["name"])
        try:
            number = float(item.get("weight", 1.0))
        except (TypeError, ValueError):
            return [], f"LoRA '{name}' has a weight that is not a number"
        if not math.isfinite(number):
            return [], f"LoRA '{name}' has a weight that is not finite"
        pairs.append((name, number))
    return pairs, None


def check(errors: Mapping[str, str]) -> None:
    if errors:
        raise ValidationFailed(errors)
