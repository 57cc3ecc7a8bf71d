"""sd-server's own API (``/sdcpp/v1``, the vendored engine's ``examples/server/api.md``) with
sd-server's shapes, so its web frontend and scripts written for it work unchanged:
``capabilities``, async ``img_gen`` / ``vid_gen`` jobs (202 + ``poll_url``), ``jobs/{id}`` and
``jobs/{id}/cancel``. Errors are sd-server's ``{"error": "..."}`` (400, 404, 429). Unlike
sd-server, a job that is generating can be cancelled too.
"""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from sdcpp_service.errors import InvalidRequest, StorageFull
from sdcpp_service.server import fields, models
from sdcpp_service.server import prepare as checks
from sdcpp_service.server import sdserver_schema as schema
from sdcpp_service.server.errors import NotFound, QueueFull, ValidationFailed
from sdcpp_service.server.jobs import Job
from sdcpp_service.server.routes import sdserver_caps
from sdcpp_service.server.routes.common import json_body, service
from sdcpp_service.server.routes.sdserver_caps import is_video
from sdcpp_service.server.service import Service, decode

BASE = "/sdcpp/v1"
_STATUS = {"running": "generating"}


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _outputs(request: Request) -> dict[str, dict[str, Any]]:
    """Per-job output options (format, compression, metadata), kept on the app."""
    state = request.app.state
    if not hasattr(state, "sdcpp_outputs"):
        state.sdcpp_outputs = {}
    found: dict[str, dict[str, Any]] = state.sdcpp_outputs
    return found


def _model(svc: Service, body: dict[str, Any], video: bool) -> str | None:
    """The model to run: ``model`` if given; else the default one, or for vid_gen the first
    video model when the default cannot make videos."""
    given = body.get("model")
    if isinstance(given, str) and given:
        return given
    if not video:
        return None
    entries = [e for e in models.scan(svc.settings) if e.kind in models.MAIN_KINDS]
    default = svc.default_model()
    for entry in sorted(entries, key=lambda e: str(e.path) != default):  # the default first
        if is_video(entry):
            return entry.name
    raise InvalidRequest("model", "none of this server's models makes videos (add a Wan model)")


async def _submit(request: Request, video: bool) -> Response:
    svc = service(request)
    try:
        body = await json_body(request)
    except ValidationFailed:
        return _error(400, "invalid json")
    if not body:
        return _error(400, "empty body")
    values, raw, loras, errors = schema.native_values(body, video)
    load = schema.load_slots(body, errors)
    images, problems = await decode(svc, raw)
    errors.update(problems)
    parsed, problems = fields.parse(values, {**fields.GENERATION, **fields.KIND_FIELDS})
    errors.update(problems)
    try:
        model = _model(svc, body, video)
    except InvalidRequest as exc:
        errors[exc.field] = exc.reason
        model = None
    try:
        kind = "video" if video else schema.image_kind(images)
        job = checks.prepare(svc, kind, parsed, images, loras, model, load, errors)
        live = await svc.submit(job, images)
    except ValidationFailed as exc:
        named = schema.their_names(exc.errors)
        text = "; ".join(f"{k}: {v}" for k, v in named.items())
        return _error(400, text, fields=named)
    except QueueFull:
        return _error(429, "job queue is full")
    except StorageFull as exc:
        return _error(507, str(exc))
    except InvalidRequest as exc:
        field = schema.their_names({exc.field: exc.reason})
        return _error(400, f"{exc.field}: {exc.reason}", fields=field)
    _outputs(request)[job.id] = {
        "format": body.get("output_format") or ("webm" if video else "png"),
        "compression": body.get("output_compression", 100),
        "metadata": body.get("embed_image_metadata", True) is not False,
    }
    kind_name = "vid_gen" if video else "img_gen"
    return JSONResponse(
        {
            "id": live.job.id,
            "kind": kind_name,
            "status": "queued",
            "created": int(live.job.created),
            "poll_url": f"{BASE}/jobs/{live.job.id}",
        },
        status_code=202,
    )


async def img_gen(request: Request) -> Response:
    return await _submit(request, video=False)


