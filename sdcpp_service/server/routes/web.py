"""The web page: ``/`` (index.html) and its ES modules and stylesheet under ``/web/``.

The files are package data (``sdcpp_service/server/web/``); nothing is built or fetched from
elsewhere. The page itself holds no data, so it is served without credentials (the API it calls
still needs them); ``index.html`` carries a small config (which credentials the server wants,
whether the worker-pool route exists) so the page asks for a key before its first API call.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from sdcpp_service import rules
from sdcpp_service.server.routes.common import service

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
#: Static files by suffix → media type; anything else under /web/ is a 404.
STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Paths the page is served at (open: see security.OPEN_PREFIXES).
PAGE_PATHS = ("/", "/index.html")
STATIC_PREFIX = "/web/"
_CONFIG_TAG = '<meta name="sdcpp-config" content="{}">'


def page_config(request: Request) -> dict[str, object]:
    svc = service(request)
    paths = {getattr(r, "path", "") for r in request.app.routes}
    bounds = {
        name: [rule.lo, rule.hi]
        for name, rule in {**rules.GENERATION, **rules.KIND_FIELDS}.items()
        if rule.kind in (int, float)
    }
    if svc.options.max_steps:  # this server's own, lower, limit
        bounds["steps"][1] = min(bounds["steps"][1] or svc.options.max_steps, svc.options.max_steps)
    return {
        "auth": {"bearer": bool(svc.options.api_keys), "basic": bool(svc.options.api_auth)},
        "workers": "/api/v1/workers" in paths,
        "rules": bounds,
    }


async def index(request: Request) -> Response:
    html = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    config = json.dumps(page_config(request), separators=(",", ":")).replace('"', "&quot;")
    html = html.replace(_CONFIG_TAG, f'<meta name="sdcpp-config" content="{config}">', 1)
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    path = WEB_DIR / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        raise HTTPException(404, f"no web file '{name}'")
    return FileResponse(
        path, media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "no-cache"}
    )


def routes() -> list[Route]:
    return [
        *(Route(p, index, methods=["GET"]) for p in PAGE_PATHS),
        Route(STATIC_PREFIX + "{name}", static, methods=["GET"]),
    ]
