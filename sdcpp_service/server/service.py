"""The service behind every route: options, models, job submission and retention (request
checks are in :mod:`sdcpp_service.server.prepare`).

Created by the app's lifespan (no module-level state); routes reach it as
``request.app.state.service``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdcpp_service.config import Settings
from sdcpp_service.engine.base import Engine
from sdcpp_service.errors import Cancelled, InvalidRequest, StorageFull
from sdcpp_service.server import a1111_options, fields, models, warming
from sdcpp_service.server.errors import JobNotDone, NotFound, Timeout
from sdcpp_service.server.hashing import IdleHasher
from sdcpp_service.server.jobs import FINISHED, Job
from sdcpp_service.server.options import OUTPUT_NAME, PRUNE_INTERVAL, ServerOptions
from sdcpp_service.server.outputs import job_files, remove_files
from sdcpp_service.server.pool import Pool
from sdcpp_service.server.scheduler import Live, Scheduler
from sdcpp_service.server.slot import GB, Slot
from sdcpp_service.server.sqlite import SQLiteJobStore
from sdcpp_service.server.status import PoolStatus
from sdcpp_service.server.storage import Storage
from sdcpp_service.server.worker import JobError, Worker

log = logging.getLogger("sdcpp_service.server")


class Service(PoolStatus):
    def __init__(self, settings: Settings, engine: Engine, options: ServerOptions) -> None:
        self.settings = settings
        self.options = options
        self.outputs = settings.data_dir / "outputs"
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.store = SQLiteJobStore(settings.data_dir / "jobs.sqlite")
        self.pool = Pool.create(
            engine,
            self.outputs,
            options.workers,
            options.worker_start_timeout,
            int(options.max_memory_gb * GB),
            settings.png_level,
            options.parallel,
        )
        self.storage = Storage(settings.data_dir)
        #: job id → its estimated peak bytes (set at submission; the pool charges it)
        self.footprints: dict[str, int] = {}
        self.pool.footprint = lambda job: self.footprints.get(job.id)
        self.scheduler = Scheduler(
            self.store,
            self.pool,
            max_queue=options.max_queue,
            on_finish=self._after_job,
            storage=self.storage,
        )
        self.hashes = models.HashCache(settings)
        #: hashes for the infotext, off every job's path (idle priority, in the background)
        self.hasher = IdleHasher(settings)
        #: the catalog, rescanned only when the model folders change (not per request)
        self.index = models.ModelIndex(settings)
        self.started = time.time()
        #: A1111 options set by clients (persisted; echoed back by GET /sdapi/v1/options)
        self.a1111_options: dict[str, Any] = a1111_options.load(settings.data_dir)
        self._warming: asyncio.Task[None] | None = None
        self.preloading = bool(options.preloads)
        self._housekeeping: set[asyncio.Future[list[str]]] = set()
        self._pruning: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.sweep()
        self.prune()
        await self.scheduler.start()
        loop = asyncio.get_running_loop()
        self._warming = loop.create_task(self._warm())
        if self.options.keep_jobs_hours > 0 or self.options.keep_outputs_gb > 0:
            self._pruning = loop.create_task(self._prune_hourly())

    @property
    def worker(self) -> Worker:
        """The first worker (the only one with ``--workers 1``)."""
        return self.pool.slots[0].worker

    async def _warm(self) -> None:
        """Start every worker, then load the preloads, one per worker, all at once."""

        async def start(slot: Slot) -> None:
            try:
                await slot.worker.ensure()
            except Cancelled:  # a job was cancelled while the worker was starting
                pass
            except Exception as exc:  # reported by /health; the next job tries again
                log.error("start-up: %s", exc)

        async def preload(name: str) -> None:
            try:
                path = str(self.resolve_model(name, "preload").path)
                await warming.load_model(self.scheduler, path, {})
                self.hasher.want([path])
            except Exception as exc:
                log.error("preloading %s: %s", name, exc)

        try:
            await asyncio.gather(*(start(s) for s in self.pool.slots))
            await asyncio.gather(*(preload(n) for n in self.options.preloads))
        finally:  # a preload that failed is logged (and retried by its first job): ready anyway
            self.preloading = False

    async def _prune_hourly(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            try:
                await asyncio.to_thread(self.prune)
            except Exception as exc:  # a full disk or a locked file must not stop the service
                log.error("removing old jobs: %s", exc)

    async def stop(self) -> None:
        for task in (self._warming, self._pruning):
            if task is not None and not task.done():
                task.cancel()
        self.hasher.close()
        await self.scheduler.stop()
        self.store.close()

    # -- models -------------------------------------------------------------------------------

    @property
    def model_dirs(self) -> tuple[Path, ...]:
        return self.settings.model_dirs

    def resolve_model(self, name: str, field: str = "model") -> models.ModelEntry:
        return self.index.resolve(name, models.MAIN_KINDS, field)

    def loaded_model(self) -> str:
        return self.scheduler.loaded.partition("|")[0]

    def default_model(self) -> str:
        if self.options.preloads:
            return str(self.resolve_model(self.options.preloads[0]).path)
        if self.loaded_model():
            return self.loaded_model()
        for entry in self.index.entries():
            if entry.kind in models.MAIN_KINDS:
                return str(entry.path)
        raise InvalidRequest("model", "no model given and none found in the model folders")

    def resolve_upscaler(self, name: str | None, field: str = "model") -> models.ModelEntry:
        """An ESRGAN file by name or path inside the model folders (None: the first one); a
        file of another kind (a LoRA, a checkpoint) is refused naming what it is."""
        if name is None:
            found = [e for e in self.index.entries() if e.kind == "upscaler"]
            if not found:
                raise InvalidRequest(
                    field, "no ESRGAN upscaler in the model folders; name one, or lanczos/nearest"
                )
            return found[0]
        try:
            return self.index.resolve(name, ("upscaler",), field)
        except InvalidRequest as exc:
            try:
                other = self.index.resolve(name, models.ALL_KINDS, field)
            except InvalidRequest:
                raise exc from None
            raise InvalidRequest(
                field, f"'{name}' is a {other.kind}, not an ESRGAN upscaler"
            ) from None

    def model_name(self, path: str) -> str:
        return self.index.name_of(path) or Path(path).stem

    # -- jobs ---------------------------------------------------------------------------------

    async def submit(
        self, job: Job, images: Mapping[str, bytes | list[bytes]], client: str = ""
    ) -> Live:
        live = await self.scheduler.submit(job, images, client)
        if job.kind != "upscale":  # the infotext's model and LoRA hashes, for later jobs
            self.hasher.want_job(job.model, job.load, job.params)
        return live

    async def run(
        self, job: Job, images: Mapping[str, bytes | list[bytes]], client: str = ""
    ) -> Job:
        """Submit and wait (the synchronous dialects); a failed job raises its error.
        ``client`` names who waits (see :meth:`progress_for`)."""
        live = await self.submit(job, images, client)
        try:
            done = await asyncio.wait_for(
                self.scheduler.wait(live.job.id), self.options.sync_timeout
            )
        except asyncio.TimeoutError:
            raise Timeout(f"job {job.id} is still running; follow /api/v1/jobs/{job.id}") from None
        if done.state == "failed":
            raise JobError(done.error or {})
        return done

    def output_path(self, name: str) -> Path:
        if not OUTPUT_NAME.match(name):
            raise NotFound(f"no output '{name}'")
        path = self.outputs / name
        if not path.is_file() or not path.resolve().is_relative_to(self.outputs.resolve()):
            raise NotFound(f"no output '{name}'")
        return path

    def prune(self, now: float | None = None) -> list[str]:
        """Remove the jobs (and output files) older than the retention, then the oldest finished
        ones while the outputs are over the disk cap; returns their ids."""
        hours = self.options.keep_jobs_hours
        old: list[Job] = []
        if hours > 0:
            old = self.store.prune((time.time() if now is None else now) - hours * 3600)
            index = job_files(self.outputs) if old else {}
            for job in old:
                self._remove_outputs(job, index)
            if old:
                log.info("removed %d finished job(s) older than %g h", len(old), hours)
        return [j.id for j in old] + self.cap_outputs()

    def cap_outputs(self, keep: str = "") -> list[str]:
        """Remove the oldest finished jobs (and files) until the outputs fit ``keep_outputs_gb``;
        job ``keep`` (the one just finished: its client is about to read it) always stays."""
        cap = self.options.keep_outputs_gb
        if cap <= 0:
            return []
        limit = int(cap * 1e9)
        total = sum(e.stat().st_size for e in os.scandir(self.outputs) if e.is_file())
        removed: list[str] = []
        if total <= limit:
            return removed
        index = job_files(self.outputs)
        for job in self.store.finished_oldest_first():
            if total <= limit:
                break
            if job.id != keep and self.store.delete(job.id) is not None:
                total -= self._remove_outputs(job, index)
                removed.append(job.id)
        if removed:
            log.info("removed %d oldest job(s): outputs over %g GB", len(removed), cap)
        return removed

    def _after_job(self, job: Job) -> None:
        """Once a job is finished: the disk cap, off the event loop."""
        self.footprints.pop(job.id, None)
        if self.options.keep_outputs_gb > 0:
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self.cap_outputs, job.id)
            )
            self._housekeeping.add(task)
            task.add_done_callback(self._housekeeping.discard)

    def delete_job(self, job_id: str) -> Job:
        """Remove a finished job and its output files; a queued or running one is refused."""
        job = self.job(job_id)  # 404 when unknown
        if job.state not in FINISHED:
            raise JobNotDone(f"job '{job_id}' is {job.state}: cancel it first")
        if job_id in self.scheduler.unsaved:  # finished on a full disk: store it first
            self.scheduler.save_unsaved()
            if job_id in self.scheduler.unsaved:
                raise StorageFull(self.settings.data_dir)
        deleted = self.store.delete(job_id)
        if deleted is None:  # deleted by another request meanwhile
            raise NotFound(f"no job '{job_id}'")
        self._remove_outputs(deleted)
        return deleted

    def _remove_outputs(self, job: Job, index: dict[str, list[Path]] | None = None) -> int:
        """Delete every file of the job (its outputs and what was made from them: converted
        formats, partial writes); returns the bytes freed. ``index``: ``job_files()``, read
        once by callers that remove many jobs."""
        if index is not None:
            return remove_files(index.pop(job.id, []))
        prefix = (f"{job.id}-", f"{job.id}.")
        with os.scandir(self.outputs) as entries:
            paths = [Path(e.path) for e in entries if e.name.startswith(prefix)]
        return remove_files(paths)

    def sweep(self) -> list[str]:
        """At start (no worker writes yet): remove files whose job is gone (a crash between
        writing and storing, a job deleted meanwhile) and partial ``.incomplete`` writes."""
        swept: list[str] = []
        for job_id, paths in job_files(self.outputs).items():
            stale = [p for p in paths if p.name.endswith(".incomplete")]
            if self.store.get(job_id) is None:
                stale = paths
            if stale:
                remove_files(stale)
                swept.extend(p.name for p in stale)
        if swept:
            log.info("removed %d output file(s) of no job", len(swept))
        return swept

    def job(self, job_id: str) -> Job:
        job = self.scheduler.find(job_id)
        if job is None:
            raise NotFound(f"no job '{job_id}'")
        return job


async def decode(
    service: Service, raw: Mapping[str, Any]
) -> tuple[dict[str, bytes | list[bytes]], dict[str, str]]:
    """Decode the request's images off the event loop."""
    return await asyncio.to_thread(fields.decode_images, raw, service.options.max_input_pixels)
