"""Errors across the worker boundary: an engine error sent as itself (:func:`as_sent`), a stored
job's error as data (:func:`error_data`) and raised again from it (:class:`JobError`)."""

from __future__ import annotations

import pickle
from typing import Any

from sdcpp_service.errors import EngineError, SdcppError


class JobError(SdcppError):
    """A stored job's error, raised again from its data (``type``, ``field``) for the clients
    that wait on the job (the synchronous dialects)."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(str(data.get("message") or "the engine failed"))
        self.data = data
        self.type = str(data.get("type") or "EngineError")
        self.field = data.get("field")


def error_data(exc: BaseException) -> dict[str, Any]:
    """An exception as picklable data: class name (and its bases in the tree), message, field."""
    names = [c.__name__ for c in type(exc).__mro__ if issubclass(c, SdcppError)]
    if not isinstance(exc, SdcppError):
        return {"type": "InternalError", "classes": [], "message": f"{type(exc).__name__}: {exc}"}
    return {
        "type": type(exc).__name__,
        "classes": names,
        "message": str(exc),
        "field": getattr(exc, "field", None),
    }


def as_sent(exc: BaseException) -> SdcppError:
    """The error to send to the server: itself when it is ours and pickles, else an
    EngineError saying what it was."""
    if isinstance(exc, SdcppError):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:
            return EngineError(str(exc))
    return EngineError(f"internal error in the engine worker: {type(exc).__name__}: {exc}")
