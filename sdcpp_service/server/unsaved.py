"""Finished jobs the store could not record (a full disk): kept in memory, shown as finished to
every reader, written once there is room. Part of
:class:`~sdcpp_service.server.scheduler.Scheduler`."""

from __future__ import annotations

import asyncio
import logging

from sdcpp_service.server.jobs import Job
from sdcpp_service.server.live import Live
from sdcpp_service.server.storage import Storage, is_full
from sdcpp_service.server.store import JobStore

log = logging.getLogger("sdcpp_service.server")

#: Seconds between two tries to store what the store refused (and probes of a full disk).
RETRY_SECONDS = 1.0


class Unsaved:
    store: JobStore
    live: dict[str, Live]
    #: the data dir's disk: a full one fails the job that meets it, and is reported
    storage: Storage
    #: finished jobs the store could not record yet, by id (oldest first)
    unsaved: dict[str, Job]

    def find(self, job_id: str) -> Job | None:
        """The job as this node knows it: in flight, finished but not stored yet, or stored."""
        live = self.live.get(job_id)
        if live is not None:
            return live.job
        return self.unsaved.get(job_id) or self.store.get(job_id)

    def store_failed(self, exc: BaseException) -> None:
        if is_full(exc):
            self.storage.failed(exc)
        else:
            log.error("job store: %s", exc)

    def save_unsaved(self) -> None:
        """Store what the store refused before, oldest first; stops at the first refusal."""
        for job_id, job in list(self.unsaved.items()):
            try:
                self.store.finish(job, job.state, result=job.result, error=job.error)
            except Exception as exc:
                self.store_failed(exc)
                return
            self.unsaved.pop(job_id, None)
        self.storage.ok()

    async def retry_storage(self) -> None:
        """While the disk is full: store the finished jobs kept in memory, probe for room."""
        while True:
            await asyncio.sleep(RETRY_SECONDS)
            try:
                if self.unsaved:
                    await asyncio.to_thread(self.save_unsaved)
                elif self.storage.full:
                    await asyncio.to_thread(self.storage.probe)
            except Exception as exc:  # never let housekeeping end the loop
                log.error("storage retry: %s", exc)
