"""An API node's ear on the cluster: one connection LISTENing on the job events channel, each
notification handed to the watchers of its job (SSE streams, waiting requests). After a lost
connection every watcher gets a ``resync`` (it re-reads the job's stored state)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from sdcpp_service.cluster.store import CHANNEL
from sdcpp_service.server.jobs import FINISHED

log = logging.getLogger("sdcpp_service.cluster")

Note = tuple[str, dict[str, Any]]


class Listener:
    def __init__(self, url: str, on_end: Callable[[str], None] | None = None) -> None:
        self.url = url
        #: called with the id of every job of the cluster that ends (watched or not)
        self.on_end = on_end
        self.watchers: dict[str, set[asyncio.Queue[Note]]] = {}
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def watch(self, job_id: str) -> asyncio.Queue[Note]:
        queue: asyncio.Queue[Note] = asyncio.Queue()
        self.watchers.setdefault(job_id, set()).add(queue)
        return queue

    def unwatch(self, job_id: str, queue: asyncio.Queue[Note]) -> None:
        watchers = self.watchers.get(job_id)
        if watchers is not None:
            watchers.discard(queue)
            if not watchers:
                del self.watchers[job_id]

    def _dispatch(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            job_id, event, data = str(note["id"]), str(note["event"]), dict(note["data"])
        except (ValueError, KeyError, TypeError):
            return
        for queue in list(self.watchers.get(job_id, ())):
            queue.put_nowait((event, data))
        if event in FINISHED and self.on_end is not None:
            try:
                self.on_end(job_id)
            except Exception as exc:  # housekeeping must not stop the listener
                log.error("after job %s: %s", job_id, exc)

    async def _run(self) -> None:
        import psycopg

        delay = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    delay = 0.2
                    for watchers in list(self.watchers.values()):
                        for queue in list(watchers):
                            queue.put_nowait(("resync", {}))
                    async for note in conn.notifies():
                        self._dispatch(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.error("listening for job events: %s (retrying)", exc)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
