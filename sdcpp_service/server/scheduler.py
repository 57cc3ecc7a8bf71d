"""The queue: jobs to the pool's workers (one job per worker at a time), events for watchers,
cancel per job.

Jobs are persisted by a :class:`~sdcpp_service.server.store.JobStore`; this module keeps the
in-memory side (who is waiting, who is watching, the latest progress). Which job runs where is
:meth:`~sdcpp_service.server.pool.Pool.plan`'s choice: the worker with the job's model warm, a
bounded reordering towards warm models, never starvation.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from sdcpp_service.engine.base import PIPELINE_KINDS, engine_job
from sdcpp_service.errors import Cancelled, SdcppError, StorageFull, WorkerDied
from sdcpp_service.server.errors import NotFound, QueueFull
from sdcpp_service.server.jobs import Images, Job
from sdcpp_service.server.live import OUTPUT_URL, Event, Live, progress_data, terminal_event
from sdcpp_service.server.pool import Assignment, Pool
from sdcpp_service.server.slot import Slot
from sdcpp_service.server.storage import Storage
from sdcpp_service.server.store import JobStore
from sdcpp_service.server.unsaved import Unsaved
from sdcpp_service.server.watch import Watchers
from sdcpp_service.server.worker import Worker, error_data

log = logging.getLogger("sdcpp_service.server")

#: Seconds between two heartbeats of this node's running jobs in the store.
HEARTBEAT_SECONDS = 15.0


class Scheduler(Unsaved, Watchers):
    def __init__(
        self,
        store: JobStore,
        pool: Pool | Worker,
        max_queue: int = 100,
        window: int = 4,
        max_skips: int = 3,
        on_finish: Callable[[Job], None] | None = None,
        owner: str = "",
        storage: Storage | None = None,
    ) -> None:
        #: this node's name in the store (who claimed a job, whose jobs to recover)
        self.owner = owner or socket.gethostname()
        #: called with each job once it is stored as finished (retention, …)
        self.on_finish = on_finish
        self.store = store
        self.storage = storage or Storage()
        self.unsaved: dict[str, Job] = {}
        self.pool = pool if isinstance(pool, Pool) else Pool([Slot(0, pool)], 0)
        self.max_queue = max_queue
        self.window = window
        self.max_skips = max_skips
        self.queue: list[Live] = []
        self.live: dict[str, Live] = {}
        #: job id → the worker running it
        self.running: dict[str, Slot] = {}
        self.job_seconds = 10.0
        self._wake = asyncio.Event()
        #: set whenever a worker becomes idle (model load/unload calls wait on it)
        self._freed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._retry: asyncio.Task[None] | None = None
        self._submitting = 0
        self._stopping = False

    # -- what the routes read ---------------------------------------------------------------

    @property
    def current(self) -> Live | None:
        """The running job that started first, if any."""
        running = [s.live for s in self.pool.slots if s.live is not None]
        return min(running, key=lambda live: live.started) if running else None

    @property
    def loaded(self) -> str:
        """The warm model most recently used (``model_key``), "" for none."""
        warm = [s for s in self.pool.slots if s.key]
        return max(warm, key=lambda s: s.last_used).key if warm else ""

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        requeued, failed = await asyncio.to_thread(self.store.recover, self.owner)
        if requeued or failed:
            log.warning("recovered jobs: %d re-queued, %d failed", len(requeued), len(failed))
        queued, _ = await asyncio.to_thread(self.store.list_jobs, "queued", 1_000_000)
        for job in queued:
            self._enqueue(Live(job))
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        self._heartbeat = loop.create_task(self._beat())
        self._retry = loop.create_task(self.retry_storage())

    async def _beat(self) -> None:
        """Tell the store this node is alive (its running jobs' heartbeat) now and then."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await asyncio.to_thread(self.store.heartbeat, self.owner)
            except Exception as exc:  # a locked database must not stop the service
                log.error("heartbeat: %s", exc)

    async def stop(self) -> None:
        """Stop running jobs (they go back to the queue), then the workers."""
        self._stopping = True
        for slot in self.pool.slots:
            slot.worker.stop_restarting()
            if slot.live is not None:
                slot.worker.kill()
        for _ in range(300):  # each job goes back to the queue once its call has ended
            if not self._jobs:
                break
            await asyncio.sleep(0.05)
        for task in (self._task, self._heartbeat, self._retry):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        await asyncio.gather(*(s.worker.close() for s in self.pool.slots))

    # -- submitting and cancelling -------------------------------------------------------------

    def retry_after(self) -> int:
        workers = len(self.pool.slots)
        return int(min(3600, max(1, (len(self.queue) + 1) * self.job_seconds / workers)))

    async def submit(self, job: Job, images: Images | None = None, client: str = "") -> Live:
        """Store the job (its images written off the event loop) and queue it."""
        if len(self.queue) + self._submitting >= self.max_queue:
            raise QueueFull(len(self.queue), self.retry_after())
        if job.kind in PIPELINE_KINDS:
            self.pool.check_fits(job.model, job.load)
        if self.storage.full and not await asyncio.to_thread(self.storage.probe):
            raise StorageFull(self.storage.path or "the job store")
        self._submitting += 1
        try:
            await asyncio.to_thread(self.store.submit, job, images)
        except StorageFull as exc:
            self.storage.failed(exc)
            raise
        finally:
            self._submitting -= 1
        live = Live(job, client=client)
        self._enqueue(live)
        return live

    def _enqueue(self, live: Live) -> None:
        self.queue.append(live)
        self.live[live.job.id] = live
        self._wake.set()

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job (removed) or a running one (its worker, and only it, is
        stopped)."""
        live = self.live.get(job_id)
        if live is None:  # not ours: its owner (another node) sees the request
            job = self.find(job_id)
            if job is None:
                raise NotFound(f"no job '{job_id}'")
            if not job.finished_state:
                self.store.request_cancel(job_id)
            return job
        live.cancel = True
        slot = self.running.get(job_id)
        if slot is not None:
            slot.worker.kill()
        elif live in self.queue:
            self.queue.remove(live)
            self._finish(live, "cancelled", error={"type": "Cancelled", "message": "cancelled"})
            self._announce_positions()
        return live.job

    def clear(self) -> list[str]:
        """Cancel every queued job (the running ones keep going)."""
        ids = [live.job.id for live in self.queue]
        for job_id in ids:
            self.cancel(job_id)
        return ids

    # -- running ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            plan = self.pool.plan(self.queue, self.window, self.max_skips)
            for a in plan:
                self.queue.remove(a.live)
                a.slot.busy, a.slot.live, a.live.started = "job", a.live, time.monotonic()
                self.running[a.live.job.id] = a.slot
                if a.live.job.kind in PIPELINE_KINDS:
                    job = a.live.job
                    a.slot.expect(job.model, job.load, self.pool.need(job.model, job.load, job))
                for other in a.evict:
                    other.busy = "unload"
                task = asyncio.get_running_loop().create_task(self._execute(a))
                self._jobs.add(task)
                task.add_done_callback(self._jobs.discard)
            if plan:
                self._announce_positions()

    def release(self, slot: Slot) -> None:
        slot.busy, slot.live = "", None
        self._wake.set()
        self._freed.set()

    async def _execute(self, a: Assignment) -> None:
        live, slot = a.live, a.slot
        try:
            for other in a.evict:
                await self.unload_slot(other)
            await self._attempt(live, slot)
        finally:
            self.running.pop(live.job.id, None)
            self.release(slot)

    async def unload_slot(self, slot: Slot) -> None:
        """Free a worker's model (to make room); a worker that will not is stopped."""
        try:
            await slot.worker.call("unload")
            slot.sync(slot.worker.engine_state)
        except Exception:
            slot.worker.kill(cancelling=False)
            slot.forget()
        finally:
            self.release(slot)

    async def _attempt(self, live: Live, slot: Slot) -> None:
        job = live.job
        try:
            claimed = await asyncio.to_thread(self.store.claim, job, self.owner, slot.index)
        except Exception as exc:  # a full disk: this job fails, the queue goes on
            self.store_failed(exc)
            self._finish(live, "failed", error=error_data(exc))
            return
        if not claimed:  # taken or cancelled elsewhere
            self.live.pop(job.id, None)
            live.done.set()
            return
        self._emit(live, ("started", {"id": job.id, "attempt": job.attempts}))
        t0 = time.perf_counter()
        try:
            params = {**job.params, **await asyncio.to_thread(self.store.inputs, job.id)}
            spec = engine_job(job.id, job.kind, job.model, job.load, params)
            if job.kind in PIPELINE_KINDS:
                self.pool.check_fits(job.model, job.load)
            await slot.worker.ensure()
            if live.cancel:  # cancelled while the worker was (re)starting
                raise Cancelled("cancelled")
            reply = await slot.worker.call(
                "run",
                spec,
                progress=lambda p: self._progress(live, p),
                preview=lambda p, png: self._preview(live, p, png),
            )
        except (Cancelled, WorkerDied) as exc:
            slot.forget()
            if self._stopping and not live.cancel:  # shutdown: run it again after restart
                self.store.requeue(job, count_attempt=False)
                return
            if isinstance(exc, Cancelled) or live.cancel:
                self._finish(live, "cancelled", error={"type": "Cancelled", "message": "cancelled"})
            else:
                self._finish(live, "failed", error=error_data(exc))
        except SdcppError as exc:  # raised in the worker (or it cannot start), or over budget
            slot.sync(slot.worker.engine_state)
            self._finish(live, "failed", error=error_data(exc))
        except Exception as exc:  # a bug: the job fails, the loop goes on
            log.exception("job %s", job.id)
            slot.forget()
            self._finish(live, "failed", error=error_data(exc))
        else:
            slot.sync(slot.worker.engine_state)
            slot.jobs += 1
            self.job_seconds = 0.7 * self.job_seconds + 0.3 * (time.perf_counter() - t0)
            self._finish(live, "completed", result=reply)

    def _finish(
        self,
        live: Live,
        state: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        try:
            self.store.finish(live.job, state, result=result, error=error)
        except Exception as exc:  # a full disk: keep it in memory, store it once there is room
            self.store_failed(exc)
            job = live.job
            job.state, job.result, job.error = state, result, error
            job.finished = job.finished or time.time()
            self.unsaved[job.id] = job
        else:
            if state == "completed":
                self.storage.ok()
        if error is not None and error.get("type") == "StorageFull":
            self.storage.failed(StorageFull(self.storage.path or "the outputs"))
        self._emit(live, terminal_event(live.job))
        self.live.pop(live.job.id, None)
        live.done.set()
        if self.on_finish is not None:
            try:
                self.on_finish(live.job)
            except Exception as exc:  # housekeeping must never fail a job or the loop
                log.error("after job %s: %s", live.job.id, exc)

    # -- model load/unload requests (server/warming.py waits here for a worker) -------------------------------------

    async def acquire(self, pick: Callable[[], Slot | None], busy: str) -> Slot:
        """Wait for the worker ``pick`` chooses (it returns None while none will do)."""
        while True:
            slot = pick()
            if slot is not None:
                slot.busy = busy
                return slot
            self._freed.clear()
            await self._freed.wait()


__all__ = ["OUTPUT_URL", "Event", "Live", "Scheduler", "progress_data", "terminal_event"]
