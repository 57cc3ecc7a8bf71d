"""The AUTOMATIC1111 API under ``/sdapi/v1``: synchronous txt2img/img2img plus the lists and
options clients read. Unknown request fields are ignored (as A1111 does); ``info`` is a JSON
*string*; ``override_settings.sd_model_checkpoint`` picks the model for one request."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sdcpp_service._version import __version__
from sdcpp_service.engine import names
from sdcpp_service.server import fields
from sdcpp_service.server import prepare as checks
from sdcpp_service.server.errors import ValidationFailed
from sdcpp_service.server.jobs import Job
from sdcpp_service.server.routes.common import json_body, service
from sdcpp_service.server.service import Service, decode

#: A1111 request field → our field.
FIELD_MAP: dict[str, str] = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "seed": "seed",
    "steps": "steps",
    "cfg_scale": "cfg_scale",
    "width": "width",
    "height": "height",
    "sampler_name": "sampler",
    "scheduler": "scheduler",
    "eta": "eta",
    "distilled_cfg_scale": "guidance",
    "clip_skip": "clip_skip",
    "enable_hr": "hires",
    "hr_scale": "hires_scale",
    "hr_second_pass_steps": "hires_steps",
    "hr_resize_x": "hires_width",
    "hr_resize_y": "hires_height",
}
REVERSE = {ours: theirs for theirs, ours in FIELD_MAP.items()} | {
    "batch": "batch_size",
    "strength": "denoising_strength",
    "hires_denoise": "denoising_strength",
    "init_image": "init_images",
    "hires_upscaler": "hr_upscaler",
    "hires_model": "hr_upscaler",
}


def _values(body: dict[str, Any], img2img: bool) -> tuple[dict[str, Any], dict[str, str]]:
    mapped = {FIELD_MAP[k]: v for k, v in body.items() if k in FIELD_MAP and v is not None}
    if "sampler" not in mapped and isinstance(body.get("sampler_index"), str):
        mapped["sampler"] = body["sampler_index"]
    if mapped.get("scheduler") in ("Automatic", "automatic", ""):
        mapped.pop("scheduler")
    if body.get("denoising_strength") is not None:
        mapped["strength" if img2img else "hires_denoise"] = body["denoising_strength"]
    values, errors = fields.parse(mapped)
    size, count = body.get("batch_size", 1), body.get("n_iter", 1)
    if isinstance(size, int) and isinstance(count, int) and size > 0 and count > 0:
        values["batch"] = size * count
    else:
        errors["batch"] = "batch_size and n_iter must be positive whole numbers"
    upscaler = body.get("hr_upscaler")
    if values.get("hires") and isinstance(upscaler, str) and upscaler:
        lowered = upscaler.strip().lower()
        if lowered in ("latent", "lanczos", "nearest") or lowered.startswith("latent ("):
            values["hires_upscaler"] = lowered
        elif lowered == "none":  # A1111's "None" upscaler still resizes (with Lanczos)
            values["hires_upscaler"] = "lanczos"
        else:
            values["hires_model"] = upscaler
    return values, errors


def _previews(svc: Service, values: dict[str, Any]) -> None:
    """Live previews for /progress: the cheap ``proj`` mode (a linear latent → RGB projection,
    no extra decoder pass) unless the client turned ``live_previews_enable`` off."""
    options = svc.a1111_options
    if options.get("live_previews_enable", True) is False:
        return
    values["preview"] = "proj"
    every = options.get("show_progress_every_n_steps")
    if isinstance(every, int) and not isinstance(every, bool) and every > 0:
        values["preview_interval"] = every


def _a1111_errors(exc: ValidationFailed) -> ValidationFailed:
    return ValidationFailed({REVERSE.get(k, k): v for k, v in exc.errors.items()})


def _invert(data: bytes) -> bytes:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        mask = im.convert("L")
    out = io.BytesIO()
    ImageOps.invert(mask).save(out, format="PNG")
    return out.getvalue()


async def _generate(request: Request, img2img: bool) -> Response:
    svc = service(request)
    body = await json_body(request)
    values, errors = _values(body, img2img)
    raw: dict[str, Any] = {}
    if img2img:
        inits = body.get("init_images") or []
        if not isinstance(inits, list) or not inits:
            errors["init_images"] = "one image is required"
        else:
            raw["init_image"] = inits[0]
        if body.get("mask"):
            raw["mask"] = body["mask"]
    images, problems = await decode(svc, raw)
    errors.update(problems)
    if "mask" in images and body.get("inpainting_mask_invert") in (1, True):
        images["mask"] = await asyncio.to_thread(_invert, images["mask"])  # type: ignore[arg-type]
    override = body.get("override_settings") or {}
    model = override.get("sd_model_checkpoint") if isinstance(override, dict) else None
    if isinstance(override, dict) and isinstance(override.get("CLIP_stop_at_last_layers"), int):
        values.setdefault("clip_skip", override["CLIP_stop_at_last_layers"])
    model = model or svc.a1111_options.get("sd_model_checkpoint")
    kind = "inpaint" if "mask" in images else ("img2img" if img2img else "txt2img")
    _previews(svc, values)
    try:
        job = checks.prepare(svc, kind, values, images, [], model, None, errors)
    except ValidationFailed as exc:
        raise _a1111_errors(exc) from None
    done = await svc.run(job, images)
    encoded = await asyncio.to_thread(_images_b64, svc, done)
    if body.get("send_images") is False:
        encoded = []
    return JSONResponse({"images": encoded, "parameters": body, "info": _info(svc, done)})


def _images_b64(svc: Service, job: Job) -> list[str]:
    outputs = (job.result or {}).get("outputs", [])
    return [base64.b64encode(svc.output_path(n).read_bytes()).decode() for n in outputs]


def _info(svc: Service, job: Job) -> str:
    result, p = job.result or {}, job.params
    seeds = result.get("seeds", [])
    used = result.get("params", {})
    sha = svc.hashes.known(job.model)
    info = {
        "prompt": p.get("prompt", ""),
        "all_prompts": [p.get("prompt", "")] * len(seeds),
        "negative_prompt": p.get("negative_prompt", ""),
        "all_negative_prompts": [p.get("negative_prompt", "")] * len(seeds),
        "seed": seeds[0] if seeds else p.get("seed", -1),
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * len(seeds),
        "width": result.get("width", p.get("width")),
        "height": result.get("height", p.get("height")),
        "sampler_name": names.sampler_label(str(used.get("sampler", ""))),
        "scheduler": names.scheduler_label(str(used.get("scheduler", ""))),
        "cfg_scale": p.get("cfg_scale", 7.0),
        "steps": p.get("steps", 20),
        "batch_size": p.get("batch", 1),
        "restore_faces": False,
        "sd_model_name": svc.model_name(job.model),
        "sd_model_hash": sha[:10] if sha else None,
        "denoising_strength": p.get("strength") if job.kind != "txt2img" else None,
        "clip_skip": p.get("clip_skip", -1),
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": result.get("infotexts", []),
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created)),
        "interrupted": job.state == "cancelled",
        "version": f"sdcpp-service {__version__}",
    }
    return json.dumps(info)


async def txt2img(request: Request) -> Response:
    return await _generate(request, img2img=False)


async def img2img(request: Request) -> Response:
    return await _generate(request, img2img=True)


async def progress(request: Request) -> Response:
    sched = service(request).scheduler
    current = sched.current
    image = None
    skip = request.query_params.get("skip_current_image", "false").lower() in ("true", "1")
    if current is not None and current.preview is not None and not skip:
        image = base64.b64encode(current.preview).decode()
    p = current.progress if current else None
    fraction = p.step / p.total if p and p.total else 0.0
    eta = p.eta if p else 0.0
    state = {
        "skipped": False,
        "interrupted": False,
        "stopping_generation": False,
        "job": current.job.id if current else "",
        "job_count": len(sched.queue) + (1 if current else 0),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S") if current else "0",
        "job_no": 0,
        "sampling_step": p.step if p else 0,
        "sampling_steps": p.total if p else 0,
    }
    elapsed = p.elapsed if p else 0.0
    relative = eta / (eta + elapsed) if eta + elapsed > 0 else 0.0
    return JSONResponse(
        {
            "progress": fraction,
            "eta_relative": relative,
            "state": state,
            "current_image": image,
            "textinfo": None,
            "current_task": current.job.id if current else None,
        }
    )


async def interrupt(request: Request) -> Response:
    sched = service(request).scheduler
    if sched.current is not None:
        sched.cancel(sched.current.job.id)
    return JSONResponse({})


def routes() -> list[Route]:
    from sdcpp_service.server.routes import a1111_extras, a1111_info

    base = "/sdapi/v1"
    return [
        Route(f"{base}/txt2img", txt2img, methods=["POST"]),
        Route(f"{base}/img2img", img2img, methods=["POST"]),
        Route(f"{base}/progress", progress, methods=["GET"]),
        Route(f"{base}/interrupt", interrupt, methods=["POST"]),
        Route(f"{base}/skip", interrupt, methods=["POST"]),
        *a1111_info.routes(base),
        *a1111_extras.routes(base),
    ]
