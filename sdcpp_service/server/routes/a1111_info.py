"""The A1111 API's lists: models, VAEs, LoRAs, samplers, schedulers, upscalers, png-info,
memory."""

from __future__ import annotations

import asyncio
import io

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sdcpp_service.engine import names
from sdcpp_service.server import models
from sdcpp_service.server.errors import ValidationFailed
from sdcpp_service.server.routes.common import json_body, memory, service
from sdcpp_service.server.service import Service, decode


async def sd_models(request: Request) -> Response:
    svc = service(request)
    out = []
    for entry in models.scan(svc.settings):
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
    return [e for e in models.scan(svc.settings) if e.kind in kinds]


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
    known = service(request).engine_info.get("samplers") or list(names.A1111_SAMPLERS.values())
    return JSONResponse(
        [
            {"name": names.sampler_label(n), "aliases": names.a1111_aliases(n), "options": {}}
            for n in known
        ]
    )


async def schedulers(request: Request) -> Response:
    known = service(request).engine_info.get("schedulers") or list(names.A1111_SCHEDULERS.values())
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
    builtin: list[tuple[str, str | None, int]] = [
        ("None", None, 4),
        ("Lanczos", None, 4),
        ("Nearest", None, 4),
    ]
    networks = _by_kind(service(request), "upscaler")
    items = builtin + [(e.name, str(e.path), e.scale or 4) for e in networks]
    return JSONResponse(
        [
            {
                "name": n,
                "model_name": n if p else None,
                "model_path": p,
                "model_url": None,
                "scale": scale,  # the network's native factor (A1111 reports 4 for resizers)
            }
            for n, p, scale in items
        ]
    )


async def latent_upscale_modes(request: Request) -> Response:
    known = service(request).engine_info.get("hires_upscalers") or ["latent"]
    return JSONResponse([{"name": n.capitalize()} for n in known if n.startswith("latent")])


async def png_info(request: Request) -> Response:
    from PIL import Image

    from sdcpp_service.engine.images import parse_infotext

    body = await json_body(request)
    if "image" not in body:  # a required field of A1111's PNGInfoRequest
        raise ValidationFailed({"image": "is required (a base64 PNG, or a data: URL)"})
    if isinstance(body["image"], str) and not body["image"].strip():  # as A1111: no info
        return JSONResponse({"info": "", "items": {}, "parameters": {}})
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
    m = memory([None, service(request).first_worker()["pid"]])
    total, free = m.get("total_bytes", 0), m.get("available_bytes", 0)
    return JSONResponse(
        {
            "ram": {"free": free, "used": total - free, "total": total, **m},
            "cuda": {"error": "no CUDA in this build"},
        }
    )


def routes(base: str) -> list[Route]:
    return [
        Route(f"{base}/sd-models", sd_models, methods=["GET"]),
        Route(f"{base}/sd-vae", sd_vae, methods=["GET"]),
        Route(f"{base}/samplers", samplers, methods=["GET"]),
        Route(f"{base}/schedulers", schedulers, methods=["GET"]),
        Route(f"{base}/upscalers", upscalers, methods=["GET"]),
        Route(f"{base}/latent-upscale-modes", latent_upscale_modes, methods=["GET"]),
        Route(f"{base}/loras", loras, methods=["GET"]),
        Route(f"{base}/png-info", png_info, methods=["POST"]),
        Route(f"{base}/memory", mem, methods=["GET"]),
    ]
