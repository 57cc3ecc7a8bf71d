"""The queue: one job at a time on the worker, events for watchers, cancel, bounded reordering.

Jobs are persisted by :class:`~sdcpp_service.server.jobs.JobStore`; this module keeps the
in-memory side (who is waiting, who is watching, the latest progress). Reordering: among the
first ``window`` queued jobs, one that wants the already-loaded model may go first, but a job
passed over ``max_skips`` times goes next regardless (no starvation).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sdcpp_service.errors import Cancelled
from sdcpp_service.server.engine import PIPELINE_KINDS, JobSpec
from sdcpp_service.server.errors import NotFound, QueueFull
from sdcpp_service.server.jobs import FINISHED, Images, Job, JobStore
from sdcpp_service.server.worker import JobError, Worker, WorkerDied, error_data
from sdcpp_service.types import Progress

log = logging.getLogger("sdcpp_service.server")

Event = tuple[str, dict[str, Any]]

OUTPUT_URL = "/api/v1/outputs/{}"


def model_key(model: str, load: dict[str, Any]) -> str:
    return f"{model}|{json.dumps(load, sort_keys=True)}"


@dataclass
class Live:
    """The in-memory side of a queued or running job."""

    job: Job
    subscribers: set[asyncio.Queue[Event]] = field(default_factory=set)
    progress: Progress | None = None
    #: the latest preview frame (PNG) and the step it shows, when the job asked for previews
    preview: bytes | None = None
    preview_step: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    skips: int = 0
    cancel: bool = False

    @property
    def key(self) -> str:
        return model_key(self.job.model, self.job.load)


def terminal_event(job: Job) -> Event:
    """The event that ends a job's stream (also what a late watcher receives)."""
    data: dict[str, Any] = {"id": job.id, "status": job.state}
    if job.state == "completed" and job.result:
        data["outputs"] = [OUTPUT_URL.format(n) for n in job.result.get("outputs", [])]
        data["seeds"] = job.result.get("seeds", [])
    elif job.error:
        data["error"] = job.error
    return job.state, data


