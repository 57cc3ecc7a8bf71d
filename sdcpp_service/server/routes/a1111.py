"""The AUTOMATIC1111 API under ``/sdapi/v1``."""

from __future__ import annotations

from starlette.routing import Route


def routes() -> list[Route]:
    return []
