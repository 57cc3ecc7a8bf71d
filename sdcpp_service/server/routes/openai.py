"""The OpenAI images API under ``/v1``: generations (JSON), edits (multipart), models.

``model`` is a catalog name or path inside the model folders; OpenAI's own names
(``dall-e-*``, ``gpt-image-*``) and an absent model mean the default model. Besides OpenAI's
fields, the generation fields of the native API (``steps``, ``seed``, ``negative_prompt``,
``cfg_scale``, ``sampler``…) are accepted as extensions.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sdcpp_service.errors import InvalidRequest
from sdcpp_service.server import fields, models
from sdcpp_service.server import prepare as checks
from sdcpp_service.server import sdserver_schema as schema
from sdcpp_service.server.errors import ValidationFailed
from sdcpp_service.server.jobs import Job
from sdcpp_service.server.routes.common import encode, json_body, run_sync, service
from sdcpp_service.server.service import Service, decode

FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp"}
SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
#: Model names meaning "the default model" (OpenAI's, and sd-server's one fixed id).
OPENAI_MODELS = ("dall-e", "gpt-image", "chatgpt-image", "sd-cpp-local")


def _size(value: Any, errors: dict[str, str]) -> tuple[int, int] | None:
    if value in (None, "", "auto"):
        return None
    if isinstance(value, str) and "x" in value:
        w, _, h = value.lower().partition("x")
        if w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0:
            return int(w), int(h)
    errors["size"] = "must be WIDTHxHEIGHT (e.g. 512x512) or auto"
    return None


def _common(body: dict[str, Any], errors: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """OpenAI fields → (generation values, response options)."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        errors["prompt"] = "a prompt is required"
    ext = {k: v for k, v in body.items() if k in fields.GENERATION and k not in ("width", "height")}
    values, problems = fields.parse(ext)
    errors.update(problems)
    values["prompt"] = prompt if isinstance(prompt, str) else ""
    raw, loras = schema.apply_extra_args(values, errors)
    if raw:
        errors["prompt"] = "images go in the request itself, not in <sd_cpp_extra_args>"
    n = body.get("n", 1)
    try:
        values["batch"] = fields.coerce(
            "n", int(n) if isinstance(n, str) else n, fields.Field(int, 1, 10)
        )
    except (ValueError, InvalidRequest) as exc:
        errors["n"] = getattr(exc, "reason", "must be a whole number between 1 and 10")
    size = _size(body.get("size"), errors)
    if size:
        values["width"], values["height"] = size
    fmt = FORMATS.get(str(body.get("output_format") or "png").lower())
    if fmt is None:
        errors["output_format"] = "must be png, jpeg or webp"
    response_format = body.get("response_format") or "b64_json"
    if response_format not in ("b64_json", "url"):
        errors["response_format"] = "must be b64_json or url"
    quality = body.get("output_compression")
    if quality is not None and not (isinstance(quality, int) and 0 <= quality <= 100):
        errors["output_compression"] = "must be a whole number between 0 and 100"
    out = {"format": fmt or "png", "response_format": response_format, "quality": quality}
    out["loras"] = loras
    return values, out


def _model(svc: Service, value: Any, errors: dict[str, str]) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        errors["model"] = "must be a model name"
        return None
    if value.lower().startswith(OPENAI_MODELS):
        try:
            svc.resolve_model(value)
        except InvalidRequest:
            return None  # an OpenAI model name: use the default model
    return value


