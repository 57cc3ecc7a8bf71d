"""The AUTOMATIC1111 API under ``/sdapi/v1``: synchronous txt2img/img2img plus the lists and
options clients read. Unknown request fields are ignored (as A1111 does); ``info`` is a JSON
*string*; ``override_settings.sd_model_checkpoint`` picks the model for one request."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sdcpp_service import styles
from sdcpp_service.engine import names
from sdcpp_service.errors import InvalidRequest
from sdcpp_service.server import a1111_options, fields
from sdcpp_service.server import prepare as checks
from sdcpp_service.server import sdserver_schema as schema
from sdcpp_service.server.errors import ValidationFailed
from sdcpp_service.server.routes import a1111_results as results
from sdcpp_service.server.routes.common import client_key, json_body, run_sync, service
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
    no extra decoder pass; A1111's "Approx cheap"), or a VAE decode for ``show_progress_type``
    "Full", unless the client turned ``live_previews_enable`` off."""
    options = svc.a1111_options
    if options.get("live_previews_enable", True) is False:
        return
    values["preview"] = "vae" if options.get("show_progress_type") == "Full" else "proj"
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


def _styles(
    svc: Service, body: dict[str, Any], values: dict[str, Any], errors: dict[str, str]
) -> list[str]:
    """Apply ``styles`` (names from ``prompt-styles``) to the prompts as A1111 does."""
    wanted = body.get("styles") or []
    if not isinstance(wanted, list) or not all(isinstance(n, str) for n in wanted):
        errors["styles"] = "must be a list of style names from /sdapi/v1/prompt-styles"
        return []
    try:
        prompt, negative = styles.apply_styles(
            str(values.get("prompt", "")),
            str(values.get("negative_prompt", "")),
            wanted,
            settings=svc.settings,
        )
    except InvalidRequest as exc:
        errors[exc.field] = exc.reason
        return []
    if wanted:
        values["prompt"], values["negative_prompt"] = prompt, negative
    return list(wanted)


def _scripts(body: dict[str, Any], errors: dict[str, str]) -> None:
    """No scripts are installed (``/sdapi/v1/scripts`` is empty): naming one is refused, as A1111
    refuses a script it does not have, rather than silently ignored."""
    name = body.get("script_name")
    if name:
        errors["script_name"] = f"Script '{name}' not found (this server has no scripts)"
    always = body.get("alwayson_scripts")
    if isinstance(always, dict) and always:
        first = next(iter(always))
        errors["alwayson_scripts"] = (
            f"always on script {first} not found (this server has no scripts; ControlNet: "
            "the native API's control_image/control_net)"
        )


#: The engine samplers A1111's ``eta_ancestral`` is for (its ancestral and SDE samplers).
_ANCESTRAL = ("euler_a", "dpm++2s_a", "er_sde")


def _loras(items: Any, errors: dict[str, str]) -> list[tuple[str, float]]:
    """sd-server's structured ``lora: [{path, multiplier}]`` (A1111 itself takes prompt tags)."""
    if not items:
        return []
    _, _, loras, problems = schema.native_values({"lora": items})
    errors.update(problems)
    return loras


def _from_options(svc: Service, values: dict[str, Any], load: dict[str, str | bool]) -> None:
    """What the stored A1111 options say for a request that does not say it itself."""
    options = svc.a1111_options
    clip = options.get("CLIP_stop_at_last_layers")
    if isinstance(clip, int) and not isinstance(clip, bool) and clip > 1:
        values.setdefault("clip_skip", clip)
    sampler = values.get("sampler")
    engine = names.sampler_from_label(sampler)[0] if isinstance(sampler, str) else ""
    key = (
        "eta_ancestral" if engine in _ANCESTRAL else "eta_ddim" if engine == "ddim_trailing" else ""
    )
    eta = options.get(key)
    if isinstance(eta, (int, float)) and not isinstance(eta, bool):
        values.setdefault("eta", float(eta))
    vae = a1111_options.vae_choice(options)
    if vae is not None:
        load.setdefault("vae", vae)


async def _generate(request: Request, img2img: bool) -> Response:
    svc = service(request)
    body = await json_body(request)
    values, errors = _values(body, img2img)
    _scripts(body, errors)
    used_styles = _styles(svc, body, values, errors)
    raw, loras = schema.apply_extra_args(values, errors)
    loras += _loras(body.get("lora"), errors)
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
    load: dict[str, str | bool] = {}
    if isinstance(override, dict) and a1111_options.vae_choice(override):
        load["vae"] = str(override["sd_vae"])
    _from_options(svc, values, load)
    model = model or svc.a1111_options.get("sd_model_checkpoint")
    kind = "inpaint" if "mask" in images else ("img2img" if img2img else "txt2img")
    _previews(svc, values)
    try:
        job = checks.prepare(svc, kind, values, images, loras, model, load, errors)
    except ValidationFailed as exc:
        raise _a1111_errors(exc) from None
    save = body.get("save_images") is True
    done, live = await run_sync(request, svc, job, images, cancel_on_disconnect=not save)
    if done is None:  # the client has gone: nobody reads this
        return Response(status_code=499)
    encoded: list[str] = []
    note = ""
    if done.state == "cancelled":
        if live.preview is not None:
            encoded = [base64.b64encode(live.preview).decode()]
            note = f"interrupted at step {live.preview_step}: the last live preview"
        else:
            note = "interrupted before the engine had an image to show"
    else:
        encoded = await asyncio.to_thread(results.images_b64, svc, done)
        if save:
            await asyncio.to_thread(results.save_samples, svc, done)
    if body.get("send_images") is False:
        encoded = []
    info = results.info(svc, done, used_styles, note)
    return JSONResponse({"images": encoded, "parameters": body, "info": info})


async def txt2img(request: Request) -> Response:
    return await _generate(request, img2img=False)


async def img2img(request: Request) -> Response:
    return await _generate(request, img2img=True)


async def progress(request: Request) -> Response:
    svc = service(request)
    current = svc.progress_for(client_key(request))
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
        "job_count": svc.queued() + len(svc.running()),
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
    service(request).interrupt(client_key(request))
    return JSONResponse({})


def routes() -> list[Route]:
    from sdcpp_service.server.routes import a1111_extras, a1111_info, a1111_lists, a1111_settings

    base = "/sdapi/v1"
    return [
        Route(f"{base}/txt2img", txt2img, methods=["POST"]),
        Route(f"{base}/img2img", img2img, methods=["POST"]),
        Route(f"{base}/progress", progress, methods=["GET"]),
        Route(f"{base}/interrupt", interrupt, methods=["POST"]),
        Route(f"{base}/skip", interrupt, methods=["POST"]),
        *a1111_info.routes(base),
        *a1111_extras.routes(base),
        *a1111_settings.routes(base),
        *a1111_lists.routes(base),
    ]
