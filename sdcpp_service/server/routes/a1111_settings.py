"""The A1111 API's settings and controls: ``options`` (A1111's full dict, persisted; see
:mod:`sdcpp_service.server.a1111_options`), ``cmd-flags``, ``unload-checkpoint``,
``reload-checkpoint``, the ``refresh-*`` calls and, with ``--api-server-stop``, ``server-stop``,
``server-kill`` and ``server-restart``."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sdcpp_service.errors import InvalidRequest
from sdcpp_service.server import a1111_options, models
from sdcpp_service.server.errors import NotFound, ValidationFailed
from sdcpp_service.server.routes.common import json_body, service
from sdcpp_service.server.service import Service


def loaded_title(svc: Service) -> str | None:
    """``name [hash10]`` of the loaded model (no hash when not hashed yet), or None."""
    loaded = svc.loaded_model()
    if not loaded:
        return None
    sha = svc.hashes.known(loaded)
    return svc.model_name(loaded) + (f" [{sha[:10]}]" if sha else "")


def current(svc: Service) -> dict[str, Any]:
    """A1111's defaults, overlaid with what clients set, overlaid with what is true now."""
    options = {**a1111_options.defaults(), **svc.a1111_options}
    title = loaded_title(svc)
    if title:  # the model actually loaded wins over a stale option
        options["sd_model_checkpoint"] = title
        options["sd_checkpoint_hash"] = svc.hashes.known(svc.loaded_model()) or ""
    return options


async def get_options(request: Request) -> Response:
    return JSONResponse(current(service(request)))


async def set_options(request: Request) -> Response:
    svc = service(request)
    body = await json_body(request)
    problems: dict[str, str] = {}
    for key, value in body.items():
        try:
            a1111_options.check(key, value)
        except InvalidRequest as exc:
            problems[key] = exc.reason
    vae = a1111_options.vae_choice(body)
    if vae is not None and "sd_vae" not in problems:
        try:
            models.resolve(vae, svc.settings, ("vae",), "sd_vae")
        except InvalidRequest as exc:
            problems["sd_vae"] = exc.reason
    checkpoint = body.get("sd_model_checkpoint")
    entry = None
    if checkpoint and "sd_model_checkpoint" not in problems:
        try:
            entry = svc.resolve_model(checkpoint, "sd_model_checkpoint")
        except InvalidRequest as exc:
            problems["sd_model_checkpoint"] = exc.reason
    if problems:
        raise ValidationFailed(problems)
    if entry is not None and str(entry.path) not in svc.warm_models():
        await svc.load_model(str(entry.path), {})
    svc.a1111_options.update(body)
    await asyncio.to_thread(a1111_options.save, svc.settings.data_dir, svc.a1111_options)
    return JSONResponse(None)


def _dirs(svc: Service, *names: str) -> str | None:
    """The first existing model subfolder of that name (A1111 or ComfyUI spelling)."""
    for root in svc.model_dirs:
        for name in names:
            for base in (root, root / "models"):
                if (base / name).is_dir():
                    return str(base / name)
    return None


