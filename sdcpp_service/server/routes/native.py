"""The native API under ``/api/v1``: asynchronous jobs, events, outputs, models, health."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from sdcpp_service._version import __version__
from sdcpp_service.engine.base import IMAGE_LISTS
from sdcpp_service.server import fields, models, sse
from sdcpp_service.server import prepare as checks
from sdcpp_service.server.errors import ValidationFailed
from sdcpp_service.server.jobs import STATES, Job
from sdcpp_service.server.options import LOAD_SLOTS, OPTIONAL_SLOTS
from sdcpp_service.server.routes.common import (
    MEDIA_TYPES,
    encode,
    json_body,
    may_see,
    memory,
    service,
)
from sdcpp_service.server.scheduler import OUTPUT_URL, progress_data
from sdcpp_service.server.service import Service, decode

if TYPE_CHECKING:
    from sdcpp_service.models import ModelInfo

JOB_FIELDS = {
    *fields.GENERATION,
    *fields.KIND_FIELDS,
    *fields.IMAGE_FIELDS,
    *LOAD_SLOTS,
    "kind",
    "model",
    "loras",
    *IMAGE_LISTS,
}


def job_view(svc: Service, job: Job, names: dict[str, str] | None = None) -> dict[str, Any]:
    base = f"/api/v1/jobs/{job.id}"
    names = names if names is not None else {}
    view: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "status": job.state,
        "model": names.get(job.model) or svc.model_name(job.model),
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "attempts": job.attempts,
        "timings": job.timings(),
        "params": job.params,
        "position": svc.position(job.id),
        "progress": None,
        "outputs": [],
        "error": job.error,
        "urls": {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel"},
    }
    progress = svc.progress(job.id)
    if progress is not None:
        view["progress"] = progress_data(job.id, progress)
    if job.result:
        result = job.result
        seeds, texts = result["seeds"], result.get("infotexts", [])
        view["outputs"] = [
            {
                "name": n,
                "url": OUTPUT_URL.format(n),
                "seed": seeds[i] if i < len(seeds) else None,
                "infotext": texts[i] if i < len(texts) else "",
                "media_type": MEDIA_TYPES.get(Path(n).suffix.lower()),
                "width": result.get("width"),
                "height": result.get("height"),
            }
            for i, n in enumerate(result["outputs"])
        ]
        if "frames" in result:
            view["outputs"][0].update(frames=result["frames"], fps=result.get("fps"))
        view["seeds"] = result["seeds"]
        view["timings"].update({f"engine_{k}": v for k, v in result.get("timings", {}).items()})
    return view


def _names(svc: Service) -> dict[str, str]:
    return {str(e.path): e.name for e in svc.index.entries()}


async def create_job(request: Request) -> Response:
    svc, job, images = await _job_from(request)
    live = await svc.submit(job, images)
    view = await asyncio.to_thread(job_view, svc, live.job)
    return JSONResponse(view, status_code=202, headers={"Location": view["urls"]["self"]})


async def estimate_job(request: Request) -> Response:
    """``POST /api/v1/estimate``: a job's body → its memory estimate and the chosen switches
    (``fits: false`` and the smallest budget that would work when nothing fits)."""
    from sdcpp_service.errors import DoesNotFit
    from sdcpp_service.fit.job import estimate_view

    try:
        svc, job, images = await _job_from(request)
    except DoesNotFit as exc:
        return JSONResponse({"fits": False, "message": str(exc), "budget_bytes": exc.budget_bytes,
                             "needed_bytes": exc.needed_bytes, "estimate": exc.estimate})  # fmt: skip
    svc.footprints.pop(job.id, None)  # never submitted
    body = await json_body(request)
    view = estimate_view(job.kind, job.model, job.params, job.load, svc.settings,
                         int(svc.options.max_memory_gb * 1e9), "init_image" in images, body)  # fmt: skip
    return JSONResponse(view)


async def _job_from(request: Request) -> tuple[Service, Job, Any]:
    svc = service(request)
    body = await json_body(request)
    errors = {k: "unknown field" for k in body if k not in JOB_FIELDS}
    values, problems = fields.parse(body, {**fields.GENERATION, **fields.KIND_FIELDS})
    errors.update(problems)
    loras, lora_error = fields.parse_loras(body.get("loras"))
    if lora_error:
        errors["loras"] = lora_error
    images, problems = await decode(svc, body)
    errors.update(problems)
    load: dict[str, str | bool] = {}
    for slot in LOAD_SLOTS:
        if body.get(slot) is not None:
            if isinstance(body[slot], str) or (body[slot] is False and slot in OPTIONAL_SLOTS):
                load[slot] = body[slot]
            else:
                errors[slot] = "must be a model name"
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        errors["model"] = "must be a model name"
        model = None
    kind = body.get("kind", "txt2img")
    job = checks.prepare(svc, str(kind), values, images, loras, model, load, errors)
    return svc, job, images


async def get_job(request: Request) -> Response:
    svc = service(request)
    job_id = request.path_params["id"]  # the store and the model folders are read off the loop
    return JSONResponse(await asyncio.to_thread(lambda: job_view(svc, svc.job(job_id))))


def _int_arg(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if re.fullmatch(r"-?[0-9]{1,12}", raw) is None or not lo <= int(raw) <= hi:
        raise ValidationFailed({name: f"must be a whole number between {lo} and {hi}"})
    return int(raw)


async def list_jobs(request: Request) -> Response:
    svc = service(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in STATES:
        raise ValidationFailed({"status": f"must be one of {', '.join(STATES)}"})
    limit = _int_arg(request, "limit", 50, 1, 1000)
    offset = _int_arg(request, "offset", 0, 0, 10**9)
    jobs, total = await svc.list_jobs(status, limit, offset)

    def views_of() -> list[dict[str, Any]]:
        names = _names(svc)
        return [job_view(svc, j, names) for j in jobs]

    views = await asyncio.to_thread(views_of)
    return JSONResponse({"jobs": views, "total": total, "limit": limit, "offset": offset})


async def clear_queue(request: Request) -> Response:
    return JSONResponse({"cancelled": service(request).clear_queue()})


async def cancel_job(request: Request) -> Response:
    svc = service(request)
    job = svc.cancel(request.path_params["id"])
    return JSONResponse(job_view(svc, job), status_code=202 if job.state == "running" else 200)


async def delete_job(request: Request) -> Response:
    job = await asyncio.to_thread(service(request).delete_job, request.path_params["id"])
    return JSONResponse({"deleted": job.id})


async def job_events(request: Request) -> Response:
    svc = service(request)
    await asyncio.to_thread(svc.job, request.path_params["id"])  # 404 before the stream starts
    return sse.event_stream(svc.events(request.path_params["id"]))


async def get_output(request: Request) -> Response:
    svc = service(request)
    path = svc.output_path(request.path_params["name"])
    thumb = _int_arg(request, "thumb", 0, 0, 2048)
    if not thumb:
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix.lower()])
    if path.suffix.lower() in (".mp4", ".webm"):
        raise ValidationFailed({"thumb": "thumbnails are for images, not videos"})
    fmt = "png" if path.suffix.lower() == ".png" else "webp"
    data = await asyncio.to_thread(encode, path, fmt, None, thumb)
    return Response(data, media_type=MEDIA_TYPES[f".{fmt}"])


# -- models -----------------------------------------------------------------------------------


def _model_view(svc: Service, entry: models.ModelEntry) -> dict[str, Any]:
    return {
        **entry.to_dict(),
        "sha256": svc.hashes.known(entry.path),
        "loaded": str(entry.path) in svc.warm_models(),
    }


async def list_models(request: Request) -> Response:
    svc = service(request)
    kind = request.query_params.get("kind")
    entries = [e for e in models.scan(svc.settings) if kind is None or e.kind == kind]
    return JSONResponse({"models": [_model_view(svc, e) for e in entries]})


async def inspect_model(request: Request) -> Response:
    svc = service(request)
    entry = models.resolve(request.path_params["name"], svc.settings, models.ALL_KINDS)
    view = _model_view(svc, entry)
    from sdcpp_service.models import inspect

    info = await asyncio.to_thread(inspect, entry.path)
    view["info"] = info.to_dict()
    view["missing"] = await asyncio.to_thread(_missing_view, svc, info)
    if request.query_params.get("hash") in ("1", "true"):
        view["sha256"] = await asyncio.to_thread(svc.hashes.sha256, entry.path)
    return JSONResponse(view)


def _missing_view(svc: Service, info: ModelInfo) -> list[dict[str, Any]]:
    """What a main model still lacks in the model folders, with the ``sdcpp pull`` command."""
    from sdcpp_service.models.assemble import missing

    if info.kind != "model":
        return []
    return [
        {"component": exc.kind, "field": checks.component_field(exc.kind), "message": exc.reason,
         "hint": exc.hint, "optional": checks.component_field(exc.kind) in OPTIONAL_SLOTS}
        for exc in missing(info, {}, svc.settings)
    ]  # fmt: skip


async def load_model(request: Request) -> Response:
    svc = service(request)
    body = await json_body(request)
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise ValidationFailed({"model": "a model name is required"})
    job = checks.prepare(
        svc, "txt2img", {}, {}, [], name, {k: body[k] for k in LOAD_SLOTS if k in body}
    )
    reply = await svc.load_model(job.model, job.load)
    return JSONResponse({"loaded": svc.model_name(job.model), **reply})


async def unload_model(request: Request) -> Response:
    await service(request).unload_models()
    return JSONResponse({"loaded": None})


async def refresh_models(request: Request) -> Response:
    return await list_models(request)


# -- service ----------------------------------------------------------------------------------


async def health(request: Request) -> Response:
    """Open to all; without credentials (when the server has some) counts only: no job ids,
    no error texts, no paths. ``status`` is ``storage_full`` while the data dir's disk is."""
    svc = service(request)
    detail = may_see(request, svc)
    running = [live.job.id for live in svc.running()]
    body: dict[str, Any] = {
        "status": "storage_full" if svc.storage.full else "ok",
        "worker": svc.worker_state(),
        "workers": svc.worker_summary(),
        "queued": svc.queued(),
        "running_count": len(running),
        "storage": svc.storage.view(detail),
    }
    if detail:
        body["worker_error"] = svc.worker_error()
        body["running"] = running[0] if running else None
        body["running_jobs"] = running
    return JSONResponse(body)


