"""Image generation on a loaded :class:`Context`: validate, build the C request, run, copy out."""

from __future__ import annotations

import ctypes
import math
import random
import time
from collections.abc import Mapping
from typing import Any

from sdcpp_service import rules
from sdcpp_service.engine import aborts, names, photomaker
from sdcpp_service.engine.cdata import image_to_c, images_from_c, loras_to_c
from sdcpp_service.engine.context import Context, enum_value
from sdcpp_service.engine.images import fit
from sdcpp_service.engine.runtime import ENGINE_LOCK, runtime
from sdcpp_service.errors import EngineError, InvalidImage, InvalidRequest, ModelError
from sdcpp_service.types import GenerateRequest, GenerateResult, LoadOptions, ProgressCallback

MAX_SEED, MAX_BATCH, MAX_STEPS = rules.MAX_SEED, rules.MAX_BATCH, rules.MAX_STEPS


def size_multiple(options: LoadOptions) -> int:
    """Sizes must be multiples of this: UNet checkpoints 64 (VAE 8 × UNet 8), DiT models 16."""
    return 64 if options.model else 16


def spatial_multiple(ctx: Context) -> int:
    return size_multiple(ctx.options)


def resolve_sampler(ctx: Context, req: GenerateRequest) -> tuple[int, int]:
    sampler_name, legacy_scheduler = (None, None)
    if req.sampler:
        sampler_name, legacy_scheduler = names.sampler_from_label(req.sampler)
    sampler = enum_value("sample_method", sampler_name, "sampler")
    if sampler == runtime().native.counts["sample_method"]:
        sampler = ctx.default_sampler()
    scheduler_name = req.scheduler or legacy_scheduler
    if scheduler_name:
        scheduler_name = names.scheduler_from_label(scheduler_name)
    scheduler = enum_value("scheduler", scheduler_name, "scheduler")
    if scheduler == runtime().native.counts["scheduler"]:
        scheduler = ctx.default_scheduler(sampler)
    return sampler, scheduler


def validate(ctx: Context, req: GenerateRequest) -> None:
    """Every check that can be made before the engine sees the request; errors name the field."""
    multiple = spatial_multiple(ctx)
    for field, value in (("width", req.width), ("height", req.height)):
        rules.check_size(field, value, multiple)
    if isinstance(req.batch, int) and not isinstance(req.batch, bool) and req.batch >= 1:
        rules.check_pixels(req.width, req.height, req.batch, multiple=multiple)
    for field, text in (("prompt", req.prompt), ("negative_prompt", req.negative_prompt)):
        rules.check_text(field, text)
    if not 1 <= req.steps <= MAX_STEPS:
        raise InvalidRequest("steps", f"must be between 1 and {MAX_STEPS}, got {req.steps}")
    if not 1 <= req.batch <= MAX_BATCH:
        raise InvalidRequest("batch", f"must be between 1 and {MAX_BATCH}, got {req.batch}")
    if not 0.0 <= req.strength <= 1.0:
        raise InvalidRequest("strength", f"must be between 0 and 1, got {req.strength}")
    if not 0.0 <= req.control_strength <= 10.0:
        raise InvalidRequest(
            "control_strength", f"must be between 0 and 10, got {req.control_strength}"
        )
    for field, number in (("cfg_scale", req.cfg_scale), ("guidance", req.guidance)):
        if not math.isfinite(number) or number < 0:
            raise InvalidRequest(field, f"must be a finite number ≥ 0, got {number}")
    if req.seed > MAX_SEED:
        raise InvalidRequest("seed", f"must be at most {MAX_SEED} (or -1 for random)")
    if req.mask is not None:
        if req.init_image is None:
            raise InvalidRequest("mask", "a mask needs an init image (inpainting)")
        if req.mask.size != req.init_image.size:
            w, h = req.init_image.size
            mw, mh = req.mask.size
            raise InvalidImage("mask", f"mask is {mw}x{mh} but the init image is {w}x{h}")
    if req.control_image is not None and not ctx.options.control_net:
        raise InvalidRequest(
            "control_image", "a control image needs a ControlNet model (control_net)"
        )
    photomaker.validate(ctx.options, req)
    for lora in req.loras:
        from pathlib import Path

        if not Path(lora.path).is_file():
            raise ModelError(lora.path, "LoRA file not found")
    if req.hires:
        if req.hires_width < 0 or req.hires_height < 0 or req.hires_scale <= 0:
            raise InvalidRequest("hires_scale", "hires size and scale must be positive")
        if not 0.0 <= req.hires_denoise <= 1.0:
            raise InvalidRequest(
                "hires_denoise", f"must be between 0 and 1, got {req.hires_denoise}"
            )
    if req.preview not in ("none", *runtime().native.enum_names("preview")):
        names_ = ", ".join(runtime().native.enum_names("preview"))
        raise InvalidRequest("preview", f"unknown preview mode '{req.preview}' (known: {names_})")
    resolve_sampler(ctx, req)


