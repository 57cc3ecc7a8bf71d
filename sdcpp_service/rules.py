"""Request rules, declared once: bounds and choices of every request field, and the pure checks
that depend on the model (size multiple per family, Wan's 4k+1 frames, which images a model takes).

Every door reads them: the CLI options (help and limits), the server's parsing
(``server/fields.py``, ``server/prepare.py``), the OpenAPI document (``server/openapi.py``) and the
engine's own checks before it runs (``engine/generate.py``, ``engine/videogen.py``). Defaults live
on the request dataclasses in :mod:`sdcpp_service.types`; :func:`default` reads them from there.
Whether a LoRA or ControlNet fits a model is read from both headers in
:mod:`sdcpp_service.models.addons`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING, Any

from sdcpp_service.errors import InvalidRequest

if TYPE_CHECKING:
    from sdcpp_service.models import ModelInfo

MAX_SEED = 2**32 - 1
MAX_SIDE = 8192
MIN_SIDE = 16
MAX_BATCH = 64
MAX_STEPS = 1000
MAX_FRAMES = 1025
#: width × height × batch of one request in the library and the CLI (one 8192² image); the
#: server has its own, lower, ``--max-pixels``
MAX_PIXELS = MAX_SIDE * MAX_SIDE
#: characters of a prompt: far past any text encoder's window (CLIP 77 tokens, T5 512,
#: LLM encoders a few thousand), short of what makes the tokenizer crawl or crash
MAX_PROMPT_CHARS = 20_000
#: characters of a prompt for the CLIP-only UNet families: CLIP reads 77-token windows, and every
#: window past the first costs another text-encoder pass (a 10 KB prompt: 13× the sampling time)
MAX_CLIP_PROMPT_CHARS = 4_000
#: nesting of a request body (objects and lists)
MAX_DEPTH = 32
PREVIEW_MODES = ("none", "proj", "tae", "vae")
VIDEO_FORMATS = ("mp4", "webm", "gif", "webp")


@dataclass(frozen=True)
class Rule:
    """A field's type, bounds (``lo``/``hi`` inclusive; ``None``: unbounded) and choices."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    nullable: bool = False
    choices: tuple[str, ...] = ()
    max_length: int | None = None


_TEXT = Rule(str, max_length=MAX_PROMPT_CHARS)

#: GenerateRequest fields a client may set (images and LoRAs are handled apart).
GENERATION: dict[str, Rule] = {
    "prompt": _TEXT,
    "negative_prompt": _TEXT,
    "width": Rule(int, MIN_SIDE, MAX_SIDE),
    "height": Rule(int, MIN_SIDE, MAX_SIDE),
    "steps": Rule(int, 1, MAX_STEPS),
    "cfg_scale": Rule(float, 0, 100),
    "image_cfg_scale": Rule(float, 0, 100, nullable=True),
    "guidance": Rule(float, 0, 100),
    "sampler": Rule(str, nullable=True, max_length=100),
    "scheduler": Rule(str, nullable=True, max_length=100),
    "seed": Rule(int, -1, MAX_SEED),
    "batch": Rule(int, 1, MAX_BATCH),
    "clip_skip": Rule(int, -1, 12),
    "eta": Rule(float, 0, 10, nullable=True),
    "flow_shift": Rule(float, 0, 100, nullable=True),
    "strength": Rule(float, 0, 1),
    "control_strength": Rule(float, 0, 10),
    "canny": Rule(bool),
    "vae_tiling": Rule(bool),
    "cache_mode": Rule(str, max_length=100),
    "hires": Rule(bool),
    "hires_upscaler": Rule(str, max_length=100),
    "hires_model": Rule(str, max_length=1000),
    "hires_scale": Rule(float, 1, 8),
    "hires_width": Rule(int, 0, MAX_SIDE),
    "hires_height": Rule(int, 0, MAX_SIDE),
    "hires_steps": Rule(int, 0, MAX_STEPS),
    "hires_denoise": Rule(float, 0, 1),
    "preview": Rule(str, choices=PREVIEW_MODES),
    "preview_interval": Rule(int, 1, MAX_STEPS),
    "pm_style_strength": Rule(float, 0, 100),
}

#: Fields of the ``upscale`` and ``video`` kinds.
KIND_FIELDS: dict[str, Rule] = {
    "scale": Rule(float, 0.05, 16, nullable=True),
    "tile": Rule(int, 16, 4096),
    "frames": Rule(int, 1, MAX_FRAMES),
    "fps": Rule(float, 1, 240),
    "format": Rule(str, choices=VIDEO_FORMATS),
    "vace_strength": Rule(float, 0, 10),
}

