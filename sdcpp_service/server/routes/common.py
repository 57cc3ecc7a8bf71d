"""Helpers every dialect's routes share: the service handle, JSON bodies, a synchronous job run
(cancelled when its client disconnects), images out, memory."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.requests import Request

from sdcpp_service import rules
from sdcpp_service.server.errors import BadRequest, Timeout, ValidationFailed
from sdcpp_service.server.jobs import Job
from sdcpp_service.server.scheduler import Live
from sdcpp_service.server.service import Service
from sdcpp_service.server.worker import JobError

MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def may_see(request: Request, svc: Service) -> bool:
    """Whether the request may see details on an open path (``/health``): always when the server
    has no credentials, else only with valid ones."""
    from sdcpp_service.server.security import authorized

    keys, basic = svc.options.api_keys, svc.options.api_auth
    if not keys and not basic:
        return True
    return authorized(request.headers.get("authorization", ""), keys, basic)


def client_key(request: Request) -> str:
    """Who is asking: address and credentials (hashed), to tell one A1111 client's job from
    another's."""
    import hashlib

    host = request.client.host if request.client else ""
    auth = request.headers.get("authorization", "")
    return f"{host}|{hashlib.sha256(auth.encode()).hexdigest()[:16]}"


async def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or 422 naming ``body``."""
    raw = await request.body()
    if not raw.strip():
        return {}
    import json

    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRequest("the JSON body is nested too deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed({"body": f"is not valid JSON ({str(exc)[:200]})"}) from None
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    problem = rules.check_tree(data)
    if problem == ("", "too deep"):
        raise BadRequest(f"the JSON body is nested deeper than {rules.MAX_DEPTH} levels")
    if problem is not None:
        raise ValidationFailed({problem[0]: problem[1]})
    return data


def encode(path: Path, fmt: str = "png", quality: int | None = None, thumb: int = 0) -> bytes:
    """An output file re-encoded as ``fmt`` (png, jpeg, webp), optionally as a thumbnail."""
    from PIL import Image

    from sdcpp_service.engine.images import metadata_params

    if fmt == "png" and not thumb:
        return path.read_bytes()
    with Image.open(path) as im:
        image = im.convert("RGB") if fmt != "png" else im.copy()
        parameters = im.info.get("parameters")
    if thumb:
        image.thumbnail((thumb, thumb))
    out = io.BytesIO()
    kwargs: dict[str, Any] = {} if quality is None else {"quality": quality}
    pil_format = {"jpg": "JPEG"}.get(fmt, fmt.upper())
    if isinstance(parameters, str) and not thumb:  # the infotext travels, as the CLI writes it
        kwargs.update(metadata_params(pil_format, parameters))
    image.save(out, format=pil_format, **kwargs)
    return out.getvalue()


def memory(pids: list[int | None]) -> dict[str, Any]:
    """System RAM and the resident memory of the given processes (Linux /proc; else empty)."""
    out: dict[str, Any] = {}
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        out["total_bytes"] = int(info["MemTotal"].split()[0]) * 1024
        out["available_bytes"] = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    for label, pid in zip(("server_rss_bytes", "worker_rss_bytes"), pids, strict=False):
        if pid is None:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                out[label] = int(line.split()[1]) * 1024
    out.setdefault("server_pid", os.getpid())
    return out


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body is read already: only a disconnect is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_sync(
    request: Request,
    svc: Service,
    job: Job,
    images: Mapping[str, bytes | list[bytes]],
    cancel_on_disconnect: bool = True,
) -> tuple[Job | None, Live]:
    """Submit a job and wait for it, as the synchronous dialects do. A client that disconnects
    meanwhile cancels its job (unless ``cancel_on_disconnect`` is false): the result is then
    ``(None, live)``. A failed job raises its error; past ``sync_timeout``, 504."""
    live = await svc.submit(job, images, client_key(request))
    finished = asyncio.ensure_future(live.done.wait())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {finished, gone}, timeout=svc.options.sync_timeout, return_when="FIRST_COMPLETED"
        )
    finally:
        for task in (finished, gone):
            task.cancel()
    if finished not in done:
        if gone in done:
            if cancel_on_disconnect:
                svc.cancel(job.id)
            return None, live
        raise Timeout(f"job {job.id} is still running; follow /api/v1/jobs/{job.id}")
    if live.job.state == "failed":
        raise JobError(live.job.error or {})
    return live.job, live
