"""``sdcpp worker``: a GPU host's engine pool taking jobs from the cluster's queues.

It reuses the embedded server's pool (:class:`~sdcpp_service.server.pool.Pool`, one supervised
engine process per slot); procrastinate fetches as many jobs at once as the pool runs
(``Pool.parallel``) from the queues of its preloaded models (and ``any`` with ``--any``),
heartbeats, and aborts a job when an API node cancels it. Results and outputs are stored in one
transaction, only while this attempt still holds the job (a late result after a re-run
elsewhere is discarded).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcpp_service.cluster import claims
from sdcpp_service.cluster.deathsignal import DeathSignal
from sdcpp_service.cluster.localize import Localizer
from sdcpp_service.cluster.publish import Publisher
from sdcpp_service.cluster.queues import ANY, TASK, UPSCALE, make_app, queue_for
from sdcpp_service.cluster.reaper import reap
from sdcpp_service.cluster.store import OUTPUT_CHUNK, check_schema, connect, decode_images
from sdcpp_service.config import Settings
from sdcpp_service.engine.base import PIPELINE_KINDS, Engine, engine_job
from sdcpp_service.errors import Cancelled, SdcppError, WorkerDied
from sdcpp_service.server import models
from sdcpp_service.server.jobs import Job
from sdcpp_service.server.live import Live, progress_data
from sdcpp_service.server.pool import Pool
from sdcpp_service.server.slot import GB, Slot, model_key
from sdcpp_service.server.worker import error_data
from sdcpp_service.types import Progress

log = logging.getLogger("sdcpp_service.cluster")
CANCELLED = {"type": "Cancelled", "message": "cancelled"}
#: seconds between two progress events of a job (each is a row update and a NOTIFY)
PROGRESS_EVERY = 0.05


@dataclass(frozen=True)
class WorkerConfig:
    url: str
    preload: tuple[str, ...] = ()
    any_model: bool = False
    workers: int = 1
    #: jobs run at once (0: as the engine's device allows, see ``Pool.parallel``)
    parallel: int = 0
    #: seconds between heartbeats; a worker silent for ``lost_after`` seconds is lost
    heartbeat: float = 2.0
    lost_after: float = 10.0
    start_timeout: float = 120.0
    max_memory_gb: float = 0.0
    #: this worker's id in the cluster (default ``host:pid``)
    name: str = ""
    #: bytes of an output uploaded per row (its most in this worker's memory at once)
    output_chunk: int = OUTPUT_CHUNK


class Runner:
    def __init__(self, settings: Settings, engine: Engine, cfg: WorkerConfig) -> None:
        self.cfg, self.settings = cfg, settings
        self.host = socket.gethostname()
        self.id = cfg.name or f"{self.host}:{os.getpid()}"
        self.outputs = settings.data_dir / "worker-outputs" / self.id.replace(":", "-")
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.pool = Pool.create(DeathSignal(engine), self.outputs, cfg.workers, cfg.start_timeout,
                                int(cfg.max_memory_gb * GB), parallel=cfg.parallel)  # fmt: skip
        self.local = Localizer(settings)
        #: preloaded model name → its path here
        self.models: dict[str, str] = {}
        for name in cfg.preload:
            entry = models.resolve(name, settings, models.MAIN_KINDS, "preload")
            self.models[entry.name] = str(entry.path)
        self.db: Any = None
        self.app: Any = None
        self.events: Publisher | None = None
        self._freed: asyncio.Condition | None = None
        self._shows: set[asyncio.Task[None]] = set()

    @property
    def queues(self) -> list[str]:
        models = [queue_for(n) for n in self.models]
        return [*models, *([ANY] if self.cfg.any_model else []), UPSCALE]

    async def run(self) -> None:
        from psycopg_pool import AsyncConnectionPool

        def check() -> None:
            with connect(self.cfg.url) as conn:
                check_schema(conn)

        await asyncio.to_thread(check)
        self._freed = asyncio.Condition()
        self.db = AsyncConnectionPool(self.cfg.url, min_size=1, max_size=self.cfg.workers + 3,
                                      kwargs={"autocommit": True}, open=False)  # fmt: skip
        await self.db.open(wait=True, timeout=30)
        self.app = make_app(self.cfg.url)
        await self.app.open_async()
        self.events = Publisher(self.db)
        self.events.start()
        side: list[asyncio.Task[None]] = []
        try:
            await self._register()
            await self._warm()
            await self._beat_once()
            loop = asyncio.get_running_loop()
            side = [loop.create_task(self._beat())]

            async def run_job(context: Any, job_id: str) -> None:
                await self.execute(context, job_id)

            self.app.task(name=TASK, pass_context=True)(run_job)
            log.warning("sdcpp worker %s: queues %s", self.id, ", ".join(self.queues))
            await self.app.run_worker_async(
                queues=self.queues, concurrency=self.pool.parallel(), name=self.id,
                update_heartbeat_interval=self.cfg.heartbeat,
                stalled_worker_timeout=self.cfg.lost_after, abort_job_polling_interval=1.0,
                fetch_job_polling_interval=2.0, install_signal_handlers=True,
            )  # fmt: skip
        finally:
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            await self.events.close()
            for slot in self.pool.slots:
                await slot.worker.close()
            try:
                async with self.db.connection() as conn:
                    await conn.execute("DELETE FROM sdcpp_workers WHERE id = %s", (self.id,))
            except Exception as exc:
                log.error("unregistering: %s", exc)
            await self.app.close_async()
            await self.db.close()

    # -- registration, warm-up, heartbeats ----------------------------------------------------------

    async def _register(self) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO sdcpp_workers (id, host, pid, models, any_model, slots, info) "
                "VALUES (%s, %s, %s, %s, %s, '[]', '{}') ON CONFLICT (id) DO UPDATE SET "
                "started = now(), heartbeat = now(), models = excluded.models, "
                "any_model = excluded.any_model",
                (self.id, self.host, os.getpid(), json.dumps(list(self.models)),
                 self.cfg.any_model),
            )  # fmt: skip

    async def _warm(self) -> None:
        await asyncio.gather(*(s.worker.ensure() for s in self.pool.slots))

        async def preload(slot: Slot, path: str) -> None:
            await slot.worker.call("load", path, {})
            slot.sync(slot.worker.engine_state)

        pairs = zip(self.pool.slots, self.models.values(), strict=False)
        await asyncio.gather(*(preload(s, p) for s, p in pairs))

    def _slot_views(self) -> list[dict[str, Any]]:
        views = []
        for slot in self.pool.slots:
            view = slot.view()
            view["model_name"] = Path(view["model"]).stem if view["model"] else None
            views.append(view)
        return views

    async def _beat_once(self) -> None:
        info = next((s.worker.info for s in self.pool.slots if s.worker.info), {})
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "UPDATE sdcpp_workers SET heartbeat = now(), slots = %s, info = %s WHERE id = %s",
                (json.dumps(self._slot_views()), json.dumps(info), self.id),
            )
            if cur.rowcount == 0:  # removed by someone: register again
                await self._register()

    async def _beat(self) -> None:
        """Heartbeat our row; every ``lost_after / 2`` s, re-run or fail the jobs of lost
        workers (as API nodes do)."""
        reaped = time.monotonic()
        while True:
            await asyncio.sleep(self.cfg.heartbeat)
            try:
                await self._beat_once()
                if time.monotonic() - reaped < self.cfg.lost_after / 2:
                    continue  # a lost worker is found as soon, with fewer queries
                reaped = time.monotonic()
                async with self.db.connection() as conn:
                    await reap(self.app, conn, self.cfg.lost_after)
                    await conn.execute("DELETE FROM sdcpp_workers WHERE heartbeat < "
                                       "now() - interval '1 day'")  # fmt: skip
            except Exception as exc:  # the database is briefly away: try again next beat
                log.error("heartbeat: %s", exc)

    # -- running a job --------------------------------------------------------------------------

    async def _acquire(self, key: str) -> Slot:
        assert self._freed is not None
        async with self._freed:
            while True:
                idle = [s for s in self.pool.slots if s.idle]
                if idle:
                    warm = [s for s in idle if s.key == key]
                    slot = warm[0] if warm else Pool.least_wanted(idle, [])
                    slot.busy = "job"
                    return slot
                await self._freed.wait()

    async def _release(self, slot: Slot) -> None:
        assert self._freed is not None
        async with self._freed:
            slot.busy, slot.live = "", None
            self._freed.notify_all()

    async def _claim(self, job_id: str, slot: Slot, pworker: int | None) -> Any:
        async with self.db.connection() as conn:
            return await claims.claim(conn, job_id, self.id, slot.index, pworker)

    async def execute(self, context: Any, job_id: str) -> None:
        assert self.events is not None
        slot = await self._acquire("")
        try:
            row = await self._claim(job_id, slot, context.job.worker_id)
            if row is None:  # cancelled, or taken by a retry of this job elsewhere
                return
            attempts, kind, model, params, load, inputs = row
            job = Job(id=job_id, kind=kind, model=model, params=params, load=load,
                      state="running", attempts=attempts)  # fmt: skip
            slot.live = Live(job)
            self._show()
            await self._run(job, slot, params, inputs)
        finally:
            await self._release(slot)
            self._show()

    def _show(self) -> None:
        """Our row soon, not at the next heartbeat (``/api/v1/workers``'s current job)."""

        async def show() -> None:
            try:
                await self._beat_once()
            except Exception as exc:
                log.error("worker row: %s", exc)

        task = asyncio.get_running_loop().create_task(show())
        self._shows.add(task)
        task.add_done_callback(self._shows.discard)

    async def _run(self, job: Job, slot: Slot, params: dict[str, Any], inputs: Any) -> None:
        assert self.events is not None
        events, attempt = self.events, job.attempts
        try:
            path, load = self.local.path(job.model), self.local.load(job.load)
            values = {**self.local.params(params), **decode_images(inputs)}
            spec = engine_job(job.id, job.kind, path, load, values)
            if job.kind in PIPELINE_KINDS:
                slot.expect(path, load)
            await slot.worker.ensure()
            sent = [0.0]

            def progress(p: Progress) -> None:  # at most every PROGRESS_EVERY s, and the last
                now = time.monotonic()
                if now - sent[0] >= PROGRESS_EVERY or p.step >= p.total:
                    sent[0] = now
                    events.put(job.id, attempt, "progress", progress_data(job.id, p))

            reply = await slot.worker.call(
                "run", spec, progress=progress,
                preview=lambda p, png: events.put(
                    job.id, attempt, "preview", {"id": job.id, "step": p.step, "total": p.total},
                    png),
            )  # fmt: skip
        except asyncio.CancelledError:  # an API node cancelled it (procrastinate's abort)
            pid = slot.worker.pid
            slot.worker.kill()
            slot.forget()
            await asyncio.shield(self._cancelled(job, slot, pid))
            raise
        except (Cancelled, WorkerDied) as exc:
            slot.forget()
            await self.finish(job, "failed", error=error_data(exc))
        except SdcppError as exc:
            slot.sync(slot.worker.engine_state)
            await self.finish(job, "failed", error=error_data(exc))
        except Exception as exc:  # a bug: the job fails, the worker goes on
            log.exception("job %s", job.id)
            slot.forget()
            await self.finish(job, "failed", error=error_data(exc))
        else:
            slot.sync(slot.worker.engine_state)
            slot.jobs += 1
            await self.finish(job, "completed", result=reply)

    async def _cancelled(self, job: Job, slot: Slot, pid: int | None) -> None:
        """Once the killed engine process is gone (the slot's next job gets a fresh one)."""
        for _ in range(200):
            if slot.worker.pid != pid:  # reaped (and maybe restarted already)
                break
            await asyncio.sleep(0.05)
        await self.finish(job, "cancelled", error=CANCELLED)

    async def finish(self, job: Job, state: str, result: dict[str, Any] | None = None,
                     error: dict[str, Any] | None = None) -> bool:  # fmt: skip
        """Store the outcome and outputs if this attempt still holds the job; False: discarded."""
        assert self.events is not None
        await self.events.flush()
        names = [n for n in (result or {}).get("outputs", []) if isinstance(n, str)]
        files = [(n, self.outputs / n) for n in names]
        try:
            async with self.db.connection() as conn:
                kept = await claims.finish(conn, job.id, job.attempts, self.id, state, result,
                                           error, files, self.cfg.output_chunk)  # fmt: skip
        finally:
            for name in names:
                (self.outputs / name).unlink(missing_ok=True)
        if not kept:
            log.warning("job %s: result of attempt %d discarded (the job was taken over)",
                        job.id, job.attempts)  # fmt: skip
        return kept


def run_worker(settings: Settings, engine: Engine, cfg: WorkerConfig) -> None:
    """Run until SIGINT/SIGTERM (running jobs finish first)."""
    asyncio.run(Runner(settings, engine, cfg).run())


__all__ = ["Runner", "WorkerConfig", "model_key", "run_worker"]
