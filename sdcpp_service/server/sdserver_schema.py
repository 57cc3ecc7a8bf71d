"""sd-server's native request schema (``examples/server/api.md`` of the vendored engine: the
``/sdcpp/v1/img_gen`` and ``vid_gen`` bodies, also what ``<sd_cpp_extra_args>`` carries inside a
prompt) read into the service's own request fields. Pure: no web framework here.

Unknown fields are ignored, as sd-server does; a field of the wrong type or out of bounds is
reported under its sd-server name (``sample_params.sample_steps``). Besides sd-server's fields,
``model`` and the component slots (``vae``, ``t5xxl``…; ``"t5xxl": false``) may be given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sdcpp_service.server.options import LOAD_SLOTS, OPTIONAL_SLOTS

EXTRA_ARGS = re.compile(r"<sd_cpp_extra_args>(.*?)</sd_cpp_extra_args>", re.DOTALL)

#: sd-server field (dotted path) → ours.
SCALARS: dict[str, str] = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "clip_skip": "clip_skip",
    "width": "width",
    "height": "height",
    "strength": "strength",
    "seed": "seed",
    "batch_count": "batch",
    "control_strength": "control_strength",
    "sample_params.scheduler": "scheduler",
    "sample_params.sample_method": "sampler",
    "sample_params.sample_steps": "steps",
    "sample_params.eta": "eta",
    "sample_params.flow_shift": "flow_shift",
    "sample_params.guidance.txt_cfg": "cfg_scale",
    "sample_params.guidance.img_cfg": "image_cfg_scale",
    "sample_params.guidance.distilled_guidance": "guidance",
    "hires.enabled": "hires",
    "hires.scale": "hires_scale",
    "hires.target_width": "hires_width",
    "hires.target_height": "hires_height",
    "hires.steps": "hires_steps",
    "hires.denoising_strength": "hires_denoise",
    "vae_tiling_params.enabled": "vae_tiling",
    "cache_mode": "cache_mode",
    "video_frames": "frames",
    "fps": "fps",
    "vace_strength": "vace_strength",
}
#: sd-server image field → ours.
IMAGES: dict[str, str] = {
    "init_image": "init_image",
    "mask_image": "mask",
    "control_image": "control_image",
    "ref_images": "ref_images",
    "end_image": "end_image",
    "control_frames": "control_frames",
}
#: ours → sd-server's name, for error messages.
REVERSE = {ours: theirs for theirs, ours in {**SCALARS, **IMAGES}.items()} | {
    "batch": "batch_count",
    "format": "output_format",
    "loras": "lora",
}
#: Image output formats (sd-server: png, jpeg, webp) and video containers we write.
IMAGE_FORMATS = ("png", "jpeg", "webp")
VIDEO_FORMATS = {"webm": "video/webm", "webp": "image/webp", "mp4": "video/mp4", "gif": "image/gif"}
_LATENT = ("latent", "lanczos", "nearest")
_NOT_VIDEO = ("image_cfg_scale", "guidance", "strength", "batch", "control_strength", "hires")


def split_extra_args(prompt: str) -> tuple[str, dict[str, Any], str | None]:
    """``(prompt without the blocks, the merged JSON of its <sd_cpp_extra_args> blocks, error)``."""
    found: dict[str, Any] = {}
    for block in EXTRA_ARGS.findall(prompt):
        try:
            data = json.loads(block)
        except ValueError as exc:
            return prompt, {}, f"<sd_cpp_extra_args> is not valid JSON ({exc})"
        if not isinstance(data, dict):
            return prompt, {}, "<sd_cpp_extra_args> must hold a JSON object"
        found.update(data)
    return EXTRA_ARGS.sub("", prompt).strip(), found, None


def _get(body: Mapping[str, Any], path: str, errors: dict[str, str]) -> Any:
    node: Any = body
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping):
            errors[".".join(parts[:i])] = "must be a JSON object"
            return None
        node = node.get(part)
        if node is None:
            return None
    return node


def native_values(
    body: Mapping[str, Any], video: bool = False
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, float]], dict[str, str]]:
    """``(values under our names, raw images, loras, errors)`` from an sd-server body."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for theirs, ours in SCALARS.items():
        value = _get(body, theirs, errors)
        if value is not None:
            values[ours] = value
    if values.get("clip_skip") in (-1, 0):
        values.pop("clip_skip")
    if values.get("cache_mode") == "disabled":
        values.pop("cache_mode")
    if values.get("sampler") == "default":
        values.pop("sampler")
    if values.get("scheduler") == "default":
        values.pop("scheduler")
    if values.get("hires_steps") == 0:
        values.pop("hires_steps")
    upscaler = _get(body, "hires.upscaler", errors)
    if values.get("hires") and isinstance(upscaler, str) and upscaler.strip().lower() != "none":
        lowered = upscaler.strip().lower()
        if lowered.startswith(_LATENT):
            values["hires_upscaler"] = lowered
        else:
            values["hires_model"] = upscaler
    raw = {ours: body[theirs] for theirs, ours in IMAGES.items() if body.get(theirs) is not None}
    loras: list[tuple[str, float]] = []
    items = body.get("lora") or []
    if not isinstance(items, list):
        errors["lora"] = "must be a list of {path, multiplier}"
        items = []
    for i, item in enumerate(items):
        path = item.get("path") if isinstance(item, Mapping) else None
        weight = item.get("multiplier", 1.0) if isinstance(item, Mapping) else None
        if not isinstance(path, str) or not isinstance(weight, (int, float)):
            errors[f"lora.{i}"] = "must be {path: name, multiplier: number}"
            continue
        prefix = "|high_noise|" if item.get("is_high_noise") is True else ""
        loras.append((prefix + path, float(weight)))
    fmt = body.get("output_format")
    if video:  # sd-server's body carries these for video too; the video path has no use for them
        for name in _NOT_VIDEO:
            values.pop(name, None)
        fmt = fmt or "webm"
        if fmt in VIDEO_FORMATS:
            values["format"] = fmt
        else:
            errors["output_format"] = (
                f"'{fmt}' is not offered here; use one of {', '.join(VIDEO_FORMATS)}"
            )
    elif fmt is not None and fmt not in IMAGE_FORMATS:
        errors["output_format"] = f"must be one of {', '.join(IMAGE_FORMATS)}"
    return values, raw, loras, errors


