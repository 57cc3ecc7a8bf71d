"""The rest of A1111's ``/sdapi/v1`` table: the lists (``realesrgan-models``, ``prompt-styles``,
``embeddings``, ``sd-modules`` from the model folders; ``hypernetworks``, ``face-restorers``,
``scripts``, ``script-info``, ``extensions`` as A1111 answers with none installed) and the routes
that would need models this engine does not run (``interrogate``, ``create/*``, ``train/*``,
``preprocess``): 501 with A1111's error body naming the reason, never a 404."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sdcpp_service import styles
from sdcpp_service.errors import InvalidRequest
from sdcpp_service.server import models
from sdcpp_service.server.errors import ValidationFailed
from sdcpp_service.server.routes.common import service

#: Route → why it answers 501.
UNSUPPORTED: dict[str, str] = {
    "interrogate": "interrogate needs a CLIP/BLIP or DeepDanbooru captioning model; "
    "stable-diffusion.cpp runs none",
    "create/embedding": "creating textual-inversion embeddings needs training, "
    "which stable-diffusion.cpp does not do",
    "create/hypernetwork": "hypernetworks are not supported by stable-diffusion.cpp",
    "train/embedding": "training is not supported by stable-diffusion.cpp",
    "train/hypernetwork": "training is not supported by stable-diffusion.cpp",
    "preprocess": "training-image preprocessing is not supported by stable-diffusion.cpp",
}

#: An embedding's family → the main-model architectures it works with.
_FAMILY_ARCHS = {"sd1": ("sd1", "sdxs"), "sd2": ("sd2",), "sdxl": ("sdxl", "ssd1b", "vega")}


def _unsupported(reason: str) -> Any:
    async def endpoint(request: Request) -> Response:
        body = {
            "error": "NotImplementedError",
            "detail": reason,
            "body": "",
            "errors": reason,
        }
        return JSONResponse(body, status_code=501)

    return endpoint


async def empty_list(request: Request) -> Response:
    return JSONResponse([])


async def scripts(request: Request) -> Response:
    return JSONResponse({"txt2img": [], "img2img": []})


async def realesrgan_models(request: Request) -> Response:
    entries = [e for e in models.scan(service(request).settings) if e.kind == "upscaler"]
    return JSONResponse(
        [{"name": e.name, "path": str(e.path), "scale": e.scale or 4} for e in entries]
    )


async def prompt_styles(request: Request) -> Response:
    try:
        known = await asyncio.to_thread(styles.load, service(request).settings)
    except InvalidRequest as exc:
        raise ValidationFailed({exc.field: exc.reason}) from None
    return JSONResponse(
        [
            {"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
            for s in known.values()
        ]
    )


def _embedding(entry: models.ModelEntry) -> dict[str, Any]:
    from sdcpp_service.models import read_header

    shape: int | None = None
    vectors: int | None = None
    try:
        tensors = read_header(entry.path).tensors.values()
        widths = {t.shape[-1] for t in tensors if t.shape}
        shape = sum(widths) or None
        vectors = max((t.shape[0] if len(t.shape) == 2 else 1) for t in tensors)
    except Exception:  # an unreadable header still lists the file, without its numbers
        pass
    return {
        "step": None,
        "sd_checkpoint": None,
        "sd_checkpoint_name": None,
        "shape": shape,
        "vectors": vectors,
    }


async def embeddings(request: Request) -> Response:
    """Embeddings that fit the loaded model are ``loaded``, the others ``skipped`` (A1111 skips
    those of another width); with no model loaded, every one is ``loaded``."""
    svc = service(request)
    entries = models.scan(svc.settings)
    loaded = svc.loaded_model()
    arch = next((e.arch or "" for e in entries if str(e.path) == loaded), None) if loaded else None
    out: dict[str, dict[str, Any]] = {"loaded": {}, "skipped": {}}
    for entry in entries:
        if entry.kind != "embedding":
            continue
        data = await asyncio.to_thread(_embedding, entry)
        fits = arch is None or arch.startswith(_FAMILY_ARCHS.get(entry.arch or "", ("",)))
        out["loaded" if fits else "skipped"][entry.path.stem] = data
    return JSONResponse(out)


async def sd_modules(request: Request) -> Response:
    """VAEs and text encoders (A1111 1.10's "additional modules" list)."""
    entries = models.scan(service(request).settings)
    return JSONResponse(
        [
            {"model_name": e.name, "filename": str(e.path)}
            for e in entries
            if e.kind in ("vae", "text_encoder")
        ]
    )


def routes(base: str) -> list[Route]:
    out = [
        Route(f"{base}/hypernetworks", empty_list, methods=["GET"]),
        Route(f"{base}/face-restorers", empty_list, methods=["GET"]),
        Route(f"{base}/script-info", empty_list, methods=["GET"]),
        Route(f"{base}/extensions", empty_list, methods=["GET"]),
        Route(f"{base}/scripts", scripts, methods=["GET"]),
        Route(f"{base}/realesrgan-models", realesrgan_models, methods=["GET"]),
        Route(f"{base}/prompt-styles", prompt_styles, methods=["GET"]),
        Route(f"{base}/embeddings", embeddings, methods=["GET"]),
        Route(f"{base}/sd-modules", sd_modules, methods=["GET"]),
    ]
    for path, reason in UNSUPPORTED.items():
        out.append(Route(f"{base}/{path}", _unsupported(reason), methods=["POST"]))
    return out
