"""Video generation (Wan) on a loaded pipeline: validate, build the C request, run, copy out.

Which inputs a model takes, its size multiple and its frame rate come from one ordered table
(:data:`FAMILIES`) keyed by the detected arch and variant. Everything that can be checked is
checked before the engine runs (the engine itself silently rounds sizes up and frame counts
down): frames are 4k+1 (Wan's VAE compresses time 4×), sizes a multiple of the VAE factor ×
the 2×2 patch (16 for Wan2.1 and the Wan2.2 A14B pair, 32 for Wan2.2 TI2V 5B, whose VAE is 16×).
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from sdcpp_service import rules
from sdcpp_service.engine import aborts, names
from sdcpp_service.engine.cdata import image_to_c, images_from_c, loras_to_c
from sdcpp_service.engine.context import enum_value
from sdcpp_service.engine.generate import _cache_mode
from sdcpp_service.engine.images import fit
from sdcpp_service.engine.runtime import ENGINE_LOCK, runtime
from sdcpp_service.engine.videofile import check_fps
from sdcpp_service.errors import EngineError, InvalidRequest, ModelError, UnsupportedModel
from sdcpp_service.rules import (
    MAX_SEED,
    MAX_STEPS,
    VideoFamily,
    check_frames,
)
from sdcpp_service.types import LoadOptions, Progress, ProgressCallback, VideoRequest

if TYPE_CHECKING:
    from sdcpp_service.engine.pipeline import Pipeline
    from sdcpp_service.models import ModelInfo

MAX_SIDE = rules.MAX_SIDE


def check_high_noise(options: LoadOptions, info: ModelInfo) -> None:
    """A Wan2.2 A14B high-noise model must be the same kind of model as the (low-noise) main one."""
    path = options.high_noise_diffusion_model
    if not path:
        return
    from sdcpp_service.models import inspect

    if not Path(path).is_file():
        raise ModelError(path, "high-noise model file not found")
    other = inspect(Path(path))
    if other.kind != "model" or (other.arch, other.variant) != (info.arch, info.variant):
        raise UnsupportedModel(
            path,
            f"is a {other.title} {other.kind}; the high-noise model must be the same kind of "
            f"model as {Path(info.path).name} ({info.title})",
        )


def check_size(field: str, value: int, family: VideoFamily) -> None:
    rules.check_size(field, value, family.multiple, family.label)


def _number(field: str, value: float, low: float, high: float = math.inf) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or not low <= value <= high:
        bound = f"between {low:g} and {high:g}" if math.isfinite(high) else f"≥ {low:g}"
        raise InvalidRequest(field, f"must be a finite number {bound}, got {value!r}")


def validate(pipe: Pipeline, family: VideoFamily, req: VideoRequest) -> None:
    """Every check that can be made before the engine sees the request; errors name the field."""
    check_size("width", req.width, family)
    check_size("height", req.height, family)
    check_frames(req.frames)
    check_fps(req.fps)
    if not isinstance(req.steps, int) or not 1 <= req.steps <= MAX_STEPS:
        raise InvalidRequest("steps", f"must be between 1 and {MAX_STEPS}, got {req.steps}")
    _number("cfg_scale", req.cfg_scale, 0.0)
    if req.seed > MAX_SEED:
        raise InvalidRequest("seed", f"must be at most {MAX_SEED} (or -1 for random)")
    if req.flow_shift is not None:
        _number("flow_shift", req.flow_shift, 0.0)
    given = {"init_image"} if req.init_image is not None else set()
    given |= {"end_image"} if req.end_image is not None else set()
    given |= {"control_frames"} if req.control_frames else set()
    for field, reason in rules.video_inputs(family, given).items():
        raise InvalidRequest(field, reason)
    _number("vace_strength", req.vace_strength, 0.0, 10.0)
    high = pipe.options.high_noise_diffusion_model
    for field, value in (
        ("high_noise_steps", req.high_noise_steps),
        ("high_noise_cfg_scale", req.high_noise_cfg_scale),
        ("high_noise_sampler", req.high_noise_sampler),
    ):
        if value is not None and not high:
            raise InvalidRequest(field, "needs a high-noise model (high_noise_diffusion_model)")
    if req.high_noise_steps is not None and not 1 <= req.high_noise_steps <= MAX_STEPS:
        raise InvalidRequest("high_noise_steps", f"must be between 1 and {MAX_STEPS}")
    if req.high_noise_cfg_scale is not None:
        _number("high_noise_cfg_scale", req.high_noise_cfg_scale, 0.0)
    if not 0.0 < req.moe_boundary < 1.0:
        raise InvalidRequest("moe_boundary", f"must be between 0 and 1, got {req.moe_boundary}")
    for lora in req.loras:
        if not Path(lora.path).is_file():
            raise ModelError(lora.path, "LoRA file not found")
    _samplers(pipe, req)
    _cache_mode(req.cache_mode)


def _samplers(pipe: Pipeline, req: VideoRequest) -> tuple[int, int, int]:
    """(sampler, scheduler, high-noise sampler) engine values; unknown names raise UnknownName."""
    ctx, count = pipe.context, runtime().native.counts

    def sampler(label: str | None, field: str) -> tuple[int, str | None]:
        name, legacy = names.sampler_from_label(label) if label else (None, None)
        value = enum_value("sample_method", name, field)
        return (ctx.default_sampler() if value == count["sample_method"] else value), legacy

    main, legacy = sampler(req.sampler, "sampler")
    high = sampler(req.high_noise_sampler, "high_noise_sampler")[0] if req.high_noise_sampler else main  # fmt: skip
    label = req.scheduler or legacy
    scheduler = enum_value("scheduler", names.scheduler_from_label(label) if label else None, "scheduler")  # fmt: skip
    if scheduler == count["scheduler"]:
        scheduler = ctx.default_scheduler(main)
    return main, scheduler, high


def build_params(pipe: Pipeline, req: VideoRequest, seed: int, keep: list[Any]) -> Any:
    """The ``sd_vid_gen_params_t`` for ``req`` (engine defaults first)."""
    rt = runtime()
    lib = rt.native.lib
    p = lib.sd_vid_gen_params_t()
    rt.native.vid_gen_params_init(ctypes.byref(p))
    prompt, negative = req.prompt.encode("utf-8"), req.negative_prompt.encode("utf-8")
    keep += [prompt, negative]
    p.prompt, p.negative_prompt, p.clip_skip = prompt, negative, req.clip_skip
    p.width, p.height, p.video_frames, p.seed = req.width, req.height, req.frames, seed
    sampler, scheduler, high_sampler = _samplers(pipe, req)
    sp = p.sample_params
    sp.sample_method, sp.scheduler, sp.sample_steps = sampler, scheduler, req.steps
    sp.guidance.txt_cfg = req.cfg_scale
    if req.eta is not None:
        sp.eta = req.eta
    if req.flow_shift is not None:
        sp.flow_shift = req.flow_shift
    if pipe.options.high_noise_diffusion_model:
        hp = p.high_noise_sample_params
        hp.sample_method, hp.scheduler = high_sampler, scheduler
        hp.sample_steps = -1 if req.high_noise_steps is None else req.high_noise_steps
        cfg = req.cfg_scale if req.high_noise_cfg_scale is None else req.high_noise_cfg_scale
        hp.guidance.txt_cfg = cfg
        if req.eta is not None:
            hp.eta = req.eta
        p.moe_boundary = req.moe_boundary
    size = (req.width, req.height)
    if req.init_image is not None:
        p.init_image = image_to_c(fit(req.init_image.convert("RGB"), *size), keep)
    if req.end_image is not None:
        p.end_image = image_to_c(fit(req.end_image.convert("RGB"), *size), keep)
    if req.control_frames:
        arr = (lib.sd_image_t * len(req.control_frames))()
        for i, frame in enumerate(req.control_frames):
            arr[i] = image_to_c(fit(frame.convert("RGB"), *size), keep)
        keep.append(arr)
        p.control_frames, p.control_frames_size = arr, len(req.control_frames)
    p.vace_strength = req.vace_strength
    if req.loras:
        p.loras, p.lora_count = loras_to_c(req.loras, keep)
    p.vae_tiling_params.enabled = req.vae_tiling
    p.cache.mode = _cache_mode(req.cache_mode)
    return p


def _name(kind: str, value: int) -> str:
    return next((n for n, v in runtime().native.enum_names(kind).items() if v == value), str(value))


def two_stage(progress: ProgressCallback, total: int) -> ProgressCallback:
    """One count over the high-noise then low-noise sampling (the engine counts each from 0).

    ``total`` is ``steps`` (automatic split) or ``steps + high_noise_steps``."""
    state = {"offset": 0, "step": 0, "total": 0, "stage": 0}

    def report(p: Progress) -> None:
        if p.phase != "sampling":  # loading LoRAs, decoding: their own counts
            progress(p)
            return
        if p.phase == "sampling" and p.step < state["step"]:  # the next sampler started
            state["offset"] += state["total"]
            state["stage"] += 1
        if p.phase == "sampling":
            state["step"], state["total"] = p.step, p.total
        phase = p.phase if p.phase != "sampling" or state["stage"] else "high noise"
        step = min(total, state["offset"] + p.step)
        progress(dataclasses.replace(p, step=step, total=total, phase=phase))

    return report


def generate(
    pipe: Pipeline, req: VideoRequest, seed: int, progress: ProgressCallback | None
) -> tuple[list[Image.Image], float, dict[str, str]]:
    """Run a validated request: (RGB frames, engine seconds, resolved sampler names)."""
    if progress is not None and pipe.options.high_noise_diffusion_model:
        progress = two_stage(progress, req.steps + (req.high_noise_steps or 0))
    keep: list[Any] = []
    params = build_params(pipe, req, seed, keep)
    rt = runtime()
    count = ctypes.c_int(0)
    with ENGINE_LOCK, rt.progress.attached(progress):
        rt.log.install()
        mark = rt.log.mark()
        t_native = time.perf_counter()
        files, loras = pipe.options.components(), [lo.path for lo in req.loras]
        with aborts.running("generating a video", files, loras):
            ptr = rt.native.lib.generate_video(
                pipe.context.use(), ctypes.byref(params), ctypes.byref(count)
            )
        native_seconds = time.perf_counter() - t_native
        errors = rt.log.since(mark, 3)
    frames = images_from_c(ptr, count.value) if ptr else []
    del keep
    if not frames:
        detail = errors[-1].split("] ", 1)[-1] if errors else "no frames came back"
        raise EngineError(f"video generation failed: {detail}")
    sampler, scheduler, high = _samplers(pipe, req)
    resolved = {
        "sampler": _name("sample_method", sampler),
        "scheduler": _name("scheduler", scheduler),
    }
    if pipe.options.high_noise_diffusion_model:
        resolved["high_noise_sampler"] = _name("sample_method", high)
    return [f if f.mode == "RGB" else f.convert("RGB") for f in frames], native_seconds, resolved
