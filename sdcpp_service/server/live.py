"""The in-memory side of a job the scheduler runs: who watches it, its latest progress and
preview, and the events they are sent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sdcpp_service.server.jobs import Job
from sdcpp_service.server.slot import model_key
from sdcpp_service.types import Progress

Event = tuple[str, dict[str, Any]]

OUTPUT_URL = "/api/v1/outputs/{}"


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
    #: who submitted it (the A1111 ``/progress`` of that client reports this job)
    client: str = ""
    #: when it started on a worker (monotonic), 0 while queued
    started: float = 0.0
    #: when its progress was last written to the store (monotonic)
    saved: float = 0.0

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


def progress_data(job_id: str, p: Progress) -> dict[str, Any]:
    return {
        "id": job_id,
        "step": p.step,
        "total": p.total,
        "elapsed": round(p.elapsed, 3),
        "eta": round(p.eta, 3),
        "phase": p.phase,
    }
