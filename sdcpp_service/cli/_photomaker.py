"""``generate``'s PhotoMaker options (the engine's ``pm_params``; see engine/photomaker.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sdcpp_service.cli._options import ruled

PhotoMakerOpt = Annotated[
    Path | None,
    typer.Option(
        "--photo-maker",
        help="PhotoMaker model (SDXL): the person of --pm-id-images, where the prompt says "
        "'img' after the class word ('a photo of a man img').",
    ),
]
PmIdImagesOpt = Annotated[
    list[Path] | None,
    typer.Option("--pm-id-images", help="Folder (or image files, repeatable) showing the person."),
]
PmIdEmbedOpt = Annotated[
    Path | None, typer.Option("--pm-id-embed", help="PhotoMaker v2's ID embed (face_detect.py).")
]
PmStyleStrengthOpt = Annotated[
    float | None,
    ruled(
        "pm_style_strength", "--pm-style-strength", help="How closely the ID is kept (default 20)."
    ),
]


def pm_params(
    id_images: list[Path] | None, id_embed: Path | None, style_strength: float | None
) -> dict[str, Any]:
    """The request fields of the PhotoMaker options (None: not given)."""
    return {
        "pm_id_images": [str(p) for p in id_images] if id_images else None,
        "pm_id_embed": str(id_embed) if id_embed else None,
        "pm_style_strength": style_strength,
    }
