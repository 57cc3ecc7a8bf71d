"""Server-sent events: ``event: <kind>`` / ``data: <json>`` frames, with keep-alive comments.

The event source is pumped by its own task into a queue, so waiting for the next event can time
out (to send a ``: ping``) without cancelling the source itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse

Event = tuple[str, dict[str, Any]]

_END: Event = ("", {})


def frame(kind: str, data: dict[str, Any], event_id: int) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def frames(source: AsyncIterator[Event], keepalive: float = 15.0) -> AsyncIterator[str]:
    queue: asyncio.Queue[Event] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in source:
                queue.put_nowait(event)
        finally:
            queue.put_nowait(_END)

    task = asyncio.get_running_loop().create_task(pump())
    try:
        event_id = 0
        while True:
            try:
                kind, data = await asyncio.wait_for(queue.get(), keepalive)
            except asyncio.TimeoutError:
                yield ": ping\n\n"
                continue
            if not kind:
                break
            event_id += 1
            yield frame(kind, data, event_id)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def event_stream(source: AsyncIterator[Event], keepalive: float = 15.0) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        frames(source, keepalive), media_type="text/event-stream", headers=headers
    )
