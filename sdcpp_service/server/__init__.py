"""The HTTP service: ``create_app(settings, engine=None)`` (native, A1111 and OpenAI dialects).

Imported lazily so that the worker process (``server/worker.py``) never loads the web framework.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from sdcpp_service.server.app import create_app

        return create_app
    raise AttributeError(f"module 'sdcpp_service.server' has no attribute {name!r}")