def load_slots(body: Mapping[str, Any], errors: dict[str, str]) -> dict[str, str | bool]:
    """The component slots (our extension of sd-server's schema)."""
    load: dict[str, str | bool] = {}
    for slot in LOAD_SLOTS:
        given = body.get(slot)
        if given is None:
            continue
        if isinstance(given, str) or (given is False and slot in OPTIONAL_SLOTS):
            load[slot] = given
        else:
            errors[slot] = "must be a model name"
    return load


def image_kind(images: Mapping[str, Any]) -> str:
    """The job kind an img_gen body asks for, by the images it carries."""
    if "mask" in images:
        return "inpaint"
    if "init_image" in images:
        return "img2img"
    if "control_image" in images:
        return "controlnet"
    if "ref_images" in images:
        return "edit"
    return "txt2img"


def their_names(errors: Mapping[str, str]) -> dict[str, str]:
    """Error fields under sd-server's names."""
    return {REVERSE.get(k, k): v for k, v in errors.items()}


def apply_extra_args(
    values: dict[str, Any], errors: dict[str, str]
) -> tuple[dict[str, Any], list[tuple[str, float]]]:
    """Take ``<sd_cpp_extra_args>{…}</sd_cpp_extra_args>`` out of ``values["prompt"]`` and merge
    its sd-server fields into ``values`` (they win over the outer request's); returns its raw
    images and LoRAs. Problems are reported under ``sd_cpp_extra_args.<its field>``."""
    from sdcpp_service.server import fields

    prompt = values.get("prompt")
    if not isinstance(prompt, str) or "<sd_cpp_extra_args>" not in prompt:
        return {}, []
    clean, extra, error = split_extra_args(prompt)
    values["prompt"] = clean
    if error:
        errors["prompt"] = error
        return {}, []
    native, raw, loras, problems = native_values(extra)
    parsed, more = fields.parse(native, {**fields.GENERATION, **fields.KIND_FIELDS})
    for key, message in their_names({**problems, **more}).items():
        errors[f"sd_cpp_extra_args.{key}"] = message
    values.update(parsed)
    return raw, loras
