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
from sdcpp_service.server import fields, models
from sdcpp_service.server.errors import ValidationFailed
from sdcpp_service.server.jobs import Job
from sdcpp_service.server.routes.common import json_body, memory, service
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
        if upscaler.lower() in ("none", "latent") or upscaler.lower().startswith(
            ("latent ", "lanczos", "nearest")
        ):
            values["hires_upscaler"] = upscaler.lower()
        else:
            values["hires_model"] = upscaler
    return values, errors


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
    try:
        job = svc.prepare(kind, values, images, [], model, None, errors)
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
            "current_image": None,
            "textinfo": None,
            "current_task": current.job.id if current else None,
        }
    )


async def interrupt(request: Request) -> Response:
    sched = service(request).scheduler
    if sched.current is not None:
        sched.cancel(sched.current.job.id)
    return JSONResponse({})


async def sd_models(request: Request) -> Response:
    svc = service(request)
    out = []
    for entry in models.scan(svc.model_dirs):
        if entry.kind not in models.MAIN_KINDS:
            continue
        sha = await asyncio.to_thread(svc.hashes.sha256, entry.path)
        out.append(
            {
                "title": f"{entry.name} [{sha[:10]}]",
                "model_name": entry.name.replace("/", "_"),
                "hash": sha[:10],
                "sha256": sha,
                "filename": str(entry.path),
                "config": None,
            }
        )
    return JSONResponse(out)


def _by_kind(svc: Service, *kinds: str) -> list[models.ModelEntry]:
    return [e for e in models.scan(svc.model_dirs) if e.kind in kinds]


async def sd_vae(request: Request) -> Response:
    entries = _by_kind(service(request), "vae")
    return JSONResponse([{"model_name": e.name, "filename": str(e.path)} for e in entries])


async def loras(request: Request) -> Response:
    entries = _by_kind(service(request), "lora")
    return JSONResponse(
        [
            {"name": e.path.stem, "alias": e.name, "path": str(e.path), "metadata": {}}
            for e in entries
        ]
    )


async def samplers(request: Request) -> Response:
    known = service(request).worker.info.get("samplers") or list(names.A1111_SAMPLERS.values())
    return JSONResponse(
        [{"name": names.sampler_label(n), "aliases": [n], "options": {}} for n in known]
    )


async def schedulers(request: Request) -> Response:
    known = service(request).worker.info.get("schedulers") or list(names.A1111_SCHEDULERS.values())
    return JSONResponse(
        [
            {
                "name": n,
                "label": names.scheduler_label(n),
                "aliases": None,
                "default_rho": -1.0,
                "need_inner_model": False,
            }
            for n in known
        ]
    )


async def upscalers(request: Request) -> Response:
    builtin = [("None", None), ("Lanczos", None), ("Nearest", None)]
    items = builtin + [(e.name, str(e.path)) for e in _by_kind(service(request), "upscaler")]
    return JSONResponse(
        [
            {
                "name": n,
                "model_name": n if p else None,
                "model_path": p,
                "model_url": None,
                "scale": 4,
            }
            for n, p in items
        ]
    )


async def latent_upscale_modes(request: Request) -> Response:
    known = service(request).worker.info.get("hires_upscalers") or ["latent"]
    return JSONResponse([{"name": n.capitalize()} for n in known if n.startswith("latent")])


async def get_options(request: Request) -> Response:
    svc = service(request)
    loaded = svc.loaded_model()
    title = None
    if loaded:
        sha = svc.hashes.known(loaded)
        title = svc.model_name(loaded) + (f" [{sha[:10]}]" if sha else "")
    defaults: dict[str, Any] = {
        "sd_model_checkpoint": title,
        "sd_checkpoint_hash": svc.hashes.known(loaded) if loaded else None,
        "sd_vae": "Automatic",
        "CLIP_stop_at_last_layers": 1,
        "samples_format": "png",
        "eta_noise_seed_delta": 0,
    }
    options = {**defaults, **svc.a1111_options}
    if title:  # the model actually loaded wins over a stale option
        options["sd_model_checkpoint"] = title
    return JSONResponse(options)


async def set_options(request: Request) -> Response:
    svc = service(request)
    body = await json_body(request)
    checkpoint = body.get("sd_model_checkpoint")
    if checkpoint:
        if not isinstance(checkpoint, str):
            raise ValidationFailed({"sd_model_checkpoint": "must be a model title"})
        entry = svc.resolve_model(checkpoint, "sd_model_checkpoint")
        if str(entry.path) != svc.loaded_model():
            await svc.scheduler.control("load", str(entry.path), {})
    svc.a1111_options.update(body)
    return JSONResponse({})


async def refresh(request: Request) -> Response:
    return JSONResponse({})


async def png_info(request: Request) -> Response:
    from PIL import Image

    from sdcpp_service.engine.images import parse_infotext

    body = await json_body(request)
    data = await decode(service(request), {"init_image": body.get("image")})
    if data[1]:
        raise ValidationFailed({"image": next(iter(data[1].values()))})
    with Image.open(io.BytesIO(data[0]["init_image"])) as im:  # type: ignore[arg-type]
        items = {k: v for k, v in im.info.items() if isinstance(v, str)}
    text = items.get("parameters", "")
    return JSONResponse(
        {"info": text, "items": items, "parameters": parse_infotext(text) if text else {}}
    )


async def mem(request: Request) -> Response:
    m = memory([None, service(request).worker.pid])
    total, free = m.get("total_bytes", 0), m.get("available_bytes", 0)
    return JSONResponse(
        {
            "ram": {"free": free, "used": total - free, "total": total, **m},
            "cuda": {"error": "no CUDA in this build"},
        }
    )


def routes() -> list[Route]:
    base = "/sdapi/v1"
    return [
        Route(f"{base}/txt2img", txt2img, methods=["POST"]),
        Route(f"{base}/img2img", img2img, methods=["POST"]),
        Route(f"{base}/progress", progress, methods=["GET"]),
        Route(f"{base}/interrupt", interrupt, methods=["POST"]),
        Route(f"{base}/skip", interrupt, methods=["POST"]),
        Route(f"{base}/options", get_options, methods=["GET"]),
        Route(f"{base}/options", set_options, methods=["POST"]),
        Route(f"{base}/sd-models", sd_models, methods=["GET"]),
        Route(f"{base}/sd-vae", sd_vae, methods=["GET"]),
        Route(f"{base}/samplers", samplers, methods=["GET"]),
        Route(f"{base}/schedulers", schedulers, methods=["GET"]),
        Route(f"{base}/upscalers", upscalers, methods=["GET"]),
        Route(f"{base}/latent-upscale-modes", latent_upscale_modes, methods=["GET"]),
        Route(f"{base}/loras", loras, methods=["GET"]),
        Route(f"{base}/refresh-checkpoints", refresh, methods=["POST"]),
        Route(f"{base}/refresh-loras", refresh, methods=["POST"]),
        Route(f"{base}/png-info", png_info, methods=["POST"]),
        Route(f"{base}/memory", mem, methods=["GET"]),
    ]
