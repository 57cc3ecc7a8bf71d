"""The API node's synchronous access to the cluster's tables (called from threads, as the
embedded :class:`~sdcpp_service.server.store.JobStore` is): jobs, outputs, workers."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from sdcpp_service.errors import QueueError
from sdcpp_service.server.jobs import FINISHED, Images, Job

JOB_COLUMNS = (
    "id, seq, kind, model, params, load, state, created, started, finished, attempts, result, "
    "error, owner, slot, cancel_requested"
)
NOW = "EXTRACT(EPOCH FROM clock_timestamp())"
#: the notification channel of job events (payload: JSON ``{"id", "event", "data"}``)
CHANNEL = "sdcpp_events"
#: bytes of an output read per query when an API node fills its cache
OUTPUT_CHUNK = 1 << 20
#: a job into our table and onto its procrastinate queue (``procrastinate_defer_jobs_v1`` is
#: what procrastinate's ``defer`` runs: priority 0, no lock, now)
SUBMIT = """
WITH p AS (
    SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(%(queue)s, %(task)s, 0, NULL, NULL,
        %(args)s, NULL)::procrastinate_job_to_defer_v1])) AS id
)
INSERT INTO sdcpp_jobs (id, kind, model, model_name, queue, params, load, inputs, created,
    client, pjob)
SELECT %(id)s, %(kind)s, %(model)s, %(model_name)s, %(queue)s, %(params)s, %(load)s,
    %(inputs)s, %(created)s, %(client)s, p.id FROM p
