"""The OpenAI images API under ``/v1``."""

from __future__ import annotations

from starlette.routing import Route


def routes() -> list[Route]:
    return []
