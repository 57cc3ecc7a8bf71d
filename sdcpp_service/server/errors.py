"""HTTP errors: the service's own branch of the error tree, and one JSON shape per dialect.

::

    SdcppError
    ├── InvalidRequest
    │   └── ValidationFailed        several fields wrong at once (``errors``: field → message)
    └── ServiceError                an HTTP-level refusal with a status
        ├── BadRequest              400 (a body nested too deep to read)
        ├── NotFound                404
        ├── Unauthorized            401
        ├── PayloadTooLarge         413
        ├── QueueFull               429 (``retry_after`` seconds)
        ├── JobNotDone              409 (a cancelled job's result; deleting a live job)
        └── Timeout                 504 (a synchronous request waited too long)

``StorageFull`` (and any write that failed for want of space) is 507 ``storage_full``.

Dialects by path: ``/sdapi/…`` A1111 (FastAPI's ``detail`` shapes), ``/v1/…`` OpenAI
(``{"error": {"message", "type", "param", "code"}}``), everything else native
(``{"error": {"type", "message", "field", "fields"}}``). No handler ever returns a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sdcpp_service.errors import InvalidRequest, SdcppError, StorageFull
from sdcpp_service.server.storage import is_full

log = logging.getLogger("sdcpp_service.server")


class ValidationFailed(InvalidRequest):
    """One or more request fields are wrong; ``errors`` maps each field to its message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        first = next(iter(errors))
        super().__init__(first, errors[first])
        if len(errors) > 1:
            self.message = "; ".join(f"{k}: {v}" for k, v in errors.items())
        self.errors = dict(errors)


class ServiceError(SdcppError):
    status = 500
    code = "server_error"

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = dict(headers or {})


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class JobNotDone(ServiceError):
    status, code = 409, "job_not_done"


class Timeout(ServiceError):
    status, code = 504, "timeout"


class QueueFull(ServiceError):
    status, code = 429, "queue_full"

    def __init__(self, size: int, retry_after: int) -> None:
        super().__init__(
            f"the queue is full ({size} jobs waiting); retry in about {retry_after} s",
            {"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


#: Ordered: the first matching class (or class name from the worker) decides status and code.
STATUS: tuple[tuple[str, int, str], ...] = (
    ("ValidationFailed", 422, "invalid_request"),
    ("UnknownName", 422, "unknown_name"),
    ("InvalidImage", 422, "invalid_image"),
    ("InvalidRequest", 422, "invalid_request"),
    ("MissingComponent", 422, "missing_component"),
    ("ModelError", 422, "model_error"),
    ("DoesNotFit", 422, "does_not_fit"),
    ("StorageFull", 507, "storage_full"),
    ("Cancelled", 409, "cancelled"),
    ("WorkerDied", 500, "worker_died"),
    ("EngineNotInstalled", 503, "engine_not_installed"),
    ("EngineError", 500, "engine_error"),
)


def status_for(classes: list[str]) -> tuple[int, str]:
    for name, status, code in STATUS:
        if name in classes:
            return status, code
    return 500, "server_error"


def describe(exc: BaseException) -> tuple[int, str, str, str | None, dict[str, str]]:
    """(status, code, message, field, field errors) for any exception."""
    from sdcpp_service.server.worker import JobError

    if isinstance(exc, ServiceError):
        return exc.status, exc.code, str(exc), None, {}
    if isinstance(exc, JobError):
        status, code = status_for(list(exc.data.get("classes") or [exc.type]))
        field = exc.field if isinstance(exc.field, str) else None
        return status, code, str(exc), field, {field: str(exc)} if field else {}
    if isinstance(exc, SdcppError):
        status, code = status_for([c.__name__ for c in type(exc).__mro__])
        field = getattr(exc, "field", None)  # InvalidRequest and DoesNotFit name one
        errors = exc.errors if isinstance(exc, ValidationFailed) else {}
        if isinstance(exc, InvalidRequest) and not errors:
            errors = {exc.field: exc.reason}
        elif field and not errors:
            errors = {field: str(exc)}
        return status, code, str(exc), field, errors
    if isinstance(exc, HTTPException):
        return exc.status_code, "http_error", str(exc.detail), None, {}
    if is_full(exc):  # a write of the route itself (a converted copy, the options file)
        return 507, "storage_full", str(StorageFull("the data dir")), None, {}
    log.exception("internal error", exc_info=exc)
    return 500, "server_error", f"internal error: {type(exc).__name__}", None, {}


def dialect(path: str) -> str:
    if path.startswith("/sdapi/"):
        return "a1111"
    if path.startswith("/v1/"):
        return "openai"
    return "native"


def error_body(kind: str, exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    status, code, message, field, errors = describe(exc)
    headers = dict(getattr(exc, "headers", None) or {})
    if kind == "openai":
        etype = "invalid_request_error" if status < 500 else "server_error"
        if status == 401:
            etype = "authentication_error"
        return (
            status,
            {"error": {"message": message, "type": etype, "param": field, "code": code}},
            headers,
        )
    if kind == "a1111":
        if status == 422 and errors:
            detail = [
                {"loc": ["body", *f.split(".")], "msg": m, "type": "value_error"}
                for f, m in errors.items()
            ]
            return status, {"detail": detail}, headers
        body: dict[str, Any] = {"error": code, "detail": message, "body": "", "errors": message}
        return status, body, headers
    body = {"error": {"type": code, "message": message, "field": field, "fields": errors}}
    return status, body, headers


def allowed(request: Request) -> str:
    """Every method any route of this path takes (Starlette's own 405 names only the first
    route's)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "\x00"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def handle(request: Request, exc: Exception) -> Response:
    status, body, headers = error_body(dialect(request.url.path), exc)
    service = getattr(request.app.state, "service", None)
    if status == 507 and service is not None:  # /health reports it until there is room
        service.storage.failed(exc)
    if status == 405:
        headers["Allow"] = allowed(request)
    return JSONResponse(body, status_code=status, headers=headers)