RETURNING seq
"""
#: an API node's connections at most (requests beyond wait for one), and how long they wait
POOL_SIZE, POOL_WAIT = 10, 15.0


def connect(url: str) -> Any:
    """A psycopg connection in autocommit mode (``url`` as libpq takes it: TLS, password…)."""
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise QueueError(f"cannot reach the queue database: {describe(exc)}") from None


def check_schema(conn: Any) -> None:
    """Refuse a database that ``sdcpp queue migrate`` has not set up."""
    row = conn.execute("SELECT to_regclass('sdcpp_jobs'), to_regclass('procrastinate_jobs')")
    if None in row.fetchone():
        raise QueueError("the queue database has no sdcpp tables yet: run "
                         "`sdcpp queue migrate --queue URL` first")  # fmt: skip


def describe(exc: BaseException) -> str:
    """A database error in one line (libpq's messages run over several)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def to_job(row: Any) -> Job:
    (id_, seq, kind, model, params, load, state, created, started, finished, attempts,
     result, error, owner, slot, cancel) = row  # fmt: skip
    return Job(
        id=id_, kind=kind, model=model, params=params, load=load, state=state,
        created=created, started=started, finished=finished, attempts=attempts,
        result=result, error=error, seq=seq, owner=owner, slot=slot,
        cancel_requested=cancel,
    )  # fmt: skip


def encode_images(images: Images | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (images or {}).items():
        if isinstance(value, list):
            out[key] = [base64.b64encode(v).decode() for v in value]
        else:
            out[key] = base64.b64encode(value).decode()
    return out


def decode_images(data: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        out[key] = [base64.b64decode(v) for v in value] if isinstance(value, list) else (
            base64.b64decode(value))  # fmt: skip
    return out


def workers(conn: Any, lost_after: float) -> list[dict[str, Any]]:
    """Every registered worker, newest first: ``live`` while its heartbeat is recent."""
    rows = conn.execute(
        "SELECT id, host, pid, models, any_model, slots, EXTRACT(EPOCH FROM heartbeat), "
        "EXTRACT(EPOCH FROM now() - heartbeat), EXTRACT(EPOCH FROM started) "
        "FROM sdcpp_workers ORDER BY started DESC, id"
    ).fetchall()
    out = []
    for id_, host, pid, models, any_model, slots, beat, age, started in rows:
        live = float(age) < lost_after
        busy = [s for s in slots if s.get("current_job")]
        out.append({
            "id": id_, "host": host, "pid": pid, "models": models, "any": any_model,
            "state": ("busy" if busy else "idle") if live else "lost",
            "current_job": busy[0]["current_job"] if busy and live else None,
            "current_jobs": [s["current_job"] for s in busy] if live else [],
            "last_heartbeat": float(beat), "heartbeat_age": round(float(age), 3),
            "started": float(started), "slots": slots,
            "model_name": ",".join(models) or None,
            "resident_bytes": sum(int(s.get("resident_bytes") or 0) for s in slots),
            "model_bytes": sum(int(s.get("model_bytes") or 0) for s in slots),
        })  # fmt: skip
    return out


class PgStore:
    """Jobs, outputs and workers for one API node, on a pool of connections shared by the
    request threads (opened at start: no request pays for a connection of its own)."""

    def __init__(self, url: str) -> None:
        from psycopg_pool import ConnectionPool

        self.url = url
        self.pool = ConnectionPool(url, min_size=2, max_size=POOL_SIZE, open=False,
                                   timeout=POOL_WAIT, kwargs={"autocommit": True,
                                                              "connect_timeout": 10})  # fmt: skip
        self._lock = threading.Lock()
        self._opened = False

    def open(self) -> None:
        """Open the pool and wait for its first connections (else the first requests would)."""
        with self._lock:
            if not self._opened:
                self.pool.open(wait=False)
                self._opened = True
        try:
            self.pool.wait(timeout=POOL_WAIT)
        except Exception as exc:
            raise QueueError(f"cannot reach the queue database: {describe(exc)}") from None

    @contextmanager
    def conn(self) -> Iterator[Any]:
        from psycopg_pool import PoolTimeout

        if not self._opened:
            with self._lock:
                if not self._opened:
                    self.pool.open(wait=False)
                    self._opened = True
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise QueueError(f"cannot reach the queue database: no connection within "
                             f"{POOL_WAIT:g} s") from None  # fmt: skip

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self.pool.close()

    # -- jobs ---------------------------------------------------------------------------------

    def submit(self, job: Job, images: Images | None, model_name: str, queue: str,
               client: str) -> Job:  # fmt: skip
        """Store the job and put it on ``queue`` (procrastinate's own defer function) in one
        statement: one round trip, and a worker never sees one without the other."""
        from psycopg.types.json import Jsonb

        from sdcpp_service.cluster.queues import TASK

        with self.conn() as c:
            row = c.execute(
                SUBMIT,
                {"id": job.id, "kind": job.kind, "model": job.model, "model_name": model_name,
                 "queue": queue, "params": Jsonb(job.params), "load": Jsonb(job.load),
                 "inputs": Jsonb(encode_images(images)), "created": job.created,
                 "client": client, "task": TASK, "args": Jsonb({"job_id": job.id})},
            ).fetchone()  # fmt: skip
        job.seq = int(row[0])
        return job

    def get(self, job_id: str) -> Job | None:
        with self.conn() as c:
            row = c.execute(
                f"SELECT {JOB_COLUMNS} FROM sdcpp_jobs WHERE id = %s", (job_id,)
            ).fetchone()
        return to_job(row) if row else None

    def live_row(self, job_id: str) -> tuple[str, str, Any, bytes | None, int, int] | None:
        """(state, client, progress, preview, preview_step, pjob) of a job."""
        with self.conn() as c:
            row = c.execute(
                "SELECT state, client, progress, preview, preview_step, pjob FROM sdcpp_jobs "
                "WHERE id = %s",
                (job_id,),
            ).fetchone()
        return (row[0], row[1], row[2], row[3], row[4], row[5]) if row else None

    def position(self, job_id: str) -> int | None:
        with self.conn() as c:
            row = c.execute(
                "SELECT j.state, (SELECT count(*) FROM sdcpp_jobs q WHERE q.state = 'queued' "
                "AND q.queue = j.queue AND q.seq < j.seq) FROM sdcpp_jobs j WHERE j.id = %s",
                (job_id,),
            ).fetchone()
        return int(row[1]) if row and row[0] == "queued" else None

    def active(self, state: str, client: str = "") -> list[Job]:
        """Queued or running jobs (of ``client`` when given), oldest first."""
        sql = f"SELECT {JOB_COLUMNS} FROM sdcpp_jobs WHERE state = %s"
        args: tuple[Any, ...] = (state,)
        if client:
            sql, args = sql + " AND client = %s", (state, client)
        with self.conn() as c:
            rows = c.execute(sql + " ORDER BY coalesce(started, 0), seq", args).fetchall()
        return [to_job(r) for r in rows]

    def count(self, state: str) -> int:
        with self.conn() as c:
            row = c.execute("SELECT count(*) FROM sdcpp_jobs WHERE state = %s", (state,))
            return int(row.fetchone()[0])

    def list_jobs(self, state: str | None = None, limit: int = 50,
                  offset: int = 0) -> tuple[list[Job], int]:  # fmt: skip
        where, args = ("WHERE state = %s", [state]) if state else ("", [])
        order = "seq ASC" if state in ("queued", "running") else "seq DESC"
        with self.conn() as c:  # the page and the total in one query (a poller's every call)
            rows = c.execute(
                f"SELECT {JOB_COLUMNS}, count(*) OVER () FROM sdcpp_jobs {where} "
                f"ORDER BY {order} LIMIT %s OFFSET %s",
                [*args, limit, offset],
            ).fetchall()
            if rows:
                total = int(rows[0][-1])
            else:  # past the end (or none): the total alone
                count = c.execute(f"SELECT count(*) FROM sdcpp_jobs {where}", args).fetchone()
                total = int(count[0])
        return [to_job(r[:-1]) for r in rows], total

    def cancel(self, job_id: str) -> None:
        """Cancel a queued job at once, or ask the worker of a running one to abort it
        (procrastinate's abort: the worker hears it over LISTEN/NOTIFY)."""
        from procrastinate import sql

        queued = self.cancel_queued(job_id)
        with self.conn() as c:
            row = c.execute("SELECT pjob FROM sdcpp_jobs WHERE id = %s", (job_id,)).fetchone()
            if row and row[0] is not None:
                c.execute(sql.queries["cancel_job"],
                          {"job_id": row[0], "abort": True, "delete_job": False})  # fmt: skip
            if queued:
                c.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(
                    {"id": job_id, "event": "cancelled", "data": {}})))  # fmt: skip

    def cancel_queued(self, job_id: str) -> bool:
        """A queued job → cancelled at once; False when it is not queued (any more)."""
        with self.conn() as c:
            row = c.execute(
                f"UPDATE sdcpp_jobs SET state = 'cancelled', cancel_requested = true, "
                f"finished = {NOW}, inputs = NULL, error = %s WHERE id = %s AND state = 'queued' "
                "RETURNING id",
                ('{"type": "Cancelled", "message": "cancelled"}', job_id),
            ).fetchone()
            if row is None:
                c.execute("UPDATE sdcpp_jobs SET cancel_requested = true WHERE id = %s "
                          "AND state = 'running'", (job_id,))  # fmt: skip
        return row is not None

    def delete(self, job_id: str) -> Job | None:
        states = tuple(FINISHED)
        with self.conn() as c:
            row = c.execute(
                f"DELETE FROM sdcpp_jobs WHERE id = %s AND state = ANY(%s) RETURNING {JOB_COLUMNS}",
                (job_id, list(states)),
            ).fetchone()
        return to_job(row) if row else None

    def prune(self, finished_before: float) -> list[Job]:
        with self.conn() as c:
            rows = c.execute(
                f"DELETE FROM sdcpp_jobs WHERE state = ANY(%s) AND finished < %s "
                f"RETURNING {JOB_COLUMNS}",
                (list(FINISHED), finished_before),
            ).fetchall()
        return [to_job(r) for r in rows]

    def finished_oldest_first(self) -> list[Job]:
        with self.conn() as c:
            rows = c.execute(
                f"SELECT {JOB_COLUMNS} FROM sdcpp_jobs WHERE state = ANY(%s) ORDER BY finished",
                (list(FINISHED),),
            ).fetchall()
        return [to_job(r) for r in rows]

    # -- outputs and workers --------------------------------------------------------------------

    def copy_output(self, name: str, out: BinaryIO) -> int | None:
        """Write output ``name`` to ``out`` at most ``OUTPUT_CHUNK`` bytes per query (a video
        never sits whole in memory); returns its size, or ``None`` when there is no such output
        (or it was deleted meanwhile)."""
        part_sql = ("SELECT substring(data FROM %s FOR %s), length(data) FROM sdcpp_output_chunks "
                    "WHERE name = %s AND seq = %s")  # fmt: skip
        with self.conn() as c:
            row = c.execute("SELECT size FROM sdcpp_outputs WHERE name = %s", (name,)).fetchone()
            if row is None:
                return None
            size, chunk, written, seq = int(row[0]), OUTPUT_CHUNK, 0, 0
            while written < size:
                offset = 0
                while True:
                    part = c.execute(part_sql, (offset + 1, chunk, name, seq)).fetchone()
                    if part is None:  # deleted meanwhile
                        return None
                    data = bytes(part[0])
                    out.write(data)
                    offset, written = offset + len(data), written + len(data)
                    if offset >= int(part[1]) or not data:
                        break
                seq += 1
        return size if written == size else None

    def outputs_bytes(self) -> int:
        with self.conn() as c:
            row = c.execute("SELECT coalesce(sum(size), 0) FROM sdcpp_outputs").fetchone()
        return int(row[0])

    def job_bytes(self, job_id: str) -> int:
        with self.conn() as c:
            row = c.execute("SELECT coalesce(sum(size), 0) FROM sdcpp_outputs WHERE job_id = %s",
                            (job_id,)).fetchone()  # fmt: skip
        return int(row[0])

    def workers(self, lost_after: float) -> list[dict[str, Any]]:
        with self.conn() as c:
            return workers(c, lost_after)

    def engine_info(self) -> dict[str, Any]:
        with self.conn() as c:
            row = c.execute("SELECT info FROM sdcpp_workers WHERE info <> '{}'::jsonb "
                            "ORDER BY heartbeat DESC LIMIT 1").fetchone()  # fmt: skip
        return dict(row[0]) if row else {}
