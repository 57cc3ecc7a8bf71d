"""The watching side of the queue: each job's events (SSE streams, ``wait``), its queue
position, and the progress and previews a worker reports, fanned out to every watcher and saved
to the store about once a second. :class:`~sdcpp_service.server.scheduler.Scheduler` builds on
it."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator

from sdcpp_service.server.errors import NotFound
from sdcpp_service.server.jobs import FINISHED, Job
from sdcpp_service.server.live import Event, Live, progress_data, terminal_event
from sdcpp_service.server.store import JobStore
from sdcpp_service.types import Progress

log = logging.getLogger("sdcpp_service.server")


class Watchers:
    """Queued and running jobs as their watchers see them."""

    store: JobStore
    #: jobs waiting for a worker, in order
    queue: list[Live]
    #: every queued or running job of this node, by id
    live: dict[str, Live]

    def find(self, job_id: str) -> Job | None:
        return self.store.get(job_id)

    def position(self, job_id: str) -> int | None:
        for i, live in enumerate(self.queue):
            if live.job.id == job_id:
                return i
        return None

    # -- watching ---------------------------------------------------------------------------

    def _emit(self, live: Live, event: Event) -> None:
        for queue in list(live.subscribers):
            queue.put_nowait(event)

    def _announce_positions(self) -> None:
        for i, live in enumerate(self.queue):
            if live.subscribers:
                self._emit(live, ("queued", {"id": live.job.id, "position": i}))

    async def events(self, job_id: str) -> AsyncIterator[Event]:
        """A job's events from now on, starting with its current state; ends when it does."""
        live = self.live.get(job_id)
        if live is None:
            job = self.find(job_id)
            if job is None:
                raise NotFound(f"no job '{job_id}'")
            if job.finished_state:
                yield terminal_event(job)
                return
            raise NotFound(f"job '{job_id}' is not being run by this server")
        queue: asyncio.Queue[Event] = asyncio.Queue()
        live.subscribers.add(queue)
        try:
            position = self.position(job_id)
            if position is not None:
                yield "queued", {"id": job_id, "position": position}
            else:
                yield "started", {"id": job_id, "attempt": live.job.attempts}
                if live.progress is not None:
                    yield "progress", progress_data(job_id, live.progress)
            while True:
                event = await queue.get()
                yield event
                if event[0] in FINISHED:
                    return
        finally:
            live.subscribers.discard(queue)

    async def wait(self, job_id: str) -> Job:
        live = self.live.get(job_id)
        if live is not None:
            await live.done.wait()
            return live.job
        job = self.find(job_id)
        if job is None:
            raise NotFound(f"no job '{job_id}'")
        return job

    def _progress(self, live: Live, p: Progress) -> None:
        live.progress = p
        data = progress_data(live.job.id, p)
        self._emit(live, ("progress", data))
        now = time.monotonic()
        if now - live.saved >= 1.0 or p.step == p.total:  # the store: about once a second
            live.saved = now
            try:
                self.store.progress(live.job.id, data)
            except Exception as exc:
                log.error("progress of %s: %s", live.job.id, exc)

    def _preview(self, live: Live, p: Progress, png: bytes) -> None:
        live.preview, live.preview_step = png, p.step
        data = {
            "id": live.job.id,
            "step": p.step,
            "total": p.total,
            "image": "data:image/png;base64," + base64.b64encode(png).decode(),
        }
        self._emit(live, ("preview", data))
