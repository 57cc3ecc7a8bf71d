"""``create_app(settings, engine=None)``: the Starlette application and its lifespan.

Nothing lives at module level: the lifespan builds the :class:`Service` (job store, worker
process, queue) and tears it down; routes reach it through ``request.app.state.service``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sdcpp_service.config import Settings
from sdcpp_service.engine.base import Engine
from sdcpp_service.errors import SdcppError
from sdcpp_service.server import errors
from sdcpp_service.server.engine import PipelineEngine
from sdcpp_service.server.options import ServerOptions
from sdcpp_service.server.routes import a1111, native, openai, sdserver, web
from sdcpp_service.server.security import Guard
from sdcpp_service.server.service import Service


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    options: ServerOptions | None = None,
) -> Starlette:
    """The service as an ASGI app. ``engine`` defaults to the real one (a warm Pipeline in a
    worker process); tests pass ``tests.fakes.FakeEngine``."""
    settings = settings or Settings.from_env()
    options = options or ServerOptions()
    engine = engine if engine is not None else PipelineEngine(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if options.queue:  # an API node of a cluster (sdcpp_service.cluster)
            from sdcpp_service.cluster.node import ClusterService

            service: Service = ClusterService(settings, engine, options)
        else:
            service = Service(settings, engine, options)
        app.state.service = service
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    async def openapi(request: Request) -> Response:
        from sdcpp_service.server.openapi import spec

        return JSONResponse(spec(request.app.routes))

    routes = [
        Route("/openapi.json", openapi),
        *native.routes(),
        *a1111.routes(),
        *openai.routes(),
        *sdserver.routes(),
        *web.routes(),
    ]
    guard = Middleware(
        Guard,
        api_keys=options.api_keys,
        basic=options.api_auth,
        max_body_bytes=options.max_body_bytes,
    )
    return Starlette(
        routes=routes,
        middleware=[guard],
        lifespan=lifespan,
        exception_handlers={
            SdcppError: errors.handle,
            HTTPException: errors.handle,
            Exception: errors.handle,
        },
    )