def _render(svc: Service, job: Job, out: dict[str, Any], base_url: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = []
    fmt, quality = out["format"], out["quality"]
    for name in (job.result or {}).get("outputs", []):
        path = svc.output_path(name)
        if out["response_format"] == "b64_json":
            raw = path.read_bytes() if fmt == "png" else encode(path, fmt, quality)
            data.append({"b64_json": base64.b64encode(raw).decode(), "revised_prompt": None})
            continue
        if fmt != "png":
            target = path.with_suffix(SUFFIX[fmt])
            tmp = target.with_name(target.name + ".incomplete")
            tmp.write_bytes(encode(path, fmt, quality))
            os.replace(tmp, target)
            path = target
        data.append({"url": f"{base_url}/api/v1/outputs/{path.name}", "revised_prompt": None})
    return data


async def _finish(
    request: Request, svc: Service, job: Job, images: Any, out: dict[str, Any]
) -> Response:
    done, _ = await run_sync(request, svc, job, images)
    if done is None:  # the client has gone (its job is cancelled): nobody reads this
        return Response(status_code=499)
    base = str(request.base_url).rstrip("/")
    data = await asyncio.to_thread(_render, svc, done, out, base)
    result = done.result or {}
    return JSONResponse(
        {
            "created": int(done.created),
            "data": data,
            "output_format": out["format"],
            "size": f"{result.get('width', 0)}x{result.get('height', 0)}",
        }
    )


async def generations(request: Request) -> Response:
    svc = service(request)
    body = await json_body(request)
    errors: dict[str, str] = {}
    values, out = _common(body, errors)
    model = _model(svc, body.get("model"), errors)
    job = checks.prepare(svc, "txt2img", values, {}, out["loras"], model, None, errors)
    return await _finish(request, svc, job, {}, out)


def _openai_mask(data: bytes) -> bytes:
    """OpenAI masks mark the area to edit as transparent; the engine wants it white."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        mask = ImageOps.invert(im.getchannel("A")) if "A" in im.getbands() else im.convert("L")
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    return buf.getvalue()


async def edits(request: Request) -> Response:
    svc = service(request)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ValidationFailed({"image": "send the image as multipart/form-data"})
    async with request.form(max_files=16, max_fields=64) as form:
        body: dict[str, Any] = {}
        files: dict[str, list[bytes]] = {"image": [], "mask": []}
        for key, value in form.multi_items():
            name = "image" if key in ("image", "image[]") else key
            if isinstance(value, UploadFile):
                if name in files:
                    files[name].append(await value.read())
            else:
                body[name] = value
    errors: dict[str, str] = {}
    for key in (
        "n",
        "output_compression",
        *(k for k, f in fields.GENERATION.items() if f.kind in (int, float)),
    ):
        if isinstance(body.get(key), str):
            try:
                body[key] = float(body[key]) if "." in body[key] else int(body[key])
            except ValueError:
                errors[key] = "must be a number"
    values, out = _common(body, errors)
    if not files["image"]:
        errors["image"] = "at least one image is required"
    raw: dict[str, Any] = {}
    kind = "img2img"
    if len(files["image"]) > 1 or body.get("kind") == "edit":
        raw["ref_images"] = files["image"]
        kind = "edit"
    elif files["image"]:
        raw["init_image"] = files["image"][0]
        kind = "img2img"
    if files["mask"] and "init_image" in raw:
        raw["mask"] = files["mask"][0]
        kind = "inpaint"
    images, problems = await decode(svc, raw)
    errors.update({("image" if k != "mask" else k): v for k, v in problems.items()})
    if "mask" in images:
        images["mask"] = await asyncio.to_thread(_openai_mask, images["mask"])  # type: ignore[arg-type]
    model = _model(svc, body.get("model"), errors)
    job = checks.prepare(svc, kind, values, images, out["loras"], model, None, errors)
    return await _finish(request, svc, job, images, out)


async def list_models(request: Request) -> Response:
    svc = service(request)
    data = [
        {"id": e.name, "object": "model", "created": int(e.mtime), "owned_by": "sdcpp-service"}
        for e in models.scan(svc.settings)
        if e.kind in models.MAIN_KINDS
    ]
    return JSONResponse({"object": "list", "data": data})


def routes() -> list[Route]:
    return [
        Route("/v1/images/generations", generations, methods=["POST"]),
        Route("/v1/images/edits", edits, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
    ]