class Scheduler:
    def __init__(
        self,
        store: JobStore,
        worker: Worker,
        max_queue: int = 100,
        window: int = 4,
        max_skips: int = 3,
        on_finish: Callable[[Job], None] | None = None,
    ) -> None:
        #: called with each job once it is stored as finished (retention, …)
        self.on_finish = on_finish
        self.store = store
        self.worker = worker
        self.max_queue = max_queue
        self.window = window
        self.max_skips = max_skips
        self.queue: list[Live] = []
        self.live: dict[str, Live] = {}
        self.current: Live | None = None
        self.loaded = ""
        #: one worker call at a time: jobs, and model load/unload requests
        self.lock = asyncio.Lock()
        self.job_seconds = 10.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        requeued, failed = self.store.recover()
        if requeued or failed:
            log.warning("recovered jobs: %d re-queued, %d failed", len(requeued), len(failed))
        for job in self.store.list_jobs("queued", limit=1_000_000)[0]:
            self._enqueue(Live(job))
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop running jobs (the running one goes back to the queue), then the worker."""
        self._stopping = True
        self.worker.stop_restarting()
        if self.current is not None:
            self.worker.kill()
            for _ in range(300):  # the job goes back to the queue once its call has ended
                if self.current is None:
                    break
                await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.worker.close()

    # -- submitting and cancelling -------------------------------------------------------------

    def retry_after(self) -> int:
        return int(min(3600, max(1, (len(self.queue) + 1) * self.job_seconds)))

    def submit(self, job: Job, images: Images | None = None) -> Live:
        if len(self.queue) >= self.max_queue:
            raise QueueFull(len(self.queue), self.retry_after())
        self.store.add(job, images)
        live = Live(job)
        self._enqueue(live)
        return live

    def _enqueue(self, live: Live) -> None:
        self.queue.append(live)
        self.live[live.job.id] = live
        self._wake.set()

    def position(self, job_id: str) -> int | None:
        for i, live in enumerate(self.queue):
            if live.job.id == job_id:
                return i
        return None

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job (removed) or the running one (its worker is stopped)."""
        live = self.live.get(job_id)
        if live is None:
            job = self.store.get(job_id)
            if job is None:
                raise NotFound(f"no job '{job_id}'")
            return job
        live.cancel = True
        if live is self.current:
            self.worker.kill()
        elif live in self.queue:
            self.queue.remove(live)
            self._finish(live, "cancelled", error={"type": "Cancelled", "message": "cancelled"})
            self._announce_positions()
        return live.job

    def clear(self) -> list[str]:
        """Cancel every queued job (the running one keeps going)."""
        ids = [live.job.id for live in self.queue]
        for job_id in ids:
            self.cancel(job_id)
        return ids

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
            job = self.store.get(job_id)
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
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job '{job_id}'")
        return job

    # -- running ----------------------------------------------------------------------------

    def _pick(self) -> Live:
        head = self.queue[0]
        chosen = head
        if self.loaded and head.key != self.loaded and head.skips < self.max_skips:
            for live in self.queue[1 : self.window]:
                if live.key == self.loaded:
                    chosen = live
                    break
        index = self.queue.index(chosen)
        for passed in self.queue[:index]:
            passed.skips += 1
        del self.queue[index]
        return chosen

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self.queue:
                self._wake.clear()
                continue
            async with self.lock:
                if self._stopping:
                    return
                if not self.queue:
                    continue
                live = self._pick()
                self.current = live
                self._announce_positions()
                try:
                    await self._execute(live)
                finally:
                    self.current = None

    async def _execute(self, live: Live) -> None:
        job = live.job
        self.store.start(job)
        self._emit(live, ("started", {"id": job.id, "attempt": job.attempts}))
        params = {**job.params, **self.store.inputs(job.id)}
        spec = JobSpec(job.id, job.kind, job.model, job.load, params)
        t0 = time.perf_counter()
        try:
            await self.worker.ensure()
            if live.cancel:  # cancelled while the worker was (re)starting
                raise Cancelled("cancelled")
            reply = await self.worker.call(
                "run",
                spec,
                progress=lambda p: self._progress(live, p),
                preview=lambda p, png: self._preview(live, p, png),
            )
        except (Cancelled, WorkerDied) as exc:
            self.loaded = ""
            if self._stopping and not live.cancel:  # shutdown: run it again after restart
                self.store.requeue(job, count_attempt=False)
                return
            if isinstance(exc, Cancelled) or live.cancel:
                self._finish(live, "cancelled", error={"type": "Cancelled", "message": "cancelled"})
            else:
                self._finish(live, "failed", error=error_data(exc))
        except JobError as exc:
            self._finish(live, "failed", error=exc.data)
        except Exception as exc:  # a worker that cannot start
            self.loaded = ""
            self._finish(live, "failed", error=error_data(exc))
        else:
            if job.kind in PIPELINE_KINDS:  # an upscale leaves the warm model as it was
                self.loaded = model_key(job.model, job.load)
            self.job_seconds = 0.7 * self.job_seconds + 0.3 * (time.perf_counter() - t0)
            self._finish(live, "completed", result=reply)

    def _progress(self, live: Live, p: Progress) -> None:
        live.progress = p
        self._emit(live, ("progress", progress_data(live.job.id, p)))

    def _preview(self, live: Live, p: Progress, png: bytes) -> None:
        live.preview, live.preview_step = png, p.step
        data = {
            "id": live.job.id,
            "step": p.step,
            "total": p.total,
            "image": "data:image/png;base64," + base64.b64encode(png).decode(),
        }
        self._emit(live, ("preview", data))

    def _finish(
        self,
        live: Live,
        state: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        self.store.finish(live.job, state, result=result, error=error)
        self._emit(live, terminal_event(live.job))
        self.live.pop(live.job.id, None)
        live.done.set()
        if self.on_finish is not None:
            try:
                self.on_finish(live.job)
            except Exception as exc:  # housekeeping must never fail a job or the loop
                log.error("after job %s: %s", live.job.id, exc)

    async def control(self, op: str, *args: Any) -> dict[str, Any]:
        """A model load/unload on the worker, between jobs."""
        async with self.lock:
            try:
                reply = await self.worker.call(op, *args)
            except Exception:
                self.loaded = ""
                raise
            self.loaded = model_key(args[0], args[1]) if op == "load" else ""
            return reply


def progress_data(job_id: str, p: Progress) -> dict[str, Any]:
    return {
        "id": job_id,
        "step": p.step,
        "total": p.total,
        "elapsed": round(p.elapsed, 3),
        "eta": round(p.eta, 3),
        "phase": p.phase,
    }
