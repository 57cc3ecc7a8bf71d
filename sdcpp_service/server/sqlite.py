"""The job store in SQLite (stdlib ``sqlite3``, WAL) under ``data_dir``: the embedded default
:class:`~sdcpp_service.server.store.JobStore`.

A job's parameters, state, owner, timings, result and error live in ``jobs``; its input images
in ``inputs`` until it finishes. After a restart finished jobs are still served, queued jobs
run, and a job this node was running when it died is queued again once, then failed. Finished
jobs are removed by ``DELETE /api/v1/jobs/{id}`` or, with their outputs, once older than the
service's retention (:meth:`SQLiteJobStore.prune`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sdcpp_service.engine.base import IMAGE_LISTS
from sdcpp_service.errors import StorageFull
from sdcpp_service.server.jobs import FINISHED, MAX_ATTEMPTS, Images, Job
from sdcpp_service.server.sqlite_schema import ADDED, SCHEMA, job_from_row
from sdcpp_service.server.storage import is_full


def _nearly_full(folder: Path) -> bool:
    import shutil

    try:
        return shutil.disk_usage(folder).free < 1024 * 1024
    except OSError:
        return False


class SQLiteJobStore:
    """The :class:`~sdcpp_service.server.store.JobStore` in one SQLite file (WAL). Calls are
    short and serialized by a lock (safe from any thread)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        try:
            self._open(path)
        except sqlite3.Error as exc:  # a full disk (its WAL and index files cannot be made)
            if is_full(exc) or _nearly_full(path.parent):
                raise StorageFull(path.parent) from exc
            raise

    def _open(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}
        for name, kind in ADDED:  # a database from before these columns
            if name not in have:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. A failed statement *or commit* rolls back (a commit that
        fails on a full disk leaves SQLite's transaction open: without the rollback every
        later write would fail too); a full disk raises :class:`StorageFull`."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if is_full(exc):
                    raise StorageFull(self.path.parent) from exc
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes -----------------------------------------------------------------------------

    def submit(self, job: Job, images: Images | None = None) -> Job:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO jobs (id, kind, state, model, load, params, created, attempts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    job.id,
                    job.kind,
                    job.state,
                    job.model,
                    json.dumps(job.load),
                    json.dumps(job.params),
                    job.created,
                ),
            )
            job.seq = int(cur.lastrowid or 0)
            for name, value in (images or {}).items():
                items = value if isinstance(value, list) else [value]
                for idx, data in enumerate(items):
                    db.execute(
                        "INSERT INTO inputs (job_id, field, idx, data) VALUES (?, ?, ?, ?)",
                        (job.id, name, idx, sqlite3.Binary(data)),
                    )
        return job

    def claim(self, job: Job, owner: str, slot: int) -> bool:
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state='running', started=?, attempts=attempts+1, owner=?,"
                " slot=?, heartbeat=? WHERE id=? AND state='queued'",
                (now, owner, slot, now, job.id),
            )
            if cur.rowcount != 1:
                return False
        job.state, job.started, job.attempts = "running", now, job.attempts + 1
        job.owner, job.slot, job.heartbeat = owner, slot, now
        return True

    def heartbeat(self, owner: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET heartbeat=? WHERE owner=? AND state='running'",
                (time.time(), owner),
            )

    def progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET progress=?, heartbeat=? WHERE id=? AND state='running'",
                (json.dumps(progress), time.time(), job_id),
            )

    def request_cancel(self, job_id: str) -> bool:
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET cancel_requested=1 WHERE id=? AND state NOT IN {FINISHED}",
                (job_id,),
            )
        return cur.rowcount == 1

    def finish(
        self,
        job: Job,
        state: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        job.state, job.finished, job.result, job.error = state, time.time(), result, error
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state=?, finished=?, result=?, error=?, progress=NULL,"
                " heartbeat=NULL WHERE id=?",
                (
                    state,
                    job.finished,
                    None if result is None else json.dumps(result),
                    None if error is None else json.dumps(error),
                    job.id,
                ),
            )
            db.execute("DELETE FROM inputs WHERE job_id=?", (job.id,))

    def requeue(self, job: Job, count_attempt: bool = True) -> None:
        """Back to the queue (a graceful shutdown does not count the attempt)."""
        job.state, job.started, job.owner, job.slot = "queued", None, "", None
        if not count_attempt:
            job.attempts = max(0, job.attempts - 1)
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state='queued', started=NULL, attempts=?, owner=NULL, slot=NULL,"
                " heartbeat=NULL, progress=NULL WHERE id=?",
                (job.attempts, job.id),
            )

    def recover(self, owner: str) -> tuple[list[str], list[str]]:
        """After ``owner`` restarts: its jobs left ``running`` (and those of no owner, from
        before owners) are queued again once, then failed. Returns (requeued, failed) ids."""
        requeued: list[str] = []
        failed: list[str] = []
        for job in self.list_jobs("running", limit=1_000_000)[0]:
            if job.owner not in (owner, ""):
                continue
            if job.attempts >= MAX_ATTEMPTS:
                error = {
                    "type": "WorkerDied",
                    "message": f"the server stopped while this job ran, {job.attempts} times",
                }
                self.finish(job, "failed", error=error)
                failed.append(job.id)
            else:
                self.requeue(job)
                requeued.append(job.id)
        return requeued, failed

    def delete(self, job_id: str) -> Job | None:
        """Remove a finished job (its outputs are the caller's); ``None`` when there is none."""
        with self._tx() as db:
            row = db.execute(
                f"SELECT * FROM jobs WHERE id=? AND state IN {FINISHED}", (job_id,)
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
        return job_from_row(row)

    def prune(self, finished_before: float) -> list[Job]:
        """Remove the jobs that finished before ``finished_before`` (a UNIX time); returns them
        so the caller can delete their output files."""
        with self._tx() as db:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE state IN {FINISHED} AND finished < ?",
                (finished_before,),
            ).fetchall()
            db.execute(
                f"DELETE FROM jobs WHERE state IN {FINISHED} AND finished < ?", (finished_before,)
            )
        return [job_from_row(r) for r in rows]

    def finished_oldest_first(self) -> list[Job]:
        """Finished jobs, the first finished first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs WHERE state IN {FINISHED} ORDER BY finished ASC, seq ASC"
            ).fetchall()
        return [job_from_row(r) for r in rows]

    # -- reads ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else job_from_row(row)

    def list_jobs(
        self, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[Job], int]:
        """Jobs (newest first; queued ones oldest first) and the total matching count."""
        where, args = ("WHERE state=?", [state]) if state else ("", [])
        order = "seq ASC" if state in ("queued", "running") else "seq DESC"
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs {where} ORDER BY {order} LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            total = self._db.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0]
        return [job_from_row(r) for r in rows], int(total)

    def inputs(self, job_id: str) -> dict[str, Any]:
        """The job's input images: ``field → bytes`` (the ``IMAGE_LISTS`` → list of bytes)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT field, idx, data FROM inputs WHERE job_id=? ORDER BY field, idx",
                (job_id,),
            ).fetchall()
        out: dict[str, Any] = {}
        for row in rows:
            data = bytes(row["data"])
            if row["field"] in IMAGE_LISTS:
                out.setdefault(row["field"], []).append(data)
            else:
                out[row["field"]] = data
        return out
