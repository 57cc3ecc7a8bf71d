"""An API node's outputs and retention: files served from a local cache filled from the
database on first read (the same URLs as the embedded server), and ``--keep-jobs`` /
``--keep-outputs-gb`` applied to the rows."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from sdcpp_service.cluster.store import PgStore
from sdcpp_service.server.errors import NotFound
from sdcpp_service.server.jobs import FINISHED, Job
from sdcpp_service.server.options import OUTPUT_NAME
from sdcpp_service.server.service import Service


class ClusterOutputs(Service):
    """Part of :class:`~sdcpp_service.cluster.node.ClusterService` (which sets ``pg``)."""

    pg: PgStore

    def output_path(self, name: str) -> Any:
        """The output's file in this node's cache, fetched from the database when missing."""
        if not OUTPUT_NAME.match(name):
            raise NotFound(f"no output '{name}'")
        path = self.outputs / name
        if not path.is_file():
            tmp = path.with_name(f"{name}.{os.getpid()}.{threading.get_ident()}.incomplete")
            try:
                with open(tmp, "wb") as out:
                    size = self.pg.copy_output(name, out)
                if size is None:
                    raise NotFound(f"no output '{name}'")
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return path

    def prune(self, now: float | None = None) -> list[str]:
        hours = self.options.keep_jobs_hours
        old: list[Job] = []
        if hours > 0:
            old = self.pg.prune((time.time() if now is None else now) - hours * 3600)
            for job in old:
                self._remove_outputs(job)
        return [j.id for j in old] + self.cap_outputs()

    def cap_outputs(self, keep: str = "") -> list[str]:
        cap = self.options.keep_outputs_gb
        if cap <= 0:
            return []
        limit, total = int(cap * 1e9), self.pg.outputs_bytes()
        removed: list[str] = []
        for job in self.pg.finished_oldest_first():
            if total <= limit:
                break
            size = self.pg.job_bytes(job.id)
            if job.id != keep and self.pg.delete(job.id) is not None:
                self._remove_outputs(job)
                total -= size
                removed.append(job.id)
        return removed

    def delete_job(self, job_id: str) -> Job:
        from sdcpp_service.server.errors import JobNotDone

        job = self.job(job_id)
        if job.state not in FINISHED:
            raise JobNotDone(f"job '{job_id}' is {job.state}: cancel it first")
        deleted = self.pg.delete(job_id)
        if deleted is None:
            raise NotFound(f"no job '{job_id}'")
        self._remove_outputs(deleted)
        return deleted