async def cmd_flags(request: Request) -> Response:
    """Our real settings under A1111's ``cmd_opts`` keys (secrets are never echoed)."""
    svc = service(request)
    host, port = (request.scope.get("server") or ("127.0.0.1", 7860))[:2]
    opts = svc.options
    first = str(svc.model_dirs[0]) if svc.model_dirs else None
    flags: dict[str, Any] = {
        "api": True,
        "nowebui": False,
        "api_only": False,
        "listen": host not in ("127.0.0.1", "localhost", "::1"),
        "server_name": host,
        "port": port,
        "api_auth": "***" if opts.api_auth else None,
        "api_server_stop": opts.api_server_stop,
        "api_log": False,
        "data_dir": str(svc.settings.data_dir),
        "models_dir": first,
        "ckpt_dir": _dirs(svc, "Stable-diffusion", "checkpoints"),
        "vae_dir": _dirs(svc, "VAE", "vae"),
        "lora_dir": _dirs(svc, "Lora", "loras"),
        "embeddings_dir": _dirs(svc, "embeddings"),
        "esrgan_models_dir": _dirs(svc, "ESRGAN", "upscale_models"),
        "realesrgan_models_dir": _dirs(svc, "RealESRGAN", "upscale_models"),
        "controlnet_dir": _dirs(svc, "ControlNet", "controlnet"),
        "hypernetwork_dir": None,
        "codeformer_models_path": None,
        "gfpgan_models_path": None,
        "styles_file": [str(p) for p in _styles_files(svc)],
        "ckpt": opts.preload or None,
        "threads": svc.settings.default_threads,
        "max_queue": opts.max_queue,
        "no_half": True,
        "precision": "autocast",
        "lowvram": False,
        "medvram": False,
        "xformers": False,
        "skip_torch_cuda_test": True,
        "use_cpu": [],
        "device_id": None,
        "cors_allow_origins": None,
        "tls_keyfile": None,
        "tls_certfile": None,
        "timeout_keep_alive": 5,
        "disable_safe_unpickle": False,
        "freeze_settings": False,
        "hide_ui_dir_config": False,
        "enable_insecure_extension_access": False,
        "ui_settings_file": str(svc.settings.data_dir / a1111_options.CONFIG_NAME),
    }
    return JSONResponse(flags)


def _styles_files(svc: Service) -> list[Any]:
    from sdcpp_service import styles

    return styles.files(svc.settings)


async def unload_checkpoint(request: Request) -> Response:
    svc = service(request)
    if svc.loaded_model():
        await svc.unload_models()
    return JSONResponse({})


async def reload_checkpoint(request: Request) -> Response:
    """Load the model named by ``sd_model_checkpoint`` (or the default one) again."""
    svc = service(request)
    title = svc.a1111_options.get("sd_model_checkpoint")
    path = str(svc.resolve_model(title).path) if title else svc.default_model()
    if path not in svc.warm_models():
        await svc.load_model(path, {})
    return JSONResponse({})


async def refresh(request: Request) -> Response:
    """The catalog rescans its folders on every read (cached by size and mtime): nothing to do."""
    return JSONResponse(None)


def _stop_allowed(request: Request) -> None:
    if not service(request).options.api_server_stop:
        raise NotFound("server-stop/kill/restart need `sdcpp serve --api-server-stop`")


async def server_stop(request: Request) -> Response:
    """Stop the server the way Ctrl-C does (uvicorn shuts down, the lifespan stops the worker)."""
    _stop_allowed(request)
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, os.kill, os.getpid(), signal.SIGINT)
    return Response("Stopping.")


async def server_restart(request: Request) -> Response:
    """Stop, then ``sdcpp serve`` starts itself again with the same arguments."""
    _stop_allowed(request)
    request.app.state.restart = True
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, os.kill, os.getpid(), signal.SIGINT)
    return Response("Restarting.")


def routes(base: str) -> list[Route]:
    return [
        Route(f"{base}/options", get_options, methods=["GET"]),
        Route(f"{base}/options", set_options, methods=["POST"]),
        Route(f"{base}/cmd-flags", cmd_flags, methods=["GET"]),
        Route(f"{base}/unload-checkpoint", unload_checkpoint, methods=["POST"]),
        Route(f"{base}/reload-checkpoint", reload_checkpoint, methods=["POST"]),
        Route(f"{base}/refresh-checkpoints", refresh, methods=["POST"]),
        Route(f"{base}/refresh-vae", refresh, methods=["POST"]),
        Route(f"{base}/refresh-embeddings", refresh, methods=["POST"]),
        Route(f"{base}/refresh-loras", refresh, methods=["POST"]),
        Route(f"{base}/server-stop", server_stop, methods=["POST"]),
        Route(f"{base}/server-kill", server_stop, methods=["POST"]),
        Route(f"{base}/server-restart", server_restart, methods=["POST"]),
    ]
