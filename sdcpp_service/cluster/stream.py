"""A job's event stream on an API node, from whichever worker runs it: its stored state first
(so a late or reconnecting watcher catches up), then the notifications, in order, until it
ends — the same events as the embedded server's (``queued``, ``started``, ``progress``,
``preview``, then ``completed``/``failed``/``cancelled``)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sdcpp_service.server.errors import NotFound
from sdcpp_service.server.jobs import FINISHED
from sdcpp_service.server.live import Event, terminal_event

if TYPE_CHECKING:
    from sdcpp_service.cluster.node import ClusterService

#: seconds without a notification after which the stored state is read again
RECHECK = 5.0


async def job_events(node: ClusterService, job_id: str) -> AsyncIterator[Event]:
    queue = node.listener.watch(job_id)
    try:
        async for event in _current(node, job_id):
            yield event
            if event[0] in FINISHED:
                return
        while True:
            try:
                name, data = await asyncio.wait_for(queue.get(), RECHECK)
            except asyncio.TimeoutError:
                name, data = "resync", {}
            if name in FINISHED or name == "resync":
                job = await asyncio.to_thread(node.pg.get, job_id)
                if job is None:
                    return
                if job.finished_state:
                    yield terminal_event(job)
                    return
                continue
            if name == "requeued":  # its worker was lost: waiting for another one
                position = await asyncio.to_thread(node.pg.position, job_id)
                yield "queued", {"id": job_id, "position": position or 0}
                continue
            if name == "preview":
                row = await asyncio.to_thread(node.pg.live_row, job_id)
                if row is None or row[3] is None:
                    continue
                data = {**data, "image": "data:image/png;base64,"
                        + base64.b64encode(bytes(row[3])).decode()}  # fmt: skip
            yield name, data
    finally:
        node.listener.unwatch(job_id, queue)


async def _current(node: ClusterService, job_id: str) -> AsyncIterator[Event]:
    job = await asyncio.to_thread(node.pg.get, job_id)
    if job is None:
        raise NotFound(f"no job '{job_id}'")
    if job.finished_state:
        yield terminal_event(job)
    elif job.state == "queued":
        position = await asyncio.to_thread(node.pg.position, job_id)
        yield "queued", {"id": job_id, "position": position or 0}
    else:
        yield "started", {"id": job_id, "attempt": job.attempts}
        row = await asyncio.to_thread(node.pg.live_row, job_id)
        if row is not None and row[2]:
            yield "progress", dict(row[2])