async def workers(request: Request) -> Response:
    return JSONResponse(service(request).workers())


async def version(request: Request) -> Response:
    info = service(request).engine_info
    return JSONResponse(
        {
            "version": __version__,
            "bindings_version": info.get("bindings_version"),
            "engine_version": info.get("engine_version"),
            "engine_commit": info.get("engine_commit"),
        }
    )


async def system(request: Request) -> Response:
    svc = service(request)
    info = {k: v for k, v in svc.engine_info.items() if k not in ("samplers", "schedulers")}
    loaded = svc.loaded_model()
    pool = svc.workers()
    return JSONResponse(
        {
            "engine": info,
            "threads": pool["workers"][0].get("threads") or svc.settings.default_threads,
            "memory": memory([None, svc.first_worker()["pid"]]),
            "loaded_model": svc.model_name(loaded) if loaded else None,
            "loaded_models": [svc.model_name(m) for m in svc.warm_models()],
            "worker": svc.first_worker(),
            "workers": [
                {
                    k: w.get(k)
                    for k in ("id", "state", "pid", "model_name", "resident_bytes", "threads")
                }
                for w in pool["workers"]
            ],
            "max_memory_bytes": pool["max_memory_bytes"],
            "models_bytes": pool["models_bytes"],
            "queued": svc.queued(),
            "data_dir": str(svc.settings.data_dir),
            "model_dirs": [str(d) for d in svc.model_dirs],
        }
    )


