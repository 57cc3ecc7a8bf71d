"""The A1111 "extras" upscaling API: ``extra-single-image`` and ``extra-batch-images``.

Each image is one ``upscale`` job on the queue (so it shows in ``/progress`` and the job list).
``upscaler_1`` is a name from ``/sdapi/v1/upscalers``: an ESRGAN model in the model folders, or
the built-ins ``Lanczos`` and ``Nearest``; ``None`` leaves the image as it is (as in A1111).
``resize_mode`` 1 scales to ``upscaling_resize_w`` × ``upscaling_resize_h`` (cropped to it when
``upscaling_crop``). Face restoration and a second upscaler are not offered (ignored).
"""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sdcpp_service.errors import Cancelled, InvalidRequest
from sdcpp_service.server import fields
from sdcpp_service.server import prepare as checks
from sdcpp_service.server.errors import ValidationFailed
from sdcpp_service.server.routes.common import json_body, run_sync, service
from sdcpp_service.server.service import Service

_RESIZE = fields.Field(float, 0.05, 16)


class ClientGone(Exception):
    """The client disconnected from a synchronous upscale (its job was cancelled)."""


_SIZE = fields.Field(int, 1, 16384)


def _plan(body: dict[str, Any]) -> tuple[str | None, dict[str, Any], dict[str, str]]:
    """(upscaler name or None for "None", resize settings, errors) from an extras body."""
    errors: dict[str, str] = {}
    name = body.get("upscaler_1")
    if name is not None and not isinstance(name, str):
        errors["upscaler_1"] = "must be an upscaler name"
        name = None
    if name is not None and name.strip().lower() in ("", "none"):
        name = None
    plan: dict[str, Any] = {"mode": body.get("resize_mode", 0), "crop": True}
    if plan["mode"] not in (0, 1):
        errors["resize_mode"] = "must be 0 (scale by) or 1 (scale to)"
    try:
        plan["scale"] = fields.coerce("upscaling_resize", body.get("upscaling_resize", 2), _RESIZE)
        if plan["mode"] == 1:
            for key in ("upscaling_resize_w", "upscaling_resize_h"):
                plan[key] = fields.coerce(key, body.get(key, 512), _SIZE)
            plan["crop"] = body.get("upscaling_crop", True) is not False
    except InvalidRequest as exc:
        errors[exc.field] = exc.reason
    return name, plan, errors


def _scale_for(data: bytes, plan: dict[str, Any]) -> tuple[float, tuple[int, int] | None]:
    """The scale factor and, for "scale to" with crop, the final size."""
    if plan["mode"] != 1:
        return float(plan["scale"]), None
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
    w, h = plan["upscaling_resize_w"], plan["upscaling_resize_h"]
    scale = max(w / width, h / height)
    return scale, (w, h) if plan["crop"] else None


def _finish(data: bytes, crop: tuple[int, int] | None) -> str:
    """PNG base64 of the result, centre-cropped to ``crop`` when given."""
    if crop is not None:
        with Image.open(io.BytesIO(data)) as im:
            image = im.copy()
        left, top = (image.width - crop[0]) // 2, (image.height - crop[1]) // 2
        image = image.crop((left, top, left + crop[0], top + crop[1]))
        out = io.BytesIO()
        image.save(out, format="PNG")
        data = out.getvalue()
    return base64.b64encode(data).decode()


def _unchanged(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        im.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


async def _decode(svc: Service, value: Any, field: str) -> bytes:
    try:
        return await asyncio.to_thread(
            fields.decode_image, value, field, svc.options.max_input_pixels
        )
    except InvalidRequest as exc:
        raise ValidationFailed({exc.field: exc.reason}) from None


async def _upscale(
    request: Request, svc: Service, name: str | None, plan: dict[str, Any], data: bytes
) -> str:
    if name is None:
        return await asyncio.to_thread(_unchanged, data)
    scale, crop = await asyncio.to_thread(_scale_for, data, plan)
    try:
        job = checks.prepare_upscale(
            svc, {"scale": scale}, {"image": data}, name, field="upscaler_1"
        )
    except ValidationFailed as exc:
        names = {"scale": "upscaling_resize"}
        raise ValidationFailed({names.get(k, k): v for k, v in exc.errors.items()}) from None
    done, _ = await run_sync(request, svc, job, {"image": data})
    if done is None:  # the client has gone (its job is cancelled): nobody reads this
        raise ClientGone()
    if done.state != "completed":  # interrupted (/sdapi/v1/interrupt)
        raise Cancelled("the upscale was interrupted")
    output = svc.output_path((done.result or {})["outputs"][0])
    return await asyncio.to_thread(_finish, output.read_bytes(), crop)


def _check_name(svc: Service, name: str | None) -> None:
    """An unknown upscaler is refused before any image is decoded or queued."""
    if name is not None and name.strip().lower() not in ("lanczos", "nearest"):
        try:
            svc.resolve_upscaler(name, "upscaler_1")
        except InvalidRequest as exc:
            raise ValidationFailed({"upscaler_1": exc.reason}) from None


async def single_image(request: Request) -> Response:
    svc = service(request)
    body = await json_body(request)
    name, plan, errors = _plan(body)
    fields.check(errors)
    _check_name(svc, name)
    data = await _decode(svc, body.get("image"), "image")
    try:
        image = await _upscale(request, svc, name, plan, data)
    except ClientGone:
        return Response(status_code=499)
    return JSONResponse({"image": image, "html_info": ""})


async def batch_images(request: Request) -> Response:
    svc = service(request)
    body = await json_body(request)
    name, plan, errors = _plan(body)
    items = body.get("imageList")
    if not isinstance(items, list) or not items:
        errors["imageList"] = "must be a non-empty list of {data, name}"
    fields.check(errors)
    _check_name(svc, name)
    assert isinstance(items, list)
    decoded = []
    for i, item in enumerate(items):
        value = item.get("data") if isinstance(item, dict) else None
        decoded.append(await _decode(svc, value, f"imageList.{i}.data"))
    try:
        images = [await _upscale(request, svc, name, plan, data) for data in decoded]
    except ClientGone:
        return Response(status_code=499)
    return JSONResponse({"images": images, "html_info": ""})


def routes(base: str) -> list[Route]:
    return [
        Route(f"{base}/extra-single-image", single_image, methods=["POST"]),
        Route(f"{base}/extra-batch-images", batch_images, methods=["POST"]),
    ]