def build_params(
    ctx: Context, req: GenerateRequest, seed: int, keep: list[Any]
) -> tuple[Any, dict[str, Any]]:
    """The ``sd_img_gen_params_t`` for ``req`` (engine defaults first) and the resolved values."""
    rt = runtime()
    lib = rt.native.lib
    p = lib.sd_img_gen_params_t()
    rt.native.img_gen_params_init(ctypes.byref(p))
    prompt = req.prompt.encode("utf-8")
    negative = req.negative_prompt.encode("utf-8")
    keep += [prompt, negative]
    p.prompt, p.negative_prompt = prompt, negative
    p.clip_skip = req.clip_skip
    p.width, p.height = req.width, req.height
    p.seed, p.batch_count = seed, req.batch
    p.strength = req.strength
    p.control_strength = req.control_strength
    sampler, scheduler = resolve_sampler(ctx, req)
    sp = p.sample_params
    sp.sample_method, sp.scheduler, sp.sample_steps = sampler, scheduler, req.steps
    sp.guidance.txt_cfg = req.cfg_scale
    if req.image_cfg_scale is not None:
        sp.guidance.img_cfg = req.image_cfg_scale
    sp.guidance.distilled_guidance = req.guidance
    if req.eta is not None:
        sp.eta = req.eta
    if req.flow_shift is not None:
        sp.flow_shift = req.flow_shift
    if req.init_image is not None:
        p.init_image = image_to_c(fit(req.init_image.convert("RGB"), req.width, req.height), keep)
    if req.mask is not None:
        p.mask_image = image_to_c(fit(req.mask.convert("L"), req.width, req.height), keep)
    if req.control_image is not None:
        control = image_to_c(fit(req.control_image.convert("RGB"), req.width, req.height), keep)
        if req.canny and not lib.preprocess_canny(control, 0.08, 0.08, 0.8, 1.0, False):
            raise EngineError("canny preprocessing failed")
        p.control_image = control
    if req.ref_images:
        arr = (lib.sd_image_t * len(req.ref_images))()
        for i, ref in enumerate(req.ref_images):
            arr[i] = image_to_c(ref.convert("RGB"), keep)
        keep.append(arr)
        p.ref_images, p.ref_images_count = arr, len(req.ref_images)
        p.auto_resize_ref_image = True
    if req.loras:
        p.loras, p.lora_count = loras_to_c(req.loras, keep)
    photomaker.to_c(req, p, lib, keep)
    p.vae_tiling_params.enabled = req.vae_tiling
    p.cache.mode = _cache_mode(req.cache_mode)
    if req.hires:
        h = p.hires
        h.enabled = True
        upscaler = "model" if req.hires_model else req.hires_upscaler
        h.upscaler = enum_value("hires_upscaler", upscaler, "hires_upscaler")
        if req.hires_model:
            raw = req.hires_model.encode("utf-8")
            keep.append(raw)
            h.model_path = raw
        h.scale = req.hires_scale
        h.target_width, h.target_height = req.hires_width, req.hires_height
        h.steps, h.denoising_strength = req.hires_steps, req.hires_denoise
    resolved = {
        "sampler": _name("sample_method", sampler),
        "scheduler": _name("scheduler", scheduler),
    }
    return p, resolved


