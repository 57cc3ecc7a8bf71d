"""A1111's settings as A1111 keeps them: its full default options dict (``data/a1111_options.json``:
every standard key of ``modules/shared_options.py`` and the built-in Lora extension, with A1111's
defaults), overlaid with what clients set, persisted in the data dir (``a1111-config.json``, as
A1111's ``config.json``) so a restart keeps them.

The keys the service acts on (:data:`ACTED_ON`) are checked when set; every other key is kept and
returned as sent, so a client's read-modify-write round-trips. Importable without Starlette.
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from sdcpp_service.errors import InvalidRequest

CONFIG_NAME = "a1111-config.json"

#: The keys that change what the service does, and how (the README's A1111 section lists them).
ACTED_ON: dict[str, str] = {
    "sd_model_checkpoint": "switches the loaded model (and is the default model of requests)",
    "sd_vae": "a VAE from /sdapi/v1/sd-vae is used by requests; Automatic/None: the model's own",
    "CLIP_stop_at_last_layers": "clip skip of requests that send none",
    "live_previews_enable": "false: no live previews in /progress",
    "show_progress_every_n_steps": "steps between two live previews",
    "show_progress_type": "Full: previews decoded by the VAE; any other: the cheap projection",
    "samples_format": "png, jpg or webp: the format of the images txt2img/img2img return",
    "jpeg_quality": "quality of jpg/webp images returned",
    "enable_pnginfo": "false: returned images carry no infotext",
    "eta_ancestral": "eta of requests that send none, for the ancestral and SDE samplers",
    "eta_ddim": "eta of requests that send none, for DDIM",
}

_FORMATS = ("png", "jpg", "jpeg", "webp")
#: Where this service's behaviour differs from A1111's defaults, the defaults it really has.
OURS: dict[str, Any] = {
    "show_progress_every_n_steps": 1,  # proj previews cost next to nothing: every step
    "show_progress_type": "Approx cheap",  # the engine's proj mode is A1111's cheap approximation
    "live_preview_fast_interrupt": True,  # interrupt returns the last preview
    "samples_save": False,  # only save_images: true writes to the sample folders
}


@functools.cache
def _defaults_text() -> str:
    return resources.files("sdcpp_service").joinpath("data/a1111_options.json").read_text()


def defaults() -> dict[str, Any]:
    """A fresh copy of A1111's default options, with this service's own where they differ."""
    data: dict[str, Any] = json.loads(_defaults_text())
    return {**data, **OURS}


def load(data_dir: Path) -> dict[str, Any]:
    """The options clients set before (empty when none, or when the file is unreadable)."""
    try:
        data = json.loads((data_dir / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(data_dir: Path, options: dict[str, Any]) -> None:
    """Write the set options atomically (``.incomplete`` then ``os.replace``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CONFIG_NAME
    tmp = path.with_name(path.name + ".incomplete")
    tmp.write_text(json.dumps(options, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _int(key: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(key, f"must be a whole number from {low} to {high}")


def check(key: str, value: Any) -> None:
    """Refuse a value the service could not act on (the other keys are kept as sent)."""
    if key == "CLIP_stop_at_last_layers":
        _int(key, value, 1, 12)
    elif key == "show_progress_every_n_steps":
        _int(key, value, -1, 1000)
    elif key == "jpeg_quality":
        _int(key, value, 1, 100)
    elif key == "samples_format":
        if not isinstance(value, str) or value.lower() not in _FORMATS:
            raise InvalidRequest(key, f"must be one of {', '.join(_FORMATS)}")
    elif key in ("live_previews_enable", "enable_pnginfo"):
        if not isinstance(value, bool):
            raise InvalidRequest(key, "must be true or false")
    elif key in ("eta_ancestral", "eta_ddim"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InvalidRequest(key, "must be a number from 0 to 1")
    elif key in ("sd_vae", "sd_model_checkpoint") and not isinstance(value, (str, type(None))):
        raise InvalidRequest(key, "must be a name (a string)")


def vae_choice(options: dict[str, Any]) -> str | None:
    """The VAE requests use: a name, or None for the model's own (Automatic/None)."""
    value = options.get("sd_vae")
    if not isinstance(value, str) or value.strip().lower() in ("", "automatic", "none"):
        return None
    return value
