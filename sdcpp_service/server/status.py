"""What routes read of the queue and the worker pool, and the calls they make on them: the
:class:`~sdcpp_service.server.service.Service` API for jobs in flight (position, progress,
cancel, events), model loads, the workers' view for ``/api/v1/workers``, ``/health`` and
``/system``, and which job an A1111 client waits on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from sdcpp_service.server import warming
from sdcpp_service.server.jobs import Job
from sdcpp_service.server.live import Event, Live
from sdcpp_service.server.pool import Pool
from sdcpp_service.server.scheduler import Scheduler
from sdcpp_service.server.store import JobStore
from sdcpp_service.types import Progress


class PoolStatus:
    """Part of :class:`~sdcpp_service.server.service.Service` (which sets these)."""

    pool: Pool
    scheduler: Scheduler
    store: JobStore
    #: ``--preload`` models still loading: /health says ``loading``, not ``ready``, till done
    preloading: bool = False

    def model_name(self, path: str) -> str:
        raise NotImplementedError

    @property
    def engine_info(self) -> dict[str, Any]:
        """The engine's system information (samplers, schedulers, versions…), once started."""
        for slot in self.pool.slots:
            if slot.worker.info:
                return slot.worker.info
        return {}

    def first_worker(self) -> dict[str, Any]:
        """The first worker's pid and start count (the only worker with ``--workers 1``)."""
        worker = self.pool.slots[0].worker
        return {"pid": worker.pid, "starts": worker.starts}

    def position(self, job_id: str) -> int | None:
        return self.scheduler.position(job_id)

    def progress(self, job_id: str) -> Progress | None:
        live = self.scheduler.live.get(job_id)
        return live.progress if live is not None else None

    def cancel(self, job_id: str) -> Job:
        return self.scheduler.cancel(job_id)

    def clear_queue(self) -> list[str]:
        return self.scheduler.clear()

    def events(self, job_id: str) -> AsyncIterator[Event]:
        return self.scheduler.events(job_id)

    async def list_jobs(
        self, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[Job], int]:
        jobs, total = await asyncio.to_thread(self.store.list_jobs, state, limit, offset)
        unsaved = self.scheduler.unsaved  # finished on a full disk, not stored yet
        if unsaved:
            jobs = [unsaved.get(j.id, j) for j in jobs]
            if state is not None:
                jobs = [j for j in jobs if j.state == state]
        return jobs, total

    async def load_model(self, model: str, load: Mapping[str, Any]) -> dict[str, Any]:
        """Warm ``model`` on a worker (see :meth:`Scheduler.load`)."""
        return await warming.load_model(self.scheduler, model, dict(load))

    async def unload_models(self) -> None:
        await warming.unload_models(self.scheduler)

    def running(self) -> list[Live]:
        """The running jobs, the first started first."""
        lives = [s.live for s in self.pool.slots if s.live is not None]
        return sorted(lives, key=lambda live: live.started)

    def queued(self) -> int:
        return len(self.scheduler.queue)

    def progress_for(self, client: str) -> Live | None:
        """The job an A1111 client waits on: its own running (else queued) job; else the
        first running one."""
        mine = [live for live in self.scheduler.live.values() if client and live.client == client]
        running = self.running()
        for live in running:
            if live in mine:
                return live
        if mine:
            return mine[0]
        return running[0] if running else None

    def interrupt(self, client: str) -> str | None:
        """Cancel the job :meth:`progress_for` reports (A1111 ``/interrupt``)."""
        live = self.progress_for(client)
        if live is None or live.job.state != "running":
            return None
        self.cancel(live.job.id)
        return live.job.id

    def workers(self) -> dict[str, Any]:
        """Each worker (state, model, load options, memory, current job) and the budget."""
        views = [s.view() for s in self.pool.slots]
        for view in views:
            view["model_name"] = self.model_name(view["model"]) if view["model"] else None
        return {
            "workers": views,
            "parallel": self.pool.parallel(),
            "max_memory_bytes": self.pool.max_memory,
            "models_bytes": self.pool.used(),
            "queued": self.queued(),
        }

    def worker_summary(self) -> dict[str, Any]:
        """How many workers are in each state ("idle", "busy", "starting", "failed", …)."""
        states: dict[str, int] = {}
        for slot in self.pool.slots:
            states[slot.state()] = states.get(slot.state(), 0) + 1
        return states

    def worker_state(self) -> str:
        """One word for /health: ready (some worker can run jobs and every ``--preload`` model
        is loaded), loading (workers up, preloads still loading), failed, or starting."""
        slots = self.pool.slots
        if any(s.worker.alive and s.worker.info for s in slots):
            return "loading" if self.preloading else "ready"
        return "failed" if all(s.worker.error for s in slots) else "starting"

    def worker_error(self) -> str | None:
        return next((s.worker.error for s in self.pool.slots if s.worker.error), None)

    def warm_models(self) -> list[str]:
        """Paths of the models warm on some worker, most recently used first."""
        warm = sorted((s for s in self.pool.slots if s.model), key=lambda s: -s.last_used)
        return list(dict.fromkeys(s.model for s in warm))