def _name(kind: str, value: int) -> str:
    for name, v in runtime().native.enum_names(kind).items():
        if v == value:
            return name
    return str(value)


def _cache_mode(name: str) -> int:
    from sdcpp_service.engine.sdcpp import highlevel

    table: dict[str, int] = {k: int(v) for k, v in highlevel().SD_CACHE_MODE_MAP.items()}
    key = (name or "disabled").strip().lower()
    if key not in table:
        raise InvalidRequest(
            "cache_mode", f"unknown cache mode '{name}' (known: {', '.join(table)})"
        )
    return table[key]


#: hires upscalers that decode, resize in pixel space and encode again (sd-cli's list)
_PIXEL_HIRES = ("lanczos", "nearest", "model")
_ENCODE_FIELDS = ("init_image", "ref_images", "hires", "hires_upscaler", "hires_model")


def encodes(fields: Mapping[str, Any]) -> bool:
    """Whether a request (its fields, as ``GenerateRequest`` names them) needs the VAE encoder:
    an init image, reference images or a pixel-space hires pass — what makes sd-cli load the
    encoder (``vae_decode_only = false`` in examples/cli/main.cpp)."""
    if fields.get("init_image") is not None or fields.get("ref_images"):
        return True
    upscaler = str(fields.get("hires_upscaler") or "latent").strip().lower()
    return bool(fields.get("hires")) and (
        bool(fields.get("hires_model")) or upscaler in _PIXEL_HIRES
    )


def generate(
    ctx: Context, req: GenerateRequest, progress: ProgressCallback | None = None
) -> GenerateResult:
    """Run one request on ``ctx``; the images come back at the requested (or hires) size."""
    t_start = time.perf_counter()
    validate(ctx, req)
    if ctx.options.vae_decode_only and encodes({f: getattr(req, f) for f in _ENCODE_FIELDS}):
        field = (
            "init_image"
            if req.init_image is not None
            else "ref_images"
            if req.ref_images
            else "hires"
        )
        raise InvalidRequest(
            field, "needs the VAE encoder, but the model was loaded with vae_decode_only=True"
        )
    seed = req.seed if req.seed >= 0 else random.randint(0, MAX_SEED)
    keep: list[Any] = []
    params, resolved = build_params(ctx, req, seed, keep)
    rt = runtime()
    preview = enum_value("preview", req.preview, "preview") if req.preview != "none" else 0
    with ENGINE_LOCK, rt.progress.attached(progress, "sampling", preview, req.preview_interval):
        rt.log.install()
        mark = rt.log.mark()
        t_native = time.perf_counter()
        with aborts.running("generating", ctx.options.components(), [lo.path for lo in req.loras]):
            ptr = rt.native.lib.generate_image(ctx.use(), ctypes.byref(params))
        native_seconds = time.perf_counter() - t_native
        errors = rt.log.since(mark, 3)
    images = images_from_c(ptr, req.batch) if ptr else []
    del keep
    if len(images) != req.batch:
        detail = errors[-1].split("] ", 1)[-1] if errors else "no image came back"
        raise EngineError(f"generation failed: {detail}")
    images = [im.convert("RGB") if im.mode != "RGB" else im for im in images]
    seeds = [seed + i for i in range(req.batch)]
    total = time.perf_counter() - t_start
    timings = {"engine": native_seconds, "total": total, "overhead": total - native_seconds}
    params_used = {**req.summary(), **resolved, "seed": seed, "seeds": seeds}
    return GenerateResult(images=images, seeds=seeds, params=params_used, timings=timings)
