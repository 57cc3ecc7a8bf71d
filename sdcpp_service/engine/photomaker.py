"""PhotoMaker: a person's ID images steer an SDXL generation (the engine's ``pm_params``).

The engine takes a PhotoMaker file in the ``photo_maker`` load slot and, per request, the ID
images, v2's ID embed file and a style strength. It quietly turns PhotoMaker off when a piece is
missing (no images, no v2 embed, no trigger word) and aborts on a model of another family, so
each of those is refused here first, naming the field: the model must be SDXL (checked from the
headers in :func:`sdcpp_service.models.addons.check_photo_maker`), the prompt must carry the
trigger word ``img`` after the class word (``a photo of a man img``), and v2 needs its embed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sdcpp_service.errors import InvalidRequest
from sdcpp_service.types import GenerateRequest, LoadOptions

#: The engine's trigger word (``conditioner.hpp``: ``trigger_word = "img"``).
TRIGGER = "img"
#: Image files taken from a ``--pm-id-images`` folder.
ID_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def id_images(items: Iterable[Any]) -> list[Any]:
    """``pm_id_images`` entries with each folder replaced by its images (sorted by name)."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, (str, Path)) and Path(item).expanduser().is_dir():
            folder = Path(item).expanduser()
            found = sorted(p for p in folder.iterdir() if p.suffix.lower() in ID_SUFFIXES)
            if not found:
                raise InvalidRequest("pm_id_images", f"{folder}: no images in this folder")
            out += found
        else:
            out.append(item)
    return out


def is_v2(options: LoadOptions) -> bool:
    """The engine picks PhotoMaker v2 by the file name (``strstr(path, "v2")``)."""
    return "v2" in Path(options.photo_maker).name


def validate(options: LoadOptions, req: GenerateRequest) -> None:
    """The request's PhotoMaker fields against the loaded context (before the engine runs)."""
    if not options.photo_maker:
        if req.pm_id_images:
            raise InvalidRequest(
                "pm_id_images", "ID images need a PhotoMaker model (--photo-maker / photo_maker)"
            )
        return
    if not req.pm_id_images:
        raise InvalidRequest(
            "pm_id_images",
            "a PhotoMaker model needs ID images of the person (--pm-id-images DIR / "
            "pm_id_images); the engine would ignore it",
        )
    if not re.search(rf"\b{TRIGGER}\b", req.prompt):
        raise InvalidRequest(
            "prompt",
            f"PhotoMaker needs the trigger word '{TRIGGER}' after the class word, e.g. "
            f"'a photo of a man {TRIGGER}'",
        )
    if not 0 <= req.pm_style_strength <= 100:
        raise InvalidRequest(
            "pm_style_strength", f"must be between 0 and 100, got {req.pm_style_strength}"
        )
    if is_v2(options):
        if not req.pm_id_embed:
            raise InvalidRequest(
                "pm_id_embed",
                "PhotoMaker v2 needs the ID embed file of these images (--pm-id-embed, made by "
                "the engine's face_detect.py); the engine would turn PhotoMaker off",
            )
        if not Path(req.pm_id_embed).is_file():
            raise InvalidRequest("pm_id_embed", f"{req.pm_id_embed}: no such file")


def to_c(req: GenerateRequest, params: Any, lib: Any, keep: list[Any]) -> None:
    """Fill ``params.pm_params`` (an ``sd_img_gen_params_t``) from ``req``."""
    from sdcpp_service.engine.cdata import image_to_c

    pm = params.pm_params
    pm.style_strength = float(req.pm_style_strength)
    if req.pm_id_embed:
        path = req.pm_id_embed.encode("utf-8")
        keep.append(path)
        pm.id_embed_path = path
    if req.pm_id_images:
        arr = (lib.sd_image_t * len(req.pm_id_images))()
        for i, image in enumerate(req.pm_id_images):
            arr[i] = image_to_c(image.convert("RGB"), keep)
        keep.append(arr)
        pm.id_images, pm.id_images_count = arr, len(req.pm_id_images)
