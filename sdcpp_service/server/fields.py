"""Request fields: one declarative table of generation fields, checked before anything queues.

Every dialect maps its own names onto :data:`GENERATION` fields, then calls :func:`parse`, which
collects *all* problems into one :class:`~sdcpp_service.server.errors.ValidationFailed` (422,
naming each field). Images arrive as base64 (a ``data:image/…;base64,`` prefix is fine) or raw
bytes and are decoded once with the pixel limit (a decompression-bomb guard).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from sdcpp_service import rules
from sdcpp_service.errors import InvalidImage, InvalidRequest
from sdcpp_service.server import engine
from sdcpp_service.server.errors import ValidationFailed

#: The request rules (:mod:`sdcpp_service.rules`), under the names the routes use.
Field = rules.Rule
GENERATION, KIND_FIELDS = rules.GENERATION, rules.KIND_FIELDS
coerce, parse = rules.coerce, rules.parse

#: Single-image fields (the lists, ``ref_images`` and ``control_frames``, are decoded apart).
IMAGE_FIELDS = tuple(f for f in engine.IMAGE_FIELDS if f not in engine.IMAGE_LISTS)


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
    try:
        for item in value:
            if isinstance(item, str):
                rules.check_text("loras", item, 1000)
                pairs.append(rules.split_lora(item))
                continue
            if isinstance(item, list) and len(item) == 2:
                item = {"name": item[0], "weight": item[1]}
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                return [], "each LoRA needs a name"
            name = rules.check_text("loras", item["name"], 1000)
            pairs.append((name, rules.coerce("loras", item.get("weight", 1.0), rules.LORA_WEIGHT)))
    except InvalidRequest as exc:
        return [], exc.reason
    return pairs, None


def check(errors: Mapping[str, str]) -> None:
    if errors:
        raise ValidationFailed(errors)
