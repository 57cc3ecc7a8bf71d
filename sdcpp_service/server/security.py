"""Access and size limits as one ASGI middleware (streaming-safe: no response buffering).

- Optional bearer API keys (``Authorization: Bearer KEY``) and A1111-style basic credentials
  (``user:pass``); when either is configured every path but ``/health`` needs one of them.
  Comparisons use :func:`hmac.compare_digest`. The web page (``/`` and ``/web/*``) is open:
  it holds no data and asks for credentials before its first API call.
- Request bodies over ``max_body_bytes`` are refused with 413, by ``Content-Length`` up front
  and by counting while the body streams in.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdcpp_service.server.errors import PayloadTooLarge, Unauthorized, dialect, error_body

OPEN_PATHS = ("/health", "/", "/index.html")
#: The web page's static files (no data in them): the page asks for credentials itself.
OPEN_PREFIXES = ("/web/",)


def _open(path: str) -> bool:
    if path in OPEN_PATHS:
        return True
    return any(path.startswith(p) and "/" not in path[len(p) :] for p in OPEN_PREFIXES)


def _matches(given: str, allowed: Sequence[str]) -> bool:
    ok = False
    for candidate in allowed:  # no early exit: timing does not tell which key nearly matched
        ok |= hmac.compare_digest(given.encode(), candidate.encode())
    return ok


def authorized(header: str, api_keys: Sequence[str], basic: Sequence[str]) -> bool:
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and api_keys:
        return _matches(value, api_keys)
    if scheme == "basic" and basic:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        return _matches(decoded, basic)
    return False


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        api_keys: Sequence[str] = (),
        basic: Sequence[str] = (),
        max_body_bytes: int = 0,
    ) -> None:
        self.app = app
        self.api_keys = tuple(api_keys)
        self.basic = tuple(basic)
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if (self.api_keys or self.basic) and not _open(path):
            if not authorized(headers.get("authorization", ""), self.api_keys, self.basic):
                await self._refuse(path, send, Unauthorized("missing or wrong credentials"))
                return
        if self.max_body:
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body:
                await self._refuse(path, send, self._too_large())
                return
            receive = self._counting(receive)
        await self.app(scope, receive, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is over the {self.max_body} byte limit")

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise self._too_large()
            return message

        return counted

    async def _refuse(self, path: str, send: Send, exc: Exception) -> None:
        status, body, headers = error_body(dialect(path), exc)
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer, Basic realm="sdcpp"'
        raw = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})