async def vid_gen(request: Request) -> Response:
    return await _submit(request, video=True)


def _encode_image(data: bytes, fmt: str, compression: Any, metadata: bool) -> bytes:
    from PIL import Image, PngImagePlugin

    if fmt == "png" and metadata:
        return data
    with Image.open(io.BytesIO(data)) as im:
        image = im.copy()
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG", pnginfo=PngImagePlugin.PngInfo())
    else:
        quality = max(0, min(100, int(compression))) if isinstance(compression, int) else 90
        image.convert("RGB").save(out, format=fmt.upper(), quality=quality)
    return out.getvalue()


def _result(svc: Service, job: Job, options: dict[str, Any]) -> dict[str, Any]:
    result = job.result or {}
    outputs = result.get("outputs", [])
    if job.kind == "video":
        path = svc.output_path(outputs[0])
        fmt = path.suffix.lstrip(".")
        fps = result.get("fps", job.params.get("fps"))
        return {
            "output_format": fmt,
            "mime_type": schema.VIDEO_FORMATS.get(fmt, "application/octet-stream"),
            "fps": int(fps) if isinstance(fps, float) and fps.is_integer() else fps,
            "frame_count": result.get("frames", job.params.get("frames")),
            "b64_json": base64.b64encode(path.read_bytes()).decode(),
        }
    fmt = str(options.get("format", "png"))
    images = []
    for i, name in enumerate(outputs):
        data = svc.output_path(name).read_bytes()
        data = _encode_image(data, fmt, options.get("compression"), options.get("metadata", True))
        images.append({"index": i, "b64_json": base64.b64encode(data).decode()})
    return {"output_format": fmt, "images": images}


def _position(svc: Service, job_id: str) -> int:
    position = svc.position(job_id)
    return 0 if position is None else position + 1


def job_json(svc: Service, job: Job, options: dict[str, Any]) -> dict[str, Any]:
    """A job in sd-server's shape."""
    error = None
    if job.state == "cancelled":
        error = {"code": "cancelled", "message": "job cancelled by client"}
    elif job.state == "failed":
        message = (job.error or {}).get("message", "generation failed")
        error = {"code": "generation_failed", "message": message}
    return {
        "id": job.id,
        "kind": "vid_gen" if job.kind == "video" else "img_gen",
        "status": _STATUS.get(job.state, job.state),
        "created": int(job.created),
        "started": int(job.started) if job.started else None,
        "completed": int(job.finished) if job.finished else None,
        "queue_position": _position(svc, job.id),
        "result": _result(svc, job, options) if job.state == "completed" else None,
        "error": error,
    }


async def get_job(request: Request) -> Response:
    svc = service(request)
    try:
        job = svc.job(request.path_params["id"])
    except NotFound:
        return _error(404, "job not found")
    options = _outputs(request).get(job.id, {})
    try:
        data = await asyncio.to_thread(job_json, svc, job, options)
    except NotFound:  # its files were removed by the retention
        return _error(410, "job expired")
    return JSONResponse(data)


async def cancel_job(request: Request) -> Response:
    svc = service(request)
    try:
        job = svc.cancel(request.path_params["id"])
    except NotFound:
        return _error(404, "job not found")
    for _ in range(200):  # a generating job stops within moments (its worker is stopped)
        if job.state not in ("queued", "running"):
            break
        await asyncio.sleep(0.025)
    return JSONResponse(job_json(svc, job, _outputs(request).get(job.id, {})))


def routes() -> list[BaseRoute]:
    """The routes, under a mount that answers browsers from any origin as sd-server does (its
    frontend can be pointed at another server: it sends CORS preflights)."""
    cors = Middleware(
        CORSMiddleware,
        allow_origin_regex=".*",
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    inner = [
        Route("/capabilities", sdserver_caps.capabilities, methods=["GET"]),
        Route("/img_gen", img_gen, methods=["POST"]),
        Route("/vid_gen", vid_gen, methods=["POST"]),
        Route("/jobs/{id}", get_job, methods=["GET"]),
        Route("/jobs/{id}/cancel", cancel_job, methods=["POST"]),
    ]
    return [Mount(BASE, routes=inner, middleware=[cors])]
