"""An API node (``sdcpp serve --queue URL``): the same routes over the cluster's tables.

Jobs, their latest progress and their outputs live in PostgreSQL; this node keeps nothing a
restart could lose (it only follows the jobs its clients wait on). Outputs are served with the
same URLs from a local cache filled from the database on first read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from sdcpp_service.cluster.listen import Listener
from sdcpp_service.cluster.queues import ANY, UPSCALE, make_app, queue_for
from sdcpp_service.cluster.retention import ClusterOutputs
from sdcpp_service.cluster.store import PgStore, check_schema, connect
from sdcpp_service.config import Settings
from sdcpp_service.engine.base import PIPELINE_KINDS, Engine
from sdcpp_service.server import models
from sdcpp_service.server.errors import NotFound, QueueFull, ServiceError
from sdcpp_service.server.jobs import FINISHED, Images, Job
from sdcpp_service.server.live import Event, Live, progress_data, terminal_event
from sdcpp_service.server.options import ServerOptions
from sdcpp_service.types import Progress

log = logging.getLogger("sdcpp_service.cluster")


class NoWorker(ServiceError):
    """No live worker can take the job (503: start one, or one with ``--any``)."""

    status, code = 503, "no_worker"


class RemoteWorkers:
    """What ``/system`` and the capability routes read of "the worker" on an API node."""

    pid: int | None = None
    starts = 0

    def __init__(self, node: ClusterService) -> None:
        self.node = node

    @property
    def info(self) -> dict[str, Any]:
        return self.node.engine_info


def to_progress(data: Mapping[str, Any] | None) -> Progress | None:
    if not data:
        return None
    return Progress(int(data.get("step", 0)), int(data.get("total", 0)),
                    float(data.get("elapsed", 0.0)), float(data.get("eta", 0.0)),
                    str(data.get("phase", "sampling")))  # fmt: skip


def warm_submission() -> None:
    """Import what a submission's checks import lazily (the memory estimator, the engine's
    request encoding, the add-on checks: ~0.2 s), at start rather than in the first job's
    time."""
    import importlib

    for name in ("sdcpp_service.fit.job", "sdcpp_service.fit.estimate",
                 "sdcpp_service.engine.generate", "sdcpp_service.engine.loras",
                 "sdcpp_service.engine.images", "sdcpp_service.engine.photomaker",
                 "sdcpp_service.models.addons",
                 "sdcpp_service.models.assemble", "PIL.Image"):  # fmt: skip
        importlib.import_module(name)


class ClusterService(ClusterOutputs):
    def __init__(self, settings: Settings, engine: Engine, options: ServerOptions) -> None:
        # The embedded service's own attributes first (whatever it grows); its SQLite store and
        # pool are never started here: every call that would use them is overridden below.
        super().__init__(settings, engine, options)
        self.store.close()
        self.outputs = settings.data_dir / "outputs-cache"
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.pg = PgStore(options.queue)
        self.listener = Listener(options.queue, on_end=self._ended)
        self.app: Any = make_app(options.queue)
        self._follow: dict[str, asyncio.Task[None]] = {}
        self._info: dict[str, Any] = {}
        self._reaping: asyncio.Task[None] | None = None

    def _ended(self, job_id: str) -> None:
        """Any job of the cluster finished: the outputs' cap (``--keep-outputs-gb``)."""
        self._after_job(Job(id=job_id, kind="", model="", params={}))

    async def start(self) -> None:
        def check() -> None:
            with connect(self.options.queue) as conn:
                check_schema(conn)

        await asyncio.to_thread(check)
        await asyncio.to_thread(warm_submission)
        await asyncio.to_thread(self.pg.open)
        await self.app.open_async()
        self.listener.start()
        loop = asyncio.get_running_loop()
        self._reaping = loop.create_task(self._reap())
        await asyncio.wait_for(self.listener.connected.wait(), 30)
        if self.options.keep_jobs_hours > 0 or self.options.keep_outputs_gb > 0:
            await asyncio.to_thread(self.prune)
            self._pruning = loop.create_task(self._prune_hourly())

    async def _reap(self) -> None:
        import psycopg

        from sdcpp_service.cluster.reaper import reap, rehome

        conn: Any = None
        try:
            while True:
                await asyncio.sleep(self.options.lost_after / 2)
                try:  # one connection kept between passes (a new one after an error)
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(
                            self.options.queue, autocommit=True, connect_timeout=10
                        )
                    await reap(self.app, conn, self.options.lost_after)
                    await rehome(conn, self.options.lost_after)
                except Exception as exc:
                    log.error("checking for lost workers: %s", exc)
                    if conn is not None:
                        await conn.close()
                        conn = None
        finally:
            if conn is not None:
                await conn.close()

    async def stop(self) -> None:
        for task in (self._pruning, self._reaping, *self._follow.values()):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(*self._follow.values(), return_exceptions=True)
        await self.listener.stop()
        await self.app.close_async()
        self.pg.close()

    # -- workers and placement ------------------------------------------------------------------

    def live_workers(self) -> list[dict[str, Any]]:
        return [w for w in self.pg.workers(self.options.lost_after) if w["state"] != "lost"]

    def placement(self, kind: str, name: str) -> str:
        """The queue for a job, or NoWorker when no live worker would take it."""
        live = self.live_workers()
        if kind not in PIPELINE_KINDS and live:
            return UPSCALE
        if any(name in w["models"] for w in live):
            return queue_for(name)
        if any(w["any"] for w in live):
            return ANY
        raise NoWorker(
            f"no live worker serves model '{name}' and no --any worker is alive: start "
            f"`sdcpp worker --queue URL --preload {name}` (or one with --any)"
        )

    @property
    def engine_info(self) -> dict[str, Any]:
        if not self._info:
            self._info = self.pg.engine_info()
        return self._info

    @property
    def worker(self) -> RemoteWorkers:  # type: ignore[override]
        return RemoteWorkers(self)

    def workers(self) -> dict[str, Any]:
        workers = self.pg.workers(self.options.lost_after)
        live = [w for w in workers if w["state"] != "lost"]
        return {"workers": workers, "queued": self.queued(), "running": self.pg.count("running"),
                "max_memory_bytes": 0, "models_bytes": sum(w["model_bytes"] for w in live)}  # fmt: skip

    def worker_summary(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for w in self.pg.workers(self.options.lost_after):
            states[w["state"]] = states.get(w["state"], 0) + 1
        return states

    def worker_state(self) -> str:
        return "ready" if self.live_workers() else "starting"

    def worker_error(self) -> str | None:
        return None if self.live_workers() else "no live worker is connected to the queue"

    def warm_models(self) -> list[str]:
        served = {n for w in self.live_workers() for n in w["models"]}
        return [str(e.path) for e in models.scan(self.settings) if e.name in served]

    def loaded_model(self) -> str:
        warm = self.warm_models()
        return warm[0] if warm else ""

    async def load_model(self, model: str, load: Mapping[str, Any]) -> dict[str, Any]:
        """Workers keep their ``--preload`` models warm: only check that one serves it."""
        queue = self.placement("txt2img", self.model_name(model))
        return {"worker": None, "queue": queue}

    async def unload_models(self) -> None:
        return None

    # -- jobs -----------------------------------------------------------------------------------

    async def submit(self, job: Job, images: Mapping[str, bytes | list[bytes]],
                     client: str = "") -> Live:  # fmt: skip
        name = self.model_name(job.model)
        queue = await asyncio.to_thread(self.placement, job.kind, name)
        queued = await asyncio.to_thread(self.pg.count, "queued")
        if queued >= self.options.max_queue:
            raise QueueFull(queued, 10)
        await asyncio.to_thread(self.pg.submit, job, images, name, queue, client)
        live = Live(job, client=client)
        self._follow[job.id] = asyncio.get_running_loop().create_task(self._track(live))
        return live

    async def run(self, job: Job, images: Mapping[str, bytes | list[bytes]],
                  client: str = "") -> Job:  # fmt: skip
        """Submit and wait, as :meth:`Service.run` does (on whichever worker runs it)."""
        from sdcpp_service.server.errors import Timeout
        from sdcpp_service.server.worker import JobError

        live = await self.submit(job, images, client)
        try:
            await asyncio.wait_for(live.done.wait(), self.options.sync_timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"job {job.id} is still running; follow /api/v1/jobs/{job.id}") from None
        if live.job.state == "failed":
            raise JobError(live.job.error or {})
        return live.job

    async def _track(self, live: Live) -> None:
        """Keep ``live`` up to date until its job ends (for the synchronous dialects)."""
        queue = self.listener.watch(live.job.id)
        try:
            while True:
                job = await asyncio.to_thread(self.pg.get, live.job.id)
                if job is None or job.finished_state:
                    if job is not None:
                        live.job = job
                    return
                live.job = job
                while True:
                    try:
                        event, _ = await asyncio.wait_for(queue.get(), 5.0)
                    except asyncio.TimeoutError:
                        break
                    if event in FINISHED or event in ("resync", "requeued", "started"):
                        break
        finally:
            self.listener.unwatch(live.job.id, queue)
            self._follow.pop(live.job.id, None)
            live.done.set()

    def job(self, job_id: str) -> Job:
        job = self.pg.get(job_id)
        if job is None:
            raise NotFound(f"no job '{job_id}'")
        return job

    def position(self, job_id: str) -> int | None:
        return self.pg.position(job_id)

    def progress(self, job_id: str) -> Progress | None:
        row = self.pg.live_row(job_id)
        return to_progress(row[2]) if row and row[0] == "running" else None

    def _live(self, job: Job) -> Live:
        row = self.pg.live_row(job.id)
        live = Live(job, client=row[1] if row else "")
        if row is not None:
            live.progress, live.preview, live.preview_step = to_progress(row[2]), row[3], row[4]
            if live.preview is not None:
                live.preview = bytes(live.preview)
        live.started = job.started or 0.0
        return live

    def running(self) -> list[Live]:
        return [self._live(j) for j in self.pg.active("running")]

    def queued(self) -> int:
        return self.pg.count("queued")

    def progress_for(self, client: str) -> Live | None:
        if client:
            for state in ("running", "queued"):
                mine = self.pg.active(state, client)
                if mine:
                    return self._live(mine[0])
        running = self.pg.active("running")
        return self._live(running[0]) if running else None

    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one is aborted on its worker."""
        job = self.job(job_id)
        if not job.finished_state:
            self.pg.cancel(job_id)
        return self.job(job_id)

    def clear_queue(self) -> list[str]:
        ids = [j.id for j in self.pg.active("queued")]
        for job_id in ids:
            self.pg.cancel(job_id)
        return ids

    async def list_jobs(self, state: str | None = None, limit: int = 50,
                        offset: int = 0) -> tuple[list[Job], int]:  # fmt: skip
        return await asyncio.to_thread(self.pg.list_jobs, state, limit, offset)

    def events(self, job_id: str) -> AsyncIterator[Event]:
        from sdcpp_service.cluster.stream import job_events

        return job_events(self, job_id)


__all__ = ["ClusterService", "Images", "NoWorker", "progress_data", "terminal_event"]
