"""sd-server's ``GET /sdcpp/v1/capabilities``: the loaded (or default) model, the modes it can
run, sd-server's default request bodies filled with the model's defaults, the samplers,
schedulers, LoRAs, upscalers and limits."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sdcpp_service.errors import InvalidRequest, SdcppError
from sdcpp_service.server import models
from sdcpp_service.server import sdserver_schema as schema
from sdcpp_service.server.routes.common import service
from sdcpp_service.server.service import Service


def is_video(entry: models.ModelEntry) -> bool:
    """Whether a main model makes videos (sd-server's ``vid_gen`` mode)."""
    return (entry.arch or "").startswith("wan")


def _defaults(svc: Service, video: bool) -> dict[str, Any]:
    """sd-server's default request body, filled with the default model's defaults."""
    from sdcpp_service.models import inspect

    steps, cfg, width, height, sampler = 20, 7.0, 512, 512, "euler_a"
    try:
        info = inspect(svc.default_model())
        if info.defaults is not None:
            d = info.defaults
            steps, cfg, width, height = d.steps, d.cfg_scale, d.width, d.height
            sampler = d.sampler or sampler
    except SdcppError:
        pass
    guidance: dict[str, Any] = {"txt_cfg": cfg, "img_cfg": None, "distilled_guidance": 3.5}
    guidance["slg"] = {"layers": [7, 8, 9], "layer_start": 0.01, "layer_end": 0.2, "scale": 0.0}
    sample = {
        "scheduler": "default",
        "sample_method": sampler,
        "sample_steps": steps,
        "eta": None,
        "shifted_timestep": 0,
        "flow_shift": None,
        "guidance": guidance,
    }
    base: dict[str, Any] = {
        "prompt": "",
        "negative_prompt": "",
        "clip_skip": -1,
        "width": width,
        "height": height,
        "strength": 0.75,
        "seed": -1,
        "sample_params": sample,
        "vae_tiling_params": {
            "enabled": False,
            "tile_size_x": 0,
            "tile_size_y": 0,
            "target_overlap": 0.5,
            "rel_size_x": 0.0,
            "rel_size_y": 0.0,
        },
        "cache_mode": "disabled",
        "cache_option": "",
        "scm_mask": "",
        "scm_policy_dynamic": True,
        "output_format": "webm" if video else "png",
        "output_compression": 100,
    }
    if video:
        extra = {"video_frames": 33, "fps": 16, "moe_boundary": 0.875, "vace_strength": 1.0}
        return {**base, **extra, "high_noise_sample_params": {**sample, "sample_steps": -1}}
    hires = {
        "enabled": False,
        "upscaler": "Latent",
        "scale": 2.0,
        "target_width": 0,
        "target_height": 0,
        "steps": 0,
        "denoising_strength": 0.7,
        "upscale_tile_size": 128,
    }
    extra = {"batch_count": 1, "auto_resize_ref_image": True, "increase_ref_index": False}
    return {**base, **extra, "control_strength": 0.9, "hires": hires}


async def capabilities(request: Request) -> Response:
    return JSONResponse(await asyncio.to_thread(_capabilities, service(request)))


def _capabilities(svc: Service) -> dict[str, Any]:
    entries = models.scan(svc.settings)
    mains = [e for e in entries if e.kind in models.MAIN_KINDS]
    try:
        default = svc.default_model()
    except InvalidRequest:
        default = ""
    current = next((e for e in mains if str(e.path) == default), None)
    modes = ["img_gen"] if any(not is_video(e) for e in mains) else []
    modes += ["vid_gen"] if any(is_video(e) for e in mains) else []
    mode = "vid_gen" if current is not None and is_video(current) else "img_gen"
    img_features = ["init_image", "mask_image", "control_image", "ref_images", "lora"]
    img_features += ["vae_tiling", "hires", "cache", "cancel_queued", "cancel_generating"]
    vid_features = ["init_image", "end_image", "control_frames", "high_noise_sample_params"]
    vid_features += ["lora", "vae_tiling", "cache", "cancel_queued", "cancel_generating"]
    defaults = {"img_gen": _defaults(svc, False), "vid_gen": _defaults(svc, True)}
    formats = {"img_gen": list(schema.IMAGE_FORMATS), "vid_gen": list(schema.VIDEO_FORMATS)}
    features = {
        "img_gen": dict.fromkeys(img_features, True),
        "vid_gen": dict.fromkeys(vid_features, True),
    }
    info = svc.engine_info
    latent = ["Latent", "Latent (nearest)", "Latent (nearest-exact)", "Latent (antialiased)"]
    latent += ["Latent (bicubic)", "Latent (bicubic antialiased)"]
    upscalers = ["None", "Lanczos", "Nearest", *latent]
    upscalers += [e.name for e in entries if e.kind == "upscaler"]
    pixels = svc.options.max_pixels
    return {
        "model": {
            "name": current.name if current else "",
            "stem": current.path.stem if current else "",
            "path": str(current.path) if current else "",
        },
        "current_mode": mode,
        "supported_modes": modes,
        "defaults": defaults[mode],
        "output_formats": formats[mode],
        "features": features[mode],
        "defaults_by_mode": defaults,
        "output_formats_by_mode": formats,
        "features_by_mode": features,
        "samplers": list(info.get("samplers") or []),
        "schedulers": list(info.get("schedulers") or []),
        "loras": [{"name": e.path.stem, "path": str(e.path)} for e in entries if e.kind == "lora"],
        "upscalers": [{"name": n} for n in upscalers],
        "limits": {
            "min_width": 64,
            "max_width": min(8192, pixels // 64),
            "min_height": 64,
            "max_height": min(8192, pixels // 64),
            "max_batch_count": 64,
            "max_queue_size": svc.options.max_queue,
        },
    }