def routes() -> list[Route]:
    return [
        Route("/health", health),
        Route("/version", version),
        Route("/system", system),
        Route("/api/v1/workers", workers, methods=["GET"]),
        Route("/api/v1/jobs", create_job, methods=["POST"]),
        Route("/api/v1/estimate", estimate_job, methods=["POST"]),
        Route("/api/v1/jobs", list_jobs, methods=["GET"]),
        Route("/api/v1/jobs", clear_queue, methods=["DELETE"]),
        Route("/api/v1/jobs/{id}", get_job, methods=["GET"]),
        Route("/api/v1/jobs/{id}", delete_job, methods=["DELETE"]),
        Route("/api/v1/jobs/{id}/cancel", cancel_job, methods=["POST"]),
        Route("/api/v1/jobs/{id}/events", job_events, methods=["GET"]),
        Route("/api/v1/outputs/{name}", get_output, methods=["GET"]),
        Route("/api/v1/models", list_models, methods=["GET"]),
        Route("/api/v1/models/load", load_model, methods=["POST"]),
        Route("/api/v1/models/unload", unload_model, methods=["POST"]),
        Route("/api/v1/models/refresh", refresh_models, methods=["POST"]),
        Route("/api/v1/models/{name:path}", inspect_model, methods=["GET"]),
    ]