#: LoRA weights (A1111 allows negative weights; past ±10 nothing useful is left).
LORA_WEIGHT = Rule(float, -10, 10)


def default(request_type: type, name: str) -> Any:
    """The default of ``name`` on a request dataclass (``GenerateRequest``, ``VideoRequest``)."""
    for f in dataclass_fields(request_type):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    raise KeyError(name)


def check_text(name: str, value: str, limit: int | None = MAX_PROMPT_CHARS) -> str:
    """Text a store and the engine can take: valid UTF-8 (no lone surrogates), within ``limit``
    characters (the value itself is never echoed back)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            name, f"is not valid Unicode text (a lone surrogate at character {exc.start})"
        ) from None
    if "\x00" in value:
        raise InvalidRequest(name, "must not contain NUL characters")
    if limit is not None and len(value) > limit:
        raise InvalidRequest(name, f"is {len(value)} characters long; the limit is {limit}")
    return value


def check_tree(data: Any) -> tuple[str, str] | None:
    """The first problem in a decoded JSON body: ``("", "too deep")`` past :data:`MAX_DEPTH`, or
    (dotted field, reason) for text that is not valid Unicode (a lone surrogate), key or value."""
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack:
        path, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return "", "too deep"
        if isinstance(value, str):
            try:
                check_text(path or "body", value, None)
            except InvalidRequest as exc:
                return exc.field, exc.reason
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                try:
                    check_text("body", str(key), 1000)
                except InvalidRequest:
                    return path or "body", "has a field name that is not valid Unicode text"
                stack.append((child, item, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}", item, depth + 1) for i, item in enumerate(value))
    return None


def _bounds(rule: Rule) -> str:
    if rule.lo is not None and rule.hi is not None:
        return f"between {rule.lo:g} and {rule.hi:g}"
    return f"≥ {rule.lo:g}" if rule.lo is not None else f"≤ {rule.hi:g}"


def describe(rule: Rule) -> str:
    """A rule as the CLI's help shows it: ``1–1000``, ``≥ 16``, ``none|proj|tae|vae``."""
    if rule.choices:
        return "|".join(rule.choices)
    if rule.lo is not None and rule.hi is not None:
        return f"{rule.lo:g}–{rule.hi:g}"
    if rule.lo is not None or rule.hi is not None:
        return _bounds(rule)
    return ""


def rule_of(name: str) -> Rule:
    """The rule of a generation, upscale or video field."""
    found = GENERATION.get(name) or KIND_FIELDS.get(name)
    if found is None:
        raise KeyError(name)
    return found


