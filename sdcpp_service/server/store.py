"""Where jobs are kept: the :class:`JobStore` protocol.

Shaped for more than one host sharing one store: a job is *claimed* by a node's worker slot
(``owner`` = node id), which *heartbeats* while it runs and records *progress*; anyone may
*request a cancel* (the owner sees it and stops the job); after a crash a node *recovers* only
what *it* owned (a job left running is queued again once, then failed). The embedded default is
SQLite (:class:`~sdcpp_service.server.sqlite.SQLiteJobStore`); a PostgreSQL store implements
the same calls. Calls are short and blocking: async callers run them in a thread. A write that
fails for want of space raises :class:`~sdcpp_service.errors.StorageFull` and changes nothing
(the caller keeps the job in memory and writes it again once there is room).
"""

from __future__ import annotations

from typing import Any, Protocol

from sdcpp_service.server.jobs import Images, Job


class JobStore(Protocol):
    def submit(self, job: Job, images: Images | None = None) -> Job:
        """Store a new queued job with its input images (sets ``job.seq``)."""
        ...

    def claim(self, job: Job, owner: str, slot: int) -> bool:
        """Queued → running for ``owner``'s worker ``slot`` (one attempt more); False when the
        job is no longer queued (another node took it, or it was cancelled)."""
        ...

    def heartbeat(self, owner: str) -> None:
        """``owner`` is alive: refresh the heartbeat of every job it runs."""
        ...

    def progress(self, job_id: str, progress: dict[str, Any]) -> None:
        """The running job's latest progress (step, total, eta, phase)."""
        ...

    def finish(
        self,
        job: Job,
        state: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Completed, failed or cancelled: store the result or error, drop the inputs."""
        ...

    def requeue(self, job: Job, count_attempt: bool = True) -> None:
        """Back to the queue (a graceful shutdown does not count the attempt)."""
        ...

    def request_cancel(self, job_id: str) -> bool:
        """Ask for a queued or running job to be cancelled; False when it has finished."""
        ...

    def recover(self, owner: str) -> tuple[list[str], list[str]]:
        """After ``owner`` restarts: its jobs left running are queued again once, then failed.
        Returns (requeued ids, failed ids)."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def list_jobs(
        self, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[Job], int]:
        """Jobs (newest first; queued and running ones oldest first) and the total count."""
        ...

    def inputs(self, job_id: str) -> dict[str, Any]:
        """The job's input images: field → bytes (list fields → list of bytes)."""
        ...

    def delete(self, job_id: str) -> Job | None:
        """Remove a finished job (its output files are the caller's); None when none."""
        ...

    def prune(self, finished_before: float) -> list[Job]:
        """Remove the jobs that finished before ``finished_before``; returns them."""
        ...

    def finished_oldest_first(self) -> list[Job]: ...

    def close(self) -> None: ...