def coerce(name: str, value: Any, rule: Rule) -> Any:
    """``value`` as ``rule.kind`` within bounds and choices, or InvalidRequest naming ``name``."""
    if value is None:
        if rule.nullable:
            return None
        raise InvalidRequest(name, "must not be null")
    if rule.kind is bool:
        if isinstance(value, bool):
            return value
        raise InvalidRequest(name, "must be true or false")
    if rule.kind is str:
        if not isinstance(value, str):
            raise InvalidRequest(name, f"must be a string, got {type(value).__name__}")
        check_text(name, value, rule.max_length)
        if rule.choices and value not in rule.choices:
            raise InvalidRequest(name, f"must be one of {', '.join(rule.choices)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(name, f"must be a number, got {type(value).__name__}")
    if isinstance(value, int) and value.bit_length() > 64:
        raise InvalidRequest(name, f"must be {_bounds(rule)}; got a {len(str(abs(value)))}-digit number")  # fmt: skip
    if rule.kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise InvalidRequest(name, f"must be a whole number, got {value}")
            value = int(value)
    elif not math.isfinite(value):
        raise InvalidRequest(name, f"must be a finite number, got {value}")
    else:
        value = float(value)
    if rule.lo is not None and value < rule.lo or rule.hi is not None and value > rule.hi:
        raise InvalidRequest(name, f"must be {_bounds(rule)}, got {value}")
    return value


def parse(
    body: Mapping[str, Any], table: Mapping[str, Rule] = GENERATION
) -> tuple[dict[str, Any], dict[str, str]]:
    """Coerce every field of ``table`` present in ``body``; returns (values, errors)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, rule in table.items():
        if name in body:
            try:
                values[name] = coerce(name, body[name], rule)
            except InvalidRequest as exc:
                errors[name] = exc.reason
    return values, errors


def split_lora(spec: str) -> tuple[str, float]:
    """``NAME`` or ``NAME:WEIGHT`` (CLI ``--lora``, A1111 strings): the weight is after the last
    colon; a Windows drive colon or a colon inside a path is kept in the name."""
    name, sep, raw = spec.rpartition(":")
    if not sep or not name or "/" in raw or "\\" in raw:
        return spec, 1.0
    try:
        weight = float(raw)
    except ValueError:
        raise InvalidRequest("lora", f"'{spec}': the weight after ':' must be a number") from None
    return name, coerce("lora", weight, LORA_WEIGHT)


def nearest_frames(frames: int) -> str:
    """The nearest 4k+1 frame count(s) to ``frames``, within the limit."""
    lower = max(1, min(MAX_FRAMES, (frames - 1) // 4 * 4 + 1))
    upper = min(MAX_FRAMES, lower + 4)
    gap = (frames - lower) - (upper - frames)
    return str(lower) if gap < 0 or upper == lower else str(upper) if gap > 0 else f"{lower} or {upper}"  # fmt: skip


def check_frames(frames: int) -> None:
    """Wan makes 4k+1 frames (its VAE compresses time 4×), 1 … :data:`MAX_FRAMES`."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InvalidRequest("frames", f"must be a whole number ≥ 1, got {frames!r}")
    if frames > MAX_FRAMES:
        raise InvalidRequest("frames", f"{frames} is over the {MAX_FRAMES} frame limit")
    if (frames - 1) % 4:
        raise InvalidRequest(
            "frames",
            f"Wan makes 4k+1 frames (1, 5, 9, …, 33, 81), not {frames}; "
            f"the nearest valid count is {nearest_frames(frames)}",
        )


def nearest_size(value: int, multiple: int) -> str:
    """The nearest multiple(s) of ``multiple`` to ``value`` inside ``multiple`` … MAX_SIDE."""
    top = MAX_SIDE // multiple * multiple
    lower = max(multiple, min(top, value // multiple * multiple))
    upper = min(top, lower + multiple)
    gap = (value - lower) - (upper - value)
    return str(lower) if gap < 0 or upper == lower else str(upper) if gap > 0 else f"{lower} or {upper}"  # fmt: skip


def check_size(field: str, value: int, multiple: int, label: str = "this model") -> None:
    """A side inside MIN_SIDE … MAX_SIDE and a multiple of the model's ``multiple``; the
    suggestion always passes both checks."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(field, f"must be a positive whole number of pixels, got {value!r}")
    if value > MAX_SIDE:
        raise InvalidRequest(
            field,
            f"{value} is over the {MAX_SIDE} pixel limit; use {nearest_size(MAX_SIDE, multiple)}",  # fmt: skip
        )
    if value % multiple or value < multiple:
        raise InvalidRequest(
            field,
            f"{value} is not a multiple of {multiple} for {label}; "
            f"the nearest valid size is {nearest_size(value, multiple)}",
        )


def check_pixels(
    width: int, height: int, count: int, limit: int = MAX_PIXELS, multiple: int = 64,
    what: str = "images", where: str = "one request",
) -> None:  # fmt: skip
    """``width × height × count`` within ``limit``; the message names the limit and a size
    (same aspect, same count, the model's multiple) and a count that fit."""
    total = width * height * count
    if total <= limit:
        return
    factor = math.sqrt(limit / total)
    w = max(multiple, int(width * factor) // multiple * multiple)
    h = max(multiple, int(height * factor) // multiple * multiple)
    hint = f"{w}x{h} × {count} fits" if w * h * count <= limit else ""
    fewer = limit // (width * height)
    if fewer >= 1:
        hint += (" or " if hint else "") + f"{width}x{height} × {fewer} fits"
    raise InvalidRequest(
        "width",
        f"{width}x{height} × {count} {what} is {total} pixels, over the {limit} pixel limit of "
        f"{where}" + (f"; {hint}" if hint else ""),
    )


def size_multiple(info: ModelInfo) -> int:
    """Sizes are multiples of this: a full checkpoint (``model_path``: SD1/SD2/SDXL) 64 (VAE 8 ×
    UNet 8), Wan2.2 TI2V 32 (its VAE is 16×), other DiT models 16 (VAE 8 × patch 2)."""
    if info.arch == "wan2_2_ti2v":
        return 32
    return 64 if info.slot == "model_path" else 16


@dataclass(frozen=True)
class VideoFamily:
    """What one kind of video model takes. ``init_image``: no, optional or required."""

    label: str
    arch: str
    variant: str  # prefix of the detected variant ("" = any)
    multiple: int
    fps: float
    init_image: str = "no"
    end_image: bool = False
    control_frames: bool = False

    def matches(self, info: ModelInfo) -> bool:
        return info.arch == self.arch and (info.variant or "").startswith(self.variant)


#: Video models of the pinned engine, most specific first (arch/variant from models/archs.py).
FAMILIES: tuple[VideoFamily, ...] = (
    VideoFamily("Wan2.2 TI2V 5B", "wan2_2_ti2v", "", 32, 24.0, init_image="optional"),
    VideoFamily("Wan2.2 I2V A14B", "wan2_2_i2v", "", 16, 16.0, "required", end_image=True),
    VideoFamily("Wan2.1 FLF2V", "wan2", "flf2v", 16, 16.0, "required", end_image=True),
    VideoFamily("Wan2.1 I2V", "wan2", "i2v", 16, 16.0, "required", end_image=True),
    VideoFamily("Wan VACE", "wan2", "vace", 16, 16.0, "optional", control_frames=True),
    VideoFamily("Wan T2V", "wan2", "t2v", 16, 16.0),
)


def family_of(info: ModelInfo) -> VideoFamily:
    """The video family of a model, or UnsupportedModel saying what it is instead."""
    from pathlib import Path

    from sdcpp_service.errors import UnsupportedModel

    for family in FAMILIES:
        if family.matches(info):
            return family
    if info.arch == "svd":
        raise UnsupportedModel(
            info.path, "SVD loads, but the pinned engine has no SVD video pipeline; use a Wan model"
        )
    raise UnsupportedModel(
        info.path,
        f"{Path(info.path).name} is a {info.title} {info.kind}, not a video model (Wan 2.1/2.2); "
        "`sdcpp generate` makes images",
    )


def prompt_limit(info: ModelInfo) -> int:
    """Prompt characters the model's text encoder is given at most."""
    return MAX_CLIP_PROMPT_CHARS if size_multiple(info) == 64 else MAX_PROMPT_CHARS


def video_inputs(family: VideoFamily, given: set[str]) -> dict[str, str]:
    """Which of the images ``given`` (init_image, end_image, control_frames) the family takes."""
    label, problems = family.label, {}
    if "init_image" not in given and family.init_image == "required":
        problems["init_image"] = f"{label} makes video from an image: give init_image"
    if "init_image" in given and family.init_image == "no":
        problems["init_image"] = f"{label} is text-to-video only; it takes no image"
    if "end_image" in given and not family.end_image:
        problems["end_image"] = f"{label} takes no end image (FLF2V and I2V models do)"
    if "control_frames" in given and not family.control_frames:
        problems["control_frames"] = f"{label} takes no control video (VACE does)"
    return problems


def for_model(info: ModelInfo, kind: str, values: Mapping[str, Any], given: set[str]) -> dict[str, str]:  # fmt: skip
    """Every rule that depends on the model, run at submission: the size multiple of its family,
    and for video the frames and the images it takes. ``given``: the image fields present."""
    from sdcpp_service.errors import UnsupportedModel

    problems: dict[str, str] = {}
    multiple, label = size_multiple(info), info.title
    if kind == "video":
        try:
            family = family_of(info)
        except UnsupportedModel as exc:
            return {"model": exc.reason}
        multiple, label = family.multiple, family.label
        problems.update(video_inputs(family, given))
    limit = prompt_limit(info)
    for field in ("prompt", "negative_prompt"):
        text = values.get(field)
        if isinstance(text, str) and len(text) > limit:
            problems[field] = f"is {len(text)} characters long; {label} takes at most {limit}"
    for field in ("width", "height"):
        value = values.get(field)
        if isinstance(value, int):
            try:
                check_size(field, value, multiple, label)
            except InvalidRequest as exc:
                problems[field] = exc.reason
    return problems


def check_limits(values: Mapping[str, Any]) -> None:
    """The model-independent size limits of a generation (sides, pixels of the batch), checked
    before any model loads; suggestions are multiples of 64, valid for every family."""
    width, height = values.get("width"), values.get("height")
    for field, value in (("width", width), ("height", height)):
        if isinstance(value, int) and value > MAX_SIDE:
            check_size(field, value, 64)
    batch = values.get("batch") or 1
    if isinstance(width, int) and isinstance(height, int) and isinstance(batch, int):
        check_pixels(width, height, batch)
